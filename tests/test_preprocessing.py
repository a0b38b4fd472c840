"""The input scaler: the torch path used while embedding gives the numpy values."""

import warnings

import numpy as np
import pytest
import torch

from sksiamese import SiameseClassifier
from sksiamese._base import fit_logistic_1d
from sksiamese._preprocessing import BlankAwareScaler


def _rows(dtype, blanks, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(300, 6)) * [1, 10, 1e3, 1e-3, 5, 1] + [0, 5, -1e4, 2, 0, 1e6]
    if blanks:
        X[rng.rand(*X.shape) < 0.2] = np.nan
    return X.astype(dtype)


@pytest.mark.parametrize("scaling", ["standard", "global", None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blanks_in_fit", [False, True])
def test_tensor_transform_equals_transform(scaling, dtype, blanks_in_fit):
    scaler = BlankAwareScaler(scaling).fit(_rows(dtype, blanks_in_fit))
    prepare = scaler.tensor_transform()
    for X in (
        _rows(dtype, blanks=False, seed=1),  # the torch path
        _rows(dtype, blanks=True, seed=2),  # blanks: the numpy path
        np.asfortranarray(_rows(dtype, blanks=False, seed=3)),  # not C-ordered
    ):
        Z = prepare(X)
        assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float32
        np.testing.assert_array_equal(Z.numpy(), scaler.transform(X))


def test_tensor_transform_of_read_only_rows_does_not_warn():
    scaler = BlankAwareScaler().fit(_rows(np.float64, False))
    X = _rows(np.float64, False, seed=1)
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = scaler.tensor_transform()(X)
    np.testing.assert_array_equal(Z.numpy(), scaler.transform(X))


def test_tensor_transform_refuses_values_too_large_for_float32():
    scaler = BlankAwareScaler().fit(np.array([[0.0], [1.0], [2.0]]))
    with pytest.raises(ValueError, match="too large to scale"):
        scaler.tensor_transform()(np.array([[1e300]]))


def test_transform_matches_scaling_before_embedding():
    """transform embeds block by block through the torch path; its output is
    the encoder applied to the numpy-scaled rows."""
    X = _rows(np.float64, blanks=True)
    y = np.arange(len(X)) % 3
    clf = SiameseClassifier(
        hidden_layer_sizes=(16,), embedding_dim=4, max_epochs=2, random_state=0
    ).fit(X, y)
    X_new = _rows(np.float64, blanks=False, seed=5)
    expected = clf.net_.embed(clf._scaler.transform(X_new))
    np.testing.assert_allclose(clf.transform(X_new), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6, 1e250])
def test_fit_logistic_1d_is_unit_free(scale):
    """The pair calibration maps distances to the same probabilities in any
    unit, and matches scikit-learn's lbfgs fit of the raw distances."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    d = np.r_[rng.gamma(2.0, 0.3, 400), rng.gamma(6.0, 0.3, 400)]
    same = np.r_[np.ones(400), np.zeros(400)]
    slope, intercept = fit_logistic_1d(d * scale, same)
    reference = LogisticRegression(C=1e4).fit(d.reshape(-1, 1), same)
    np.testing.assert_allclose(slope * scale, reference.coef_[0, 0], rtol=1e-3)
    np.testing.assert_allclose(intercept, reference.intercept_[0], rtol=1e-3)


def test_fit_logistic_1d_of_equal_distances_gives_the_base_rate():
    slope, intercept = fit_logistic_1d(np.full(10, 0.5), np.r_[np.ones(3), np.zeros(7)])
    assert slope == 0.0
    np.testing.assert_allclose(1 / (1 + np.exp(-intercept)), 0.3)
