"""A per-epoch progress bar that knows how many balanced batches an epoch has."""

import math

import numpy as np
from skorch.callbacks import ProgressBar

from ._net import BalancedBatchIterator
from ._sampling import batch_layout


class BalancedProgressBar(ProgressBar):
    """skorch's :class:`~skorch.callbacks.ProgressBar` (a tqdm bar on stderr for
    each epoch) counting the batches of the class-balanced iterators.

    skorch's own count divides the number of samples by ``batch_size``; a
    balanced batch holds ``P * K`` samples (see
    :func:`~sksiamese._sampling.batch_layout`), which can differ.
    """

    def _get_batches_per_epoch_phase(self, net, dataset, training):
        name = "iterator_train" if training else "iterator_valid"
        if dataset is None or getattr(net, name) is not BalancedBatchIterator:
            return super()._get_batches_per_epoch_phase(net, dataset, training)
        y = np.asarray(dataset.y)
        if not hasattr(self, "counts_"):
            self.counts_ = {}
        key = (training, len(y))
        if key not in self.counts_:
            params = net.get_params_for(name)
            counts = np.unique(y, return_counts=True)[1]
            p, k = batch_layout(
                max(len(counts), 2),
                params.get("batch_size", net.batch_size),
                params.get("samples_per_class"),
                largest_class=counts.max(),
            )
            self.counts_[key] = max(1, math.ceil(len(y) / (p * k)))
        return self.counts_[key]
