"""Input encoding: scaling, and blanks kept apart from zeros (numpy only)."""

import warnings

import numpy as np


class BlankAwareScaler:
    """Scale features and encode blanks (NaN) as value 0 plus a "was blank" flag.

    After scaling, a blank becomes 0 (the training mean) and an extra 0/1 column
    records that it was blank, for every feature that had a blank during ``fit``.
    So a blank and an observed value stay distinguishable, unlike in a notebook
    that maps both blanks and "no" to the same number.

    Parameters
    ----------
    scaling : {"standard", "global", None}
        ``"standard"``: per-feature mean and standard deviation (blanks ignored).
        ``"global"``: one mean and standard deviation for all features (images).
        None: no scaling.
    """

    def __init__(self, scaling="standard"):
        self.scaling = scaling

    def fit(self, X):
        self.n_features_ = X.shape[1]
        blank = np.isnan(X)
        self.blank_columns_ = np.flatnonzero(blank.any(axis=0))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if self.scaling in ("standard", "global"):
                axis = 0 if self.scaling == "standard" else None
                # Divided by the largest magnitude first: squares of values
                # above ~1e19 (float32) or ~1e154 (float64) would overflow, and
                # an infinite std would leave such features unscaled.
                size = np.nanmax(np.abs(X), axis=axis)
                size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
                unit = X / size.astype(X.dtype)
                mean = np.nanmean(unit, axis=axis) * size
                std = np.nanstd(unit, axis=axis) * size
            else:
                mean, std = 0.0, 1.0
        mean = np.asarray(np.where(np.isfinite(mean), mean, 0.0))
        std = np.asarray(np.where(np.isfinite(std) & (std > 0), std, 1.0))
        self.mean_, self.scale_ = mean, std
        return self

    @property
    def n_outputs(self):
        return self.n_features_ + len(self.blank_columns_)

    def transform(self, X):
        """Return a float32 array of ``n_features + n_blank_columns`` columns."""
        with np.errstate(over="ignore", invalid="ignore"):
            Z = X - self.mean_.astype(X.dtype)
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
