"""The skorch side: the balanced batch iterator and the net that trains the twin."""

import numpy as np
import torch
from skorch import NeuralNet
from skorch.utils import to_tensor

from ._sampling import BalancedBatchSampler

# Upper bound on the number of float32 values in one block of a
# query x reference dissimilarity computation (64 MB).
_BLOCK_VALUES = 2**24


class BalancedBatchIterator:
    """skorch ``iterator_train``: class-balanced batches from a skorch Dataset.

    The data are turned into tensors once; every pass draws new batches from
    :class:`~sksiamese._sampling.BalancedBatchSampler` and gathers them by
    indexing, without a per-sample ``__getitem__``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (float32 array) and ``y`` (integer codes).
    batch_size, samples_per_class, random_state, resample
        Passed to the sampler.
    pin_memory : bool, default=False
        Pin the host tensors so copies to a CUDA device can be asynchronous.
    """

    def __init__(
        self,
        dataset,
        batch_size,
        samples_per_class=None,
        random_state=None,
        resample=True,
        pin_memory=False,
    ):
        self.X = torch.as_tensor(np.asarray(dataset.X))
        y = np.asarray(dataset.y)
        self.y = torch.as_tensor(y)
        if pin_memory:
            self.X, self.y = self.X.pin_memory(), self.y.pin_memory()
        self.sampler = BalancedBatchSampler(
            y,
            batch_size,
            samples_per_class=samples_per_class,
            random_state=random_state,
            resample=resample,
        )

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        for idx in self.sampler:
            idx = torch.from_numpy(idx)
            yield self.X[idx], self.y[idx]


class SiameseNet(NeuralNet):
    """A skorch ``NeuralNet`` whose module is a
    :class:`~sksiamese._networks.SiameseModule` and whose criterion compares the
    embeddings of a batch with each other.

    The criterion is called as ``criterion(embeddings, y, module)`` so that the
    loss can use the module's own notion of dissimilarity. Inputs of shape
    ``(batch, 2, n_features)`` are pairs: both halves go through the one encoder.
    """

    def infer(self, x, **fit_params):
        x = to_tensor(x, device=self.device)
        if x.dim() == 3:
            n = len(x)
            emb = self.module_(x.reshape(2 * n, -1), **fit_params).reshape(n, 2, -1)
            return emb[:, 0], emb[:, 1]
        return self.module_(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device)
        return self.criterion_(y_pred, y_true, self.module_)

    # -- inference without DataLoaders: embed once, compare to references --------

    @torch.inference_mode()
    def embed(self, X, batch_size=4096):
        """Embeddings of the rows of float32 ``X`` as a float32 numpy array."""
        module = self.module_
        module.eval()
        out = []
        X = torch.as_tensor(X)
        for start in range(0, len(X), batch_size):
            xb = X[start : start + batch_size].to(self.device, non_blocking=True)
            out.append(module(xb).float().cpu())
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def rowwise(self, A, B):
        """Dissimilarity of embedding rows ``A[i]`` and ``B[i]``."""
        a = torch.as_tensor(A, device=self.device)
        b = torch.as_tensor(B, device=self.device)
        return self.module_.rowwise(a, b).cpu().numpy()

    @torch.inference_mode()
    def class_dissimilarity(self, Q, R, r_codes, n_classes, n_neighbors):
        """Mean dissimilarity of each query to its ``n_neighbors`` closest
        references of each class.

        Parameters
        ----------
        Q : ndarray of shape (n_queries, embedding_dim)
        R : ndarray of shape (n_references, embedding_dim)
        r_codes : ndarray of shape (n_references,)
            Class code of each reference, in ``range(n_classes)``.
        n_classes : int
        n_neighbors : int

        Returns
        -------
        S : ndarray of shape (n_queries, n_classes)

        Work is done in blocks of queries and references so that memory stays
        bounded however many queries and references there are.
        """
        module = self.module_
        width = Q.shape[1] if module.head is not None else 1
        # Distances in float64: the cost is small next to the encoder, and a
        # query's scores then do not depend on which other queries share its block.
        order = np.argsort(r_codes, kind="stable")
        R = torch.as_tensor(R[order], device=self.device, dtype=torch.float64)
        bounds = np.searchsorted(r_codes[order], np.arange(n_classes + 1))
        ref_block = max(1, min(len(R), _BLOCK_VALUES // (256 * width)))
        q_block = max(1, _BLOCK_VALUES // (ref_block * width))
        out = np.empty((len(Q), n_classes), dtype=np.float64)
        for qs in range(0, len(Q), q_block):
            q = torch.as_tensor(
                Q[qs : qs + q_block], device=self.device, dtype=torch.float64
            )
            for c in range(n_classes):
                lo, hi = bounds[c], bounds[c + 1]
                if hi == lo:  # a class with no reference cannot be predicted
                    out[qs : qs + len(q), c] = np.inf
                    continue
                k = min(n_neighbors, hi - lo)
                best = None
                for rs in range(lo, hi, ref_block):
                    block = R[rs : min(hi, rs + ref_block)]
                    d = module.smallest(q, block, min(k, len(block)))
                    if best is not None:
                        d = torch.cat([best, d], dim=1)
                        d = torch.topk(d, k, dim=1, largest=False).values
                    best = d
                out[qs : qs + len(q), c] = best.mean(1).cpu().numpy()
        return out
