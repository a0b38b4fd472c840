"""Class-balanced batch sampling.

Pure numpy: no torch here. A batch holds ``P`` classes times ``K`` samples of each,
drawn afresh every epoch; pairs (or triplets) are formed inside the batch by the loss,
so nothing quadratic in the number of samples is ever stored.
"""

import math

import numpy as np
from sklearn.utils import check_random_state

#: ``batch_size="auto"``: the smallest and largest batch, and the steps per
#: epoch below which a larger batch is not taken.
AUTO_BATCH = (128, 1024)
_AUTO_MIN_STEPS = 200


def auto_batch_size(n_samples, largest=AUTO_BATCH[1]):
    """The batch size ``batch_size="auto"`` trains ``n_samples`` rows with.

    128, doubled for every doubling of the data beyond 51,200 rows (200
    batches of 256), up to ``largest`` (1,024): an epoch of a large table
    takes 200 to 400 steps instead of thousands, and each step is a bigger,
    cheaper-per-row piece of work (on a CPU and more so on a GPU), as long as
    the loss's cost grows with the batch, not with its square (see
    :func:`~sksiamese._training.resolve_batch_size`).

    Examples
    --------
    >>> [auto_batch_size(n) for n in (1_000, 51_199, 51_200, 400_000)]
    [128, 128, 256, 1024]
    >>> auto_batch_size(400_000, largest=128)
    128
    """
    batch = AUTO_BATCH[0]
    while batch < largest and n_samples >= 2 * batch * _AUTO_MIN_STEPS:
        batch *= 2
    return batch


#: The smallest default ``K`` (samples of each class in a batch), where the
#: largest class has as many. With 2, a sample's own class mean (the others
#: of its class in the batch) is one sample, farther from it on average than
#: the means of 2 of the other classes: before the classes separate, every
#: distance shrinking lowers the loss, and the embeddings can collapse to
#: one point. Default settings, 100 generated classes (48,000 rows of 33
#: features): test accuracy 0.13 with K = 2 (the training loss at chance),
#: 0.47 with 4, 0.49 with 8; Omniglot's 242 background characters as
#: 14 x 14 tables (15 drawings each to train, 5 to test): 0.41, 0.52, 0.51.
MIN_SAMPLES_PER_CLASS = 4


def batch_layout(n_classes, batch_size, samples_per_class=None, largest_class=None):
    """Return ``(P, K)``: classes per batch and samples per class.

    Parameters
    ----------
    n_classes : int
        Number of classes present in the data (at least 2).
    batch_size : int
        Requested number of samples per batch (at least 4).
    samples_per_class : int or None, default=None
        ``K``. When None, as many as fit: ``batch_size // n_classes``, at least
        :data:`MIN_SAMPLES_PER_CLASS` (4) where 2 classes of 4 fit in a batch,
        and at most ``largest_class`` (at least 2).
    largest_class : int or None, default=None
        Number of samples of the largest class: no class gets more places in a
        batch, since a batch larger than the data would only repeat it.

    Returns
    -------
    n_classes_per_batch : int
    samples_per_class : int

    Examples
    --------
    >>> batch_layout(2, 128)
    (2, 64)
    >>> batch_layout(1000, 128)
    (32, 4)
    >>> batch_layout(1000, 128, largest_class=3)
    (42, 3)
    >>> batch_layout(1000, 128, samples_per_class=8)
    (16, 8)
    >>> batch_layout(2, 10**6, largest_class=15)
    (2, 15)
    """
    if samples_per_class is None:
        least = min(MIN_SAMPLES_PER_CLASS, batch_size // 2)  # 2 classes fit
        samples_per_class = max(least, batch_size // n_classes)
        if largest_class is not None:
            samples_per_class = min(samples_per_class, largest_class)
        samples_per_class = max(2, samples_per_class)
    n_per_batch = max(2, min(n_classes, batch_size // samples_per_class))
    return n_per_batch, samples_per_class


class BalancedBatchSampler:
    """Yield batches of indices with an equal number of samples per class.

    Each epoch draws new batches. A class with fewer samples than the others is
    cycled through more often (each pass over a class is a fresh permutation), so
    every class contributes equally to each batch whatever its frequency. When
    not all classes fit in a batch, the classes are cycled through the same
    way, so each has as many places in an epoch as the others (within one). A
    batch holds no class twice, and no sample twice unless its class has
    fewer than ``K`` samples.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer class codes.
    batch_size : int
        Approximate batch size; the exact size is ``P * K`` from :func:`batch_layout`.
    samples_per_class : int or None, default=None
        Samples of each class per batch (``K``).
    n_batches : int or None, default=None
        Batches per epoch. Default: enough for one pass over ``n_samples``.
    random_state : int, RandomState instance or None, default=None
        Source of randomness; successive epochs continue its stream.
    resample : bool, default=True
        If False, the first epoch's batches are repeated on every iteration (used
        for a validation loss that is comparable between epochs).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0] * 8 + [1] * 2)
    >>> sampler = BalancedBatchSampler(y, batch_size=4, random_state=0)
    >>> [np.bincount(y[b]).tolist() for b in sampler]
    [[2, 2], [2, 2], [2, 2]]
    """

    def __init__(
        self,
        y,
        batch_size,
        samples_per_class=None,
        n_batches=None,
        random_state=None,
        resample=True,
    ):
        y = np.asarray(y)
        self.classes, y_codes = np.unique(y, return_inverse=True)
        if len(self.classes) < 2:
            raise ValueError(
                "Balanced batches need samples of at least 2 classes; "
                f"got {len(self.classes)}."
            )
        # The indices of each class, ascending (one sort, not a scan per class).
        y_codes = y_codes.ravel()
        self.pools = np.split(
            np.argsort(y_codes, kind="stable"),
            np.cumsum(np.bincount(y_codes))[:-1],
        )
        self.n_per_batch, self.samples_per_class = batch_layout(
            len(self.classes),
            batch_size,
            samples_per_class,
            largest_class=max(len(p) for p in self.pools),
        )
        size = self.n_per_batch * self.samples_per_class
        self.n_batches = (
            n_batches if n_batches is not None else max(1, math.ceil(len(y) / size))
        )
        self.random_state = check_random_state(random_state)
        self.resample = resample
        self._fixed = None

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        if self.resample or self._fixed is None:
            batches = self._draw_epoch()
            if not self.resample:
                self._fixed = batches
        else:
            batches = self._fixed
        return iter(batches)

    def _draw_epoch(self):
        rng = self.random_state
        n_classes = len(self.pools)
        P, K = self.n_per_batch, self.samples_per_class
        if P == n_classes:
            chosen = np.tile(np.arange(n_classes), (self.n_batches, 1))
        else:
            # Each class as often as the others (once per pass over them),
            # never twice in a batch.
            chosen = _permutation_stream(rng, np.arange(n_classes), self.n_batches, P)
        # The places of each class, in batch order: one sort, not a scan of
        # every batch for every class.
        flat = chosen.ravel()
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=n_classes)
        batches = np.empty((len(flat), K), dtype=np.intp)
        start = 0
        for c in np.flatnonzero(counts):
            places = order[start : start + counts[c]]
            start += counts[c]
            batches[places] = _permutation_stream(rng, self.pools[c], len(places), K)
        return list(batches.reshape(self.n_batches, P * K))


def _permutation_stream(rng, pool, n_chunks, width):
    """``n_chunks`` rows of ``width`` items of ``pool``: successive random
    permutations of it laid end to end, cut into rows.

    No row holds an item twice when ``width <= len(pool)``: where a
    permutation starts inside a row, the items that row already holds go to
    the end of the new permutation (a plain concatenation would repeat an
    item in about half such rows).

    Examples
    --------
    >>> rows = _permutation_stream(np.random.RandomState(0), np.arange(5), 8, 3)
    >>> rows.shape, sorted(np.bincount(rows.ravel()).tolist())
    ((8, 3), [4, 5, 5, 5, 5])
    >>> all(len(set(row)) == 3 for row in rows.tolist())
    True
    """
    n = len(pool)
    demand = n_chunks * width
    stream = np.concatenate(
        [rng.permutation(pool) for _ in range(math.ceil(demand / n))]
    )
    if width <= n and n % width:
        for start in range(n, demand, n):
            held = start % width  # items of the row before this permutation
            if held:
                new = stream[start : start + n]
                late = np.isin(new, stream[start - held : start])
                new[:] = np.concatenate([new[~late], new[late]])
    return stream[:demand].reshape(n_chunks, width)
