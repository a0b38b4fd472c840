import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

# The suite runs in parallel processes (pytest -n); one torch thread each keeps
# them from competing for the same cores, which slows small models severalfold.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global random state."""
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)
