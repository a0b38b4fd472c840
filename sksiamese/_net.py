"""The skorch side: the balanced batch iterator and the net that trains the twin."""

import contextlib

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.utils import TeeGenerator, to_tensor

from ._augment import random_affine
from ._preprocessing import shared_tensor
from ._sampling import BalancedBatchSampler

# Upper bound on the number of float32 values in one block of a
# query x reference dissimilarity computation (64 MB).
_BLOCK_VALUES = 2**24

# Rows of every forward pass of SiameseNet.embed, by device type: on a CPU few
# enough that embedding one sample stays cheap (about 2 ms for the default
# ensemble, 0.5 ms for one network), many enough that large inputs run near a
# plain forward pass (256 rows ran transform at half the speed of 1024); on a
# GPU enough to keep it busy.
EMBED_ROWS = {"cpu": 1024, "cuda": 8192}

# Largest fraction of a class that its neighbourhood in class_dissimilarity
# covers when another class has very few references.
_MAX_NEIGHBOURHOOD = 0.25


class BalancedBatchIterator:
    """skorch ``iterator_train``: class-balanced batches from a skorch Dataset.

    The data are turned into tensors once; every pass draws new batches from
    :class:`~sksiamese._sampling.BalancedBatchSampler` and gathers them by
    indexing, without a per-sample ``__getitem__``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Holds ``X`` (float32 array) and ``y``: integer class codes, or rows
        whose first column is the class code and whose other columns are
        passed on to the criterion (e.g. the groups of the two sides of a
        pair).
    batch_size, samples_per_class, random_state, resample
        Passed to the sampler.
    n_batches : int, default=None
        Batches per pass, passed to the sampler; by default one pass over the
        data. Data-parallel workers set it so that all draw as many batches.
    pin_memory : bool, default=False
        Pin the host tensors so copies to a CUDA device can be asynchronous.
    device : str, default=None
        Keep the data on this device and gather batches there (no copy per
        batch); for data that fit comfortably in GPU memory.
    augment : tuple of int, default=None
        ``(channels, height, width)`` of the images in the rows of ``X``: each
        batch is then distorted by :func:`~sksiamese._augment.random_affine`,
        seeded from ``random_state``. None leaves batches as they are.
    """

    def __init__(
        self,
        dataset,
        batch_size,
        samples_per_class=None,
        random_state=None,
        resample=True,
        pin_memory=False,
        augment=None,
        n_batches=None,
        device=None,
    ):
        # Shared, not copied, even when read-only: batches are gathered by
        # indexing, which copies, so the data are never written.
        y = np.asarray(dataset.y)
        self.X, self.y = shared_tensor(np.asarray(dataset.X)), shared_tensor(y)
        if y.ndim == 2:
            y = y[:, 0]
        self.device = device
        if device is not None:
            self.X, self.y = self.X.to(device), self.y.to(device)
        elif pin_memory:
            self.X, self.y = self.X.pin_memory(), self.y.pin_memory()
        self.sampler = BalancedBatchSampler(
            y,
            batch_size,
            samples_per_class=samples_per_class,
            n_batches=n_batches,
            random_state=random_state,
            resample=resample,
        )
        self.augment = None if augment is None else tuple(augment)
        if self.augment is not None:
            seed = self.sampler.random_state.randint(np.iinfo(np.int32).max)
            self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        for idx in self.sampler:
            idx = torch.from_numpy(idx)
            if self.device is not None:
                idx = idx.to(self.device)
            X = self.X[idx]
            if self.augment is not None:
                X = random_affine(X, self.augment, self._generator)
            yield X, self.y[idx]


class SiameseNet(NeuralNet):
    """A skorch ``NeuralNet`` whose module is a
    :class:`~sksiamese._networks.SiameseModule` and whose criterion compares the
    embeddings of a batch with each other.

    The criterion is called as ``criterion(embeddings, y, module)`` so that the
    loss can use the module's own notion of dissimilarity. Inputs of shape
    ``(batch, 2, n_features)`` are pairs: both halves go through the one encoder.
    """

    def __init__(self, *args, mixed_precision=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixed_precision = mixed_precision

    def _set_training(self, training=True):
        # skorch sets the mode before every step; walking the module tree each
        # time costs a few percent of a small encoder's step. ``train()`` sets
        # every submodule, so a root already in the requested mode is left be.
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                module.train(training)

    def _to_device(self, x):
        # Asynchronous when the source is pinned host memory.
        if isinstance(x, torch.Tensor):
            return x.to(self.device, non_blocking=True)
        return to_tensor(x, device=self.device)

    def infer(self, x, **fit_params):
        x = self._to_device(x)
        autocast = (
            torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
            if self.mixed_precision and self.module_.training
            else contextlib.nullcontext()  # entering autocast costs even if off
        )
        with autocast:
            if x.dim() == 3:
                n = len(x)
                emb = self.module_(x.reshape(2 * n, -1), **fit_params)
                emb = emb.float().reshape(n, 2, -1)
                return emb[:, 0], emb[:, 1]
            # The loss is computed in float32 whatever the encoder ran in.
            return self.module_(x, **fit_params).float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = self._to_device(y_true)
        return self.criterion_(y_pred, y_true, self.module_)

    def train_step(self, batch, **fit_params):
        """One optimisation step, as skorch's, without its closure.

        AdamW never calls a closure more than once, so the step is: zero the
        gradients, forward and backward (:meth:`train_step_single`), notify
        ``on_grad_computed`` (only when a callback defines it, e.g. gradient
        clipping), and step. skorch's closure, step accumulator and parameter
        generator cost several percent of a small encoder's step.
        """
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        if any(
            type(cb).on_grad_computed is not Callback.on_grad_computed
            for _, cb in self.callbacks_
        ):
            self.notify(
                "on_grad_computed",
                named_parameters=TeeGenerator(self.get_all_learnable_params()),
                batch=batch,
                training=True,
            )
        self._step_optimizer(None)
        return step

    # -- inference without DataLoaders: embed once, compare to references --------

    @torch.inference_mode()
    def embed(self, X, batch_size=None, prepare=None):
        """Embeddings of the rows of ``X`` as a float32 numpy array.

        ``X`` holds float32 encoder inputs, or raw rows that ``prepare`` turns
        into them block by block (scaling a block that sits in the CPU cache is
        faster than scaling the whole array first).

        Every forward pass gets blocks of the same number of rows
        (``batch_size``, by default :data:`EMBED_ROWS` of the device), the
        last one padded with zeros: matrix products take other code paths for
        other numbers of rows, which round differently, so a sample's
        embedding would otherwise depend on how many samples were embedded
        with it.
        """
        module = self.module_
        module.eval()
        if batch_size is None:
            batch_size = EMBED_ROWS[torch.device(self.device).type]
        out = []
        for start in range(0, len(X), batch_size):
            xb = X[start : start + batch_size]
            if prepare is not None:
                xb = prepare(xb)
            xb = torch.as_tensor(xb).to(self.device, non_blocking=True)
            n = len(xb)
            if n < batch_size:
                xb = torch.cat([xb, xb.new_zeros((batch_size - n, *xb.shape[1:]))])
            out.append(module(xb)[:n].float().cpu())
        E = torch.cat(out)
        # A sum is finite exactly when every value is, unless the sum itself
        # overflows; one cheap pass decides, the exact check runs only then.
        if not torch.isfinite(E.sum()):
            bad = ~torch.isfinite(E).all(dim=1).numpy()
            # Distances to NaN would give NaN probabilities and arbitrary labels.
            if bad.any():
                raise ValueError(
                    f"The encoder returned NaN or infinite embeddings for "
                    f"{bad.sum()} of {len(E)} samples (the first is row "
                    f"{np.flatnonzero(bad)[0]}). Their values may lie far outside "
                    "those seen in fit: rescale or clip them."
                )
        return E.numpy()

    @torch.inference_mode()
    def rowwise(self, A, B):
        """Dissimilarity of embedding rows ``A[i]`` and ``B[i]``."""
        a = torch.as_tensor(A, device=self.device)
        b = torch.as_tensor(B, device=self.device)
        return self.module_.rowwise(a, b).cpu().numpy()

    @torch.inference_mode()
    def class_dissimilarity(
        self, Q, R, r_codes, n_classes, n_neighbors, r_weights=None
    ):
        """Mean dissimilarity of each query to its closest references of each
        class, over neighbourhoods that hold the same fraction of every class.

        The class with the fewest references is judged on its ``n_neighbors``
        closest ones; every other class on its closest references that stand
        for the same fraction of its training samples (at most a quarter of
        them, and never fewer than ``n_neighbors`` references). The mean is
        weighted by the samples each reference stands for. Among classes of
        equal size whose references are single samples this is the plain mean
        over the ``n_neighbors`` closest references; across classes of
        different sizes it compares densities rather than counts (a balanced
        k-nearest-neighbour rule), so that a large class does not win a query
        merely for having more references near it.

        Parameters
        ----------
        Q : ndarray of shape (n_queries, embedding_dim)
        R : ndarray of shape (n_references, embedding_dim)
        r_codes : ndarray of shape (n_references,)
            Class code of each reference, in ``range(n_classes)``.
        n_classes : int
        n_neighbors : int
        r_weights : ndarray of shape (n_references,), default=None
            Training samples each reference stands for (a k-means centre, its
            cluster); None: one each.

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
        if r_weights is None:
            W = np.ones(len(order))
        else:
            W = np.asarray(r_weights, dtype=np.float64)[order]
        sorted_codes = r_codes[order]
        bounds = np.searchsorted(sorted_codes, np.arange(n_classes + 1))
        counts = np.diff(bounds)
        # Samples each class's neighbourhood holds: the same share of every class.
        share = min(n_neighbors / counts[counts > 0].min(), _MAX_NEIGHBOURHOOD)
        want = share * np.bincount(sorted_codes, weights=W, minlength=n_classes)
        # A neighbourhood holds ``want`` once its weights reach this (sums of
        # weights may round just below it).
        enough = want * (1 - 1e-9)
        # References to fetch per query: enough to hold ``want`` samples if
        # they weigh what the class's references weigh on average (twice over);
        # queries whose closest references are lighter than that fetch again,
        # enough even if they were the lightest of the class.
        guess = np.minimum(
            counts, np.maximum(n_neighbors, np.ceil(2 * share * counts))
        ).astype(int)
        most = guess.copy()
        for c, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            lightest = np.cumsum(np.sort(W[lo:hi]))
            needed = np.searchsorted(lightest, enough[c]) + 1
            most[c] = min(hi - lo, max(guess[c], needed))
        W = torch.as_tensor(W, device=self.device)
        ref_block = max(1, min(len(R), _BLOCK_VALUES // (256 * width)))
        q_block = max(1, _BLOCK_VALUES // (ref_block * width))
        # Kept distances, weights and indices stay within the block budget too.
        q_block = max(1, min(q_block, _BLOCK_VALUES // (4 * max(1, most.max()))))

        def closest(q, lo, hi, fetch):
            """Distances to the ``fetch`` closest references of ``R[lo:hi]``,
            ascending, and their weights."""
            best = None
            for rs in range(lo, hi, ref_block):
                block = R[rs : min(hi, rs + ref_block)]
                d, idx = module.smallest(q, block, min(fetch, len(block)), indices=True)
                w = W[rs + idx]
                if best is not None:
                    d = torch.cat([best[0], d], dim=1)
                    w = torch.cat([best[1], w], dim=1)
                    # Blocks may be narrower than fetch (wide pair heads).
                    d, pick = torch.topk(
                        d, min(fetch, d.shape[1]), dim=1, largest=False
                    )
                    w = torch.gather(w, 1, pick)
                best = (d, w)
            return best

        def share_mean(d, w, k, want):
            """Weighted mean of ``d`` over the closest references that hold
            ``want`` samples, and at least the ``k`` closest, whatever they weigh."""
            total = w.cumsum(1)
            cover = torch.clamp(total[:, k - 1], min=want)
            take = torch.minimum((cover[:, None] - (total - w)).clamp(min=0), w)
            return (take * d).sum(1) / take.sum(1)

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
                d, w = closest(q, lo, hi, guess[c])
                score = share_mean(d, w, k, want[c])
                if most[c] > guess[c]:
                    short = torch.nonzero(w.sum(1) < enough[c])[:, 0]
                    if len(short):
                        d, w = closest(q[short], lo, hi, most[c])
                        score[short] = share_mean(d, w, k, want[c])
                out[qs : qs + len(q), c] = score.cpu().numpy()
        return out
