import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from sksiamese import _networks


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch and BLAS thread per test process.

    The suite runs in parallel processes (pytest -n); tiny models gain nothing
    from threads, and threads competing for the same cores slow them severalfold.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global random state."""
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """The paths taken off a CPU, where the host may not read values computed
    on the device without waiting (a CPU takes cheaper ones that read them).
    A test that needs them from some point on asks for this fixture there,
    with ``request.getfixturevalue("as_on_a_gpu")``."""
    monkeypatch.setattr(_networks, "_host_reads_are_free", lambda device: False)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def wine():
    """Wine split 70/30, stratified: ``X_train, X_test, y_train, y_test``."""
    X, y = load_wine(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
