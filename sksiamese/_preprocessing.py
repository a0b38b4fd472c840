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


_TOO_LARGE = (
    "X holds values too large to scale for float32 computation "
    "(after scaling some exceed 3e38). Rescale or clip the input."
)


def _infinity_error(dtype):
    """scikit-learn's error for infinite values in ``X`` (that of
    ``validate_data`` with blanks allowed)."""
    return ValueError(
        f"Input X contains infinity or a value too large for {np.dtype(dtype)!r}."
    )


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
        blocks = BlockTransform(self)
        Z = blocks(X)
        blocks.check()
        return Z.numpy()

    def tensor_transform(self, device="cpu"):
        """A :class:`BlockTransform`: :meth:`transform` of blocks of rows,
        computed with torch on ``device``, returning float32 tensors there."""
        return BlockTransform(self, device)

    def _tensor_params(self, dtype):
        """``center_`` and ``scale_`` as tensors of ``dtype`` (statistics beyond
        the float32 range become inf for float32 rows, as numpy casts them)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return tuple(
                torch.from_numpy(np.asarray(a, dtype=dtype))
                for a in (self.center_, self.scale_)
            )


class BlockTransform:
    """:meth:`BlankAwareScaler.transform` of blocks of rows, on a device.

    Calling it with a block (a float numpy array) returns the block's scaled
    rows and "was blank" flags as a float32 tensor on ``device``: the raw block
    goes to the device and is scaled there, so a GPU receives the data once and
    scales it with its own kernels. The operations are those of ``transform``
    (subtract, divide, clip, cast, blanks to 0), so the values are identical on
    a CPU.

    Infinite input values are refused with scikit-learn's error (prediction
    validates ``X`` without looking for them, a pass over all rows on the
    host). ``check_each_block`` (default: on a CPU) looks at each block once
    for blanks and values out of range, and scales a clean block, the common
    case, without the passes those need, raising for an infinite value in the
    block that holds it; elsewhere that look would wait for the device, so
    every block takes those passes and infinite values and values too large
    for float32 after scaling are only recorded: :meth:`check`, called after
    the last block, raises the error for them (infinity first).

    ``row_shape`` is the shape of each row it returns.
    """

    def __init__(self, scaler, device="cpu", check_each_block=None):
        self.device = torch.device(device)
        self.row_shape = (scaler.n_outputs,)
        self._params = {
            dtype: tuple(t.to(self.device) for t in scaler._tensor_params(dtype))
            for dtype in (np.float32, np.float64)
        }
        self._robust = scaler.scaling == "robust"
        self._flags = torch.as_tensor(scaler.blank_columns_, dtype=torch.long)
        self._flags = self._flags.to(self.device)
        if check_each_block is None:
            check_each_block = self.device.type == "cpu"
        self._check_each_block = check_each_block
        # What blocks not checked one by one held, for check(): a 0-d bool
        # tensor on the device for each kind of error (see _found).
        self._held = {}
        self._dtype = None

    def __call__(self, X):
        if X.dtype.type not in self._params:
            X = X.astype(np.float64)
        if not X.flags.c_contiguous or min(X.strides, default=0) < 0:
            # torch takes no negative strides (numpy calls one row of a
            # reversed array C-contiguous).
            X = X.copy(order="C")
        center, scale = self._params[X.dtype.type]
        self._dtype = X.dtype
        raw = shared_tensor(X).to(self.device, non_blocking=True)
        Z = (raw - center).div_(scale)
        if self._robust:
            # Smooth clipping Z / sqrt(1 + (Z / 3) ** 2); a square beyond the
            # float range (t infinite) means a value far out: +-3.
            one = torch.ones((), dtype=Z.dtype, device=Z.device)
            t = torch.addcmul(one, Z, Z, value=1 / 9)
            # A sum is finite only if every value is (a float overflow of the
            # sum itself just sends the block the careful way); so is then
            # every input value.
            if self._check_each_block and bool(torch.isfinite(t.sum())):
                return self._with_flags(Z.mul_(t.rsqrt_()).to(torch.float32))
            self._found("infinite", torch.isinf(raw).any())
            over, sign = torch.isinf(t), torch.sign(Z)
            Z = torch.where(over, 3.0 * sign, Z.mul_(t.rsqrt_()))
        Z = Z.to(torch.float32)
        if not self._robust:
            if self._check_each_block and bool(torch.isfinite(Z.sum())):
                return self._with_flags(Z)
            self._found("infinite", torch.isinf(raw).any())
        blank = torch.isnan(Z)
        Z = Z.masked_fill_(blank, 0.0)
        if not self._robust:  # (clipped to +-3, nothing is left to overflow)
            self._found("too large", torch.isinf(Z).any())
        return self._with_flags(Z, blank)

    def _with_flags(self, Z, blank=None):
        """``Z`` and its "was blank" columns (zeros for a block without blanks)."""
        if not len(self._flags):
            return Z
        if blank is None:
            flags = Z.new_zeros((len(Z), len(self._flags)))
        else:
            flags = blank[:, self._flags].to(torch.float32)
        return torch.cat([Z, flags], dim=1)

    def _found(self, kind, found):
        """Raise the error of ``kind`` ("infinite": scikit-learn's for an
        infinite input value; "too large": ``transform``'s for values too
        large for float32 after scaling) if ``found``, a 0-d bool tensor,
        is true; without a check of each block, record it for :meth:`check`
        instead."""
        if not self._check_each_block:
            held = self._held.get(kind)
            self._held[kind] = found if held is None else held | found
        elif found:
            raise self._error(kind)

    def _error(self, kind):
        if kind == "infinite":
            return _infinity_error(self._dtype)
        return ValueError(_TOO_LARGE)

    def check(self):
        """Raise the error of what a block held, infinite values first (one
        wait for the device per kind, at the end; blocks checked one by one
        have raised already)."""
        for kind in ("infinite", "too large"):
            if kind in self._held and bool(self._held[kind]):
                raise self._error(kind)
