import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global random state."""
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)
