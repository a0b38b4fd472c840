"""The input scaler: the torch path used while embedding gives the numpy values."""

import warnings

import numpy as np
import pytest
import torch

from sksiamese import SiameseClassifier
from sksiamese._preprocessing import BlankAwareScaler, BlockTransform


def _rows(dtype, blanks, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(300, 6)) * [1, 10, 1e3, 1e-3, 5, 1] + [0, 5, -1e4, 2, 0, 1e6]
    if blanks:
        X[rng.rand(*X.shape) < 0.2] = np.nan
    return X.astype(dtype)


def _reference_transform(scaler, X):
    """``BlankAwareScaler.transform`` written out in numpy."""
    with np.errstate(all="ignore"):
        center = np.asarray(scaler.center_).astype(X.dtype)
        Z = (X - center) / np.asarray(scaler.scale_).astype(X.dtype)
        if scaler.scaling == "robust":
            t = 1 + Z * Z * X.dtype.type(1 / 9)
            Z = np.where(np.isinf(t), 3 * np.sign(Z), Z * (1 / np.sqrt(t)))
        Z = Z.astype(np.float32)
    blank = np.isnan(Z)
    Z[blank] = 0.0
    return np.hstack([Z, blank[:, scaler.blank_columns_]]).astype(np.float32)


@pytest.mark.parametrize("scaling", ["robust", "standard", "global", None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blanks_in_fit", [False, True])
@pytest.mark.parametrize("check_each_block", [True, False])
def test_transform_and_block_transform_compute_the_scaling(
    scaling, dtype, blanks_in_fit, check_each_block
):
    """Both ways (a CPU's check of each block, a GPU's passes that need no
    check), with and without blanks, give the numpy reference."""
    scaler = BlankAwareScaler(scaling).fit(_rows(dtype, blanks_in_fit))
    prepare = BlockTransform(scaler, check_each_block=check_each_block)
    for X in (
        _rows(dtype, blanks=False, seed=1),
        _rows(dtype, blanks=True, seed=2),
        np.asfortranarray(_rows(dtype, blanks=False, seed=3)),  # not C-ordered
        _rows(dtype, blanks=False, seed=4)[::-2],  # negative strides
        # One row of a reversed array: numpy calls it C-contiguous, but its
        # stride is negative (the last block of transform(X[::-1])).
        _rows(dtype, blanks=False, seed=5)[::-1][:1],
    ):
        expected = _reference_transform(scaler, X)
        Z = prepare(X)
        assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float32
        # Within two float32 rounding steps (torch fuses 1 + Z * Z / 9).
        np.testing.assert_allclose(Z.numpy(), expected, rtol=3e-7, atol=0)
        np.testing.assert_array_equal(scaler.transform(X), Z.numpy())
    prepare.check()  # nothing too large


def test_tensor_transform_of_read_only_rows_does_not_warn():
    scaler = BlankAwareScaler().fit(_rows(np.float64, False))
    X = _rows(np.float64, False, seed=1)
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = scaler.tensor_transform()(X)
    np.testing.assert_array_equal(Z.numpy(), scaler.transform(X))


def test_values_too_large_for_float32_are_refused_after_the_last_block():
    scaler = BlankAwareScaler().fit(np.array([[0.0], [1.0], [2.0]]))
    with pytest.raises(ValueError, match="too large to scale"):
        scaler.transform(np.array([[1.0], [1e300]]))
    with pytest.raises(ValueError, match="too large to scale"):
        scaler.tensor_transform()(np.array([[1e300]]))  # checked at once
    # Without a check of each block, as on a GPU, nothing waits for the
    # device: check() raises at the end.
    prepare = BlockTransform(scaler, check_each_block=False)
    prepare(np.array([[1.0]]))
    prepare(np.array([[1e300]]))
    prepare(np.array([[2.0]]))
    with pytest.raises(ValueError, match="too large to scale"):
        prepare.check()


@pytest.mark.parametrize("scaling", ["robust", "standard", "global", None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("check_each_block", [True, False])
def test_infinite_values_get_scikit_learns_error_in_the_block_that_holds_them(
    scaling, dtype, check_each_block
):
    # Prediction leaves infinite values to the scaling (one pass over all of
    # X on the host less): without it, robust scaling would clip them to
    # +-3. Checked block by block (a CPU) the block that holds one raises;
    # otherwise (a GPU) check() raises at the end, before the error for
    # values too large after scaling, and clean blocks raise nothing.
    X = _rows(dtype, blanks=True)
    scaler = BlankAwareScaler(scaling).fit(X)
    message = (
        r"Input X contains infinity or a value too large for "
        rf"dtype\('{np.dtype(dtype).name}'\)"
    )
    for value in (np.inf, -np.inf):
        prepare = BlockTransform(scaler, check_each_block=check_each_block)
        bad = X[100:200].copy()
        bad[37, 2] = value
        prepare(X[:100])
        if check_each_block:
            with pytest.raises(ValueError, match=message):
                prepare(bad)
            continue
        prepare(bad)
        prepare(np.full((1, X.shape[1]), np.finfo(dtype).max, dtype=dtype))  # too large
        with pytest.raises(ValueError, match=message):
            prepare.check()
    clean = BlockTransform(scaler, check_each_block=check_each_block)
    clean(X[:100])
    clean(X[100:])
    clean.check()


@pytest.mark.parametrize("check_each_block", [True, False])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_an_infinite_value_is_refused_first_when_a_block_before_it_fails(
    check_each_block, method, monkeypatch
):
    # A value too large for float32 after standard scaling in the first
    # block raises its own error there (on a CPU) or at the check of the
    # first group of embeddings (on a GPU); an infinite value in a later
    # block is still what the user hears of, as from scikit-learn's
    # validation of the whole X.
    from sksiamese import _training

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    clf = SiameseClassifier(
        hidden_layer_sizes=(8,),
        embedding_dim=4,
        n_members=1,
        max_epochs=1,
        scaling="standard",
        random_state=0,
    ).fit(X, y)
    monkeypatch.setitem(_training.EMBED_ROWS, "cpu", 4)
    monkeypatch.setattr(_training, "_EMBED_COPY_ROWS", 4)
    monkeypatch.setattr(
        BlankAwareScaler,
        "tensor_transform",
        lambda self, device="cpu": BlockTransform(self, device, check_each_block),
    )
    Q = X[:12].copy()
    Q[0, 0] = 1e300
    with pytest.raises(ValueError, match="too large to scale"):
        getattr(clf, method)(Q)
    Q[-1, 1] = -np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        getattr(clf, method)(Q)


def test_robust_scaling_centres_spreads_and_clips():
    rng = np.random.RandomState(0)
    n = 2000
    X = np.column_stack(
        [
            rng.lognormal(0.0, 2.0, n),  # heavy right tail (a lab value)
            rng.rand(n) < 0.05,  # a rare yes: both quartiles are 0
            np.full(n, 7.0),  # constant
            rng.normal(5.0, 2.0, n),
        ]
    ).astype(float)
    X[rng.rand(n) < 0.1, 3] = np.nan
    scaler = BlankAwareScaler("robust").fit(X)
    q1, median, q3 = np.nanquantile(X, [0.25, 0.5, 0.75], axis=0)
    np.testing.assert_allclose(scaler.center_, median)
    # Interquartile range; half the range (0.5) for the rare yes/no answer.
    np.testing.assert_allclose(scaler.scale_, [q3[0] - q1[0], 0.5, 1.0, q3[3] - q1[3]])
    Z = scaler.transform(X)
    assert Z.shape == (n, 5)  # plus one "was blank" column
    z = (X - median) / scaler.scale_
    # Smooth clipping: the middle keeps its place, far values stay below 3.
    np.testing.assert_allclose(
        Z[:, 0], z[:, 0] / np.sqrt(1 + (z[:, 0] / 3) ** 2), rtol=1e-6
    )
    assert np.abs(Z[:, :4]).max() < 3
    assert z[:, 0].max() > 100 and 2.9 < Z[:, 0].max() < 3
    inner = np.abs(z[:, 3]) < 0.1
    np.testing.assert_allclose(Z[inner, 3], z[inner, 3], atol=1e-3)
    np.testing.assert_allclose(np.unique(Z[:, 1]), [0.0, 2 / np.sqrt(1 + 4 / 9)])
    assert np.all(Z[:, 2] == 0.0)
    blank = np.isnan(X[:, 3])
    np.testing.assert_array_equal(Z[:, 4], blank)
    assert np.all(Z[blank, 3] == 0.0)  # a blank sits at the median


def test_robust_scaling_of_many_rows_uses_a_sample_for_the_quartiles():
    rng = np.random.RandomState(0)
    n = 3 * BlankAwareScaler._QUANTILE_ROWS
    X = np.column_stack([rng.lognormal(0.0, 1.0, n), np.zeros(n)])
    X[-1, 1] = 4.0  # one rare value, which a sample of rows would likely miss
    scaler = BlankAwareScaler("robust").fit(X)
    q1, median, q3 = np.quantile(X[:, 0], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(scaler.center_[0], median, rtol=0.03)
    np.testing.assert_allclose(scaler.scale_[0], q3 - q1, rtol=0.03)
    # The range, and so the spread of a feature with equal quartiles, is exact.
    assert scaler.scale_[1] == 2.0
    # Same data, same statistics.
    again = BlankAwareScaler("robust").fit(X)
    np.testing.assert_array_equal(again.center_, scaler.center_)


def test_robust_scaling_of_values_near_the_float_limits():
    X = np.array([[-1e308], [0.0], [1e308], [1e307]])
    scaler = BlankAwareScaler("robust").fit(X)
    Z = scaler.transform(np.array([[1e308], [-1e308], [0.0]]))
    assert np.isfinite(Z).all()
    assert Z[0, 0] > 0 > Z[1, 0] and np.abs(Z).max() <= 3
    # Far beyond float32 after scaling: clipped, not an overflow error.
    small = BlankAwareScaler("robust").fit(np.array([[0.0], [1e-30], [2e-30]]))
    np.testing.assert_allclose(
        small.transform(np.array([[1.0], [-1.0]])), [[3.0], [-3.0]]
    )
    np.testing.assert_allclose(
        small.tensor_transform()(np.array([[1.0]])).numpy(), [[3.0]]
    )


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


def test_scalers_pickled_before_center_was_named_so_still_scale():
    X = _rows(np.float64, blanks=True, seed=1)
    scaler = BlankAwareScaler("robust").fit(X)
    state = dict(vars(scaler))
    state["mean_"] = state.pop("center_")
    old = BlankAwareScaler.__new__(BlankAwareScaler)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.transform(X), scaler.transform(X))
    assert not hasattr(old, "mean_")
