"""Input encoding: scaling, and blanks kept apart from zeros."""

import warnings

import numpy as np
import torch


def shared_tensor(array):
    """``torch.as_tensor(array)``, sharing memory with ``array`` even when it is
    read-only (e.g. from Ray's object store), without torch's warning: callers
    read the tensor (index it, or compute new tensors from it), never write it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.as_tensor(array)


class BlankAwareScaler:
    """Scale features and encode blanks (NaN) as value 0 plus a "was blank" flag.

    After scaling, a blank becomes 0 (the training mean) and an extra 0/1 column
    records that it was blank, for every feature that had a blank during ``fit``.
    So a blank and an observed value stay distinguishable, unlike in a notebook
    that maps both blanks and "no" to the same number.

    Parameters
    ----------
    scaling : {"robust", "standard", "global", None}
        ``"robust"``: per feature, minus the median and divided by the
        interquartile range (half the range for a feature whose quartiles
        coincide, such as a rare yes/no answer), then smoothly clipped by
        ``z / sqrt(1 + (z / 3) ** 2)``, which keeps the middle of the data as
        it is and draws far values towards +-3 (the "robust scaling and smooth
        clipping" of Holzmüller et al., 2024, for networks on tables).
        ``"standard"``: per-feature mean and standard deviation.
        ``"global"``: one mean and standard deviation for all features (images).
        None: no scaling. Blanks are ignored by the statistics.

    Attributes
    ----------
    center_ : ndarray of shape (n_features,) or ()
        What is subtracted: the median ("robust"), the mean ("standard",
        "global"), or 0.
    scale_ : ndarray of shape (n_features,) or ()
        What the centred values are divided by.
    blank_columns_ : ndarray of int
        Features that had blanks in ``fit``, each flagged in an extra column.
    """

    # Rows used for the quartiles of "robust" scaling: a random subset of this
    # many (fixed seed) estimates them to within a few percent of a spread, at a
    # fraction of the time of all rows of a large set.
    _QUANTILE_ROWS = 20_000

    def __init__(self, scaling="standard"):
        self.scaling = scaling

    def __setstate__(self, state):
        # Scalers pickled or saved before ``center_`` was named so.
        if "mean_" in state:
            state = {**state, "center_": state["mean_"]}
            del state["mean_"]
        self.__dict__.update(state)

    def fit(self, X):
        self.n_features_ = X.shape[1]
        blank = np.isnan(X)
        self.blank_columns_ = np.flatnonzero(blank.any(axis=0))
        # numpy's nan-functions copy the data; without blanks the plain ones
        # give the same result several times faster.
        has_blank = len(self.blank_columns_) > 0
        if has_blank:
            max_fn, mean_fn, std_fn = np.nanmax, np.nanmean, np.nanstd
            min_fn, quantile_fn = np.nanmin, np.nanquantile
        else:
            max_fn, mean_fn, std_fn = np.max, np.mean, np.std
            min_fn, quantile_fn = np.min, np.quantile
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if self.scaling == "robust":
                # In units of the largest magnitude, as below: differences of
                # values near the float limits would overflow. The range (over
                # every row: a rare value must not be missed) gives both.
                hi, lo = max_fn(X, axis=0), min_fn(X, axis=0)
                size = np.maximum(np.abs(hi), np.abs(lo))
                size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
                rows = X
                if len(X) > self._QUANTILE_ROWS:
                    pick = np.random.RandomState(0).choice(
                        len(X), self._QUANTILE_ROWS, replace=False
                    )
                    rows = X[np.sort(pick)]
                unit = rows / size.astype(X.dtype)
                q1, median, q3 = quantile_fn(unit, [0.25, 0.5, 0.75], axis=0)
                half_range = (hi / size - lo / size) / 2
                spread = np.where(q3 > q1, q3 - q1, half_range)
                center, scale = median * size, spread * size
            elif self.scaling in ("standard", "global"):
                axis = 0 if self.scaling == "standard" else None
                # Divided by the largest magnitude first: squares of values
                # above ~1e19 (float32) or ~1e154 (float64) would overflow, and
                # an infinite scale would leave such features unscaled.
                size = max_fn(np.abs(X), axis=axis)
                size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
                unit = X / size.astype(X.dtype)
                center = mean_fn(unit, axis=axis) * size
                scale = std_fn(unit, axis=axis) * size
            else:
                center, scale = 0.0, 1.0
        center = np.asarray(np.where(np.isfinite(center), center, 0.0))
        scale = np.asarray(np.where(np.isfinite(scale) & (scale > 0), scale, 1.0))
        self.center_, self.scale_ = center, scale
        return self

    @property
    def n_outputs(self):
        return self.n_features_ + len(self.blank_columns_)

    def transform(self, X):
        """Return a float32 array of ``n_features + n_blank_columns`` columns."""
        if self.scaling == "robust":
            mean, scale = self._tensor_params(X.dtype)
            if not (X.flags.c_contiguous or X.flags.f_contiguous):
                X = np.ascontiguousarray(X)  # torch takes no negative strides
            Z, t, finite = _robust_block(shared_tensor(X), mean, scale)
            if finite:
                Z = _clip_with(Z, t)
            else:  # blanks stay NaN; values whose square overflows become +-3
                over, sign = torch.isinf(t), torch.sign(Z)
                Z = torch.where(over, 3.0 * sign, _clip_with(Z, t))
            Z = Z.to(torch.float32).numpy()
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                Z = X - self.center_.astype(X.dtype)
                Z /= self.scale_.astype(X.dtype)
                Z = Z.astype(np.float32, copy=False)
        # One pass when everything is finite, the common case.
        blank = None
        if not np.isfinite(Z).all():
            blank = np.isnan(Z)
            Z[blank] = 0.0
            if not np.isfinite(Z).all():
                raise ValueError(
                    "X holds values too large to scale for float32 computation "
                    "(after scaling some exceed 3e38). Rescale or clip the input."
                )
        if len(self.blank_columns_):
            if blank is None:
                flags = np.zeros((len(Z), len(self.blank_columns_)), np.float32)
            else:
                flags = blank[:, self.blank_columns_].astype(np.float32)
            Z = np.hstack([Z, flags])
        return np.ascontiguousarray(Z)

    def tensor_transform(self):
        """A function of a block of rows that returns ``transform(block)`` as a
        float32 tensor, computed with torch when the block is finite.

        Torch's vectorised kernels scale a block several times faster than
        numpy's temporaries, which matters when prediction is little more than
        one small forward pass. The operations are those of :meth:`transform`
        (subtract, divide, clip, cast), so the values are identical; blocks with
        blanks or values that overflow take :meth:`transform` itself.
        """
        params = {
            dtype: self._tensor_params(dtype) for dtype in (np.float32, np.float64)
        }
        n_flags = len(self.blank_columns_)
        robust = self.scaling == "robust"

        def prepare(X):
            if X.dtype.type in params and X.flags.c_contiguous:
                mean, scale = params[X.dtype.type]
                if robust:
                    # Finite t (checked by one sum) means finite clipped values.
                    Z, t, finite = _robust_block(shared_tensor(X), mean, scale)
                    if finite:
                        Z = _clip_with(Z, t).to(torch.float32)
                else:
                    Z = (shared_tensor(X) - mean).div_(scale).to(torch.float32)
                    # A sum is finite only if every value is (a float32 overflow
                    # of the sum itself just sends the block to the careful path).
                    finite = bool(torch.isfinite(Z.sum()))
                if finite:
                    if n_flags:
                        Z = torch.cat([Z, Z.new_zeros((len(Z), n_flags))], dim=1)
                    return Z
            return torch.from_numpy(self.transform(X))

        return prepare

    def _tensor_params(self, dtype):
        """``center_`` and ``scale_`` as tensors of ``dtype`` (statistics beyond
        float32 become inf in float32, as in the numpy path)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return tuple(
                torch.from_numpy(np.asarray(a, dtype=dtype))
                for a in (self.center_, self.scale_)
            )


def _robust_block(X, median, spread):
    """The first half of robust scaling, on a tensor: ``Z = (X - median) /
    spread`` and ``t = 1 + Z**2 / 9``, and whether ``t`` is all finite (no
    blank, no square beyond the float range). :func:`_clip_with` completes it.
    """
    Z = (X - median).div_(spread)
    t = torch.addcmul(torch.ones((), dtype=Z.dtype), Z, Z, value=1 / 9)
    return Z, t, bool(torch.isfinite(t.sum()))


def _clip_with(Z, t):
    """Smooth clipping ``Z / sqrt(1 + (Z / 3) ** 2)``, in place, from ``t``."""
    return Z.mul_(t.rsqrt_())
