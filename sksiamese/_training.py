"""The skorch side of training: building the twin module and the skorch net
from an estimator's parameters, the balanced batch iterator, the net itself
(training steps, embedding without DataLoaders), its callbacks, devices and
seeding.

Nothing here knows about classes, references or calibration; the estimators
(``_base.py``) call :func:`build_module` and :func:`make_net`, train with
``net.partial_fit`` under :func:`seeded`, and read embeddings back with
:meth:`SiameseNet.embed`. :mod:`sksiamese._persistence` rebuilds saved nets
with the same two factories.
"""

import contextlib
import copy
import inspect
import math
import numbers
import threading
import warnings
import weakref

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, ProgressBar
from skorch.dataset import Dataset, get_len
from skorch.helper import predefined_split
from skorch.utils import TeeGenerator, to_tensor
from torch import nn

from ._augment import random_affine
from ._networks import CNNEncoder, EnsembleMLPEncoder, MLPEncoder, SiameseModule
from ._preprocessing import shared_tensor
from ._sampling import (
    AUTO_BATCH,
    BalancedBatchSampler,
    auto_batch_size,
    batch_layout,
)

# The most rows of a forward pass of SiameseNet.embed, by device type: on a CPU
# few enough that embedding one sample, or a few thousand (the last pass is
# padded), stays cheap, many enough that large inputs run near a plain
# forward pass; on a GPU enough to keep it busy. Measured on a CPU with one
# MLP network (benchmarks/embed_blocks.py, 2 threads): transform of 100,000
# rows at 0.62, 0.74-0.77 and 0.82 of a plain forward pass with 1,024, 2,048
# and 4,096 rows a pass; of 1 row in 0.7, 1.1 and 1.9 ms, of 5,000 rows in
# 2.8, 3.2 and 4.3 ms. On a GPU (an H200, embed_blocks.py) one network's
# transform of 100,000 rows ran at 0.14, 0.18, 0.24 and 0.28 of a plain
# forward pass with 8,192, 16,384, 32,768 and 65,536 rows a pass, with
# predict_proba of one row in 1.9-2.0 ms throughout; the 8-member ensemble's
# at 0.88-0.95, its predict_proba 3.9-4.1M -> 4.7-4.9M rows/s and of one row
# 2.4 -> 3.1-3.6 ms (two runs).
EMBED_ROWS = {"cpu": 2048, "cuda": 65536}
# The most values the widest activation of one of those passes may hold (the
# largest output of any part of the module, for all rows of the pass): fewer
# rows (a power of 2, at least 1) for a module with wide activations. On a
# CPU the widest activation then stays within the caches. Measured there: the
# default ensemble of 8 (1,024 values a row, so 512 rows) ran transform of
# 100,000 rows at 1.34-1.37 of a plain forward pass with 512 rows, 1.34-1.40
# with 1,024 and 1.15 with 4,096, and predict_proba of one row in 2.8 ms with
# 512 rows against 3.9-5.1 with 1,024; the CNN (channels last) on 105x105
# images (705,600 a row, so 1 row) at 352 images/s with 1 row, 506 with 4,
# 210 with 8 (105 with 1,024 before it ran channels last); on 28x28 images
# (50,176 a row, so 8 rows) at 4,300-4,600 images/s with 8 rows and 7,100
# with 64: larger passes would suit it, but an MLP's would then be too large
# (embedding the images is 1-2% of the Omniglot benchmark's fit). On a
# GPU the bound is on memory (256 MiB an activation): the CNN on 105x105
# images took 23 GiB an activation with 8,192 rows; with the 64 it gets, an
# H200 embedded 36,000 images/s, against 24,500 with 8,192.
_EMBED_VALUES = {"cpu": 1 << 19, "cuda": 1 << 26}
# Values per row of the widest activation of each module (weakly held), by
# the kind of input rows: measured once by pass_rows.
_WIDEST = weakref.WeakKeyDictionary()
# Rows of embeddings gathered on the device before one copy to the host.
_EMBED_COPY_ROWS = 1 << 20
# The most rows not read yet that EmbeddedRows embeds in the padding of a
# pass (all of it on a CPU, where a pass holds at most EMBED_ROWS["cpu"]).
_FILL_ROWS = 2048


def pass_rows(module, kind, key, first_row):
    """Rows of every forward pass of :meth:`SiameseNet.embed` for ``module``
    on a device of type ``kind``: :data:`EMBED_ROWS` of it, or fewer (a power
    of 2, at least 1) when the widest activation of that many rows would hold
    more than :data:`_EMBED_VALUES` of it.

    The widest activation is measured once per module and ``key`` (hashable:
    what sets the shape of the module's input rows): ``first_row()`` then
    gives one input row (a tensor of one row, on the module's device), and
    one forward pass over it with hooks measures it (the module in
    evaluation mode, as :meth:`SiameseNet.embed` leaves it). Later calls
    with the same key read no row.
    """
    cap = EMBED_ROWS[kind]
    budget = _EMBED_VALUES.get(kind)
    if budget is None:
        return cap
    shapes = _WIDEST.setdefault(module, {})
    if key not in shapes:
        row = first_row()
        widest = row[0].numel()

        def record(part, args, output):
            nonlocal widest
            for t in output if isinstance(output, (tuple, list)) else (output,):
                if isinstance(t, torch.Tensor):
                    widest = max(widest, t.numel() // len(row))

        hooks = [part.register_forward_hook(record) for part in module.modules()]
        try:
            with torch.inference_mode():
                module(row)
        finally:
            for hook in hooks:
                hook.remove()
        shapes[key] = widest
    most = max(1, budget // max(1, shapes[key]))
    return min(cap, 1 << (most.bit_length() - 1))


def to_cpu(obj):
    """A copy of a (nested) dict, list or tuple with every tensor on the CPU
    (anything else as it is)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        # copy.copy keeps the type (defaultdict, OrderedDict, ...).
        out = copy.copy(obj)
        out.update((k, to_cpu(v)) for k, v in obj.items())
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_cpu(v) for v in obj]
        if hasattr(obj, "_fields"):  # a namedtuple takes its fields one by one
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def _callback_on_cpu(callback):
    """``callback``, or a shallow copy of it whose tensors are on the CPU."""
    state = {k: to_cpu(v) for k, v in vars(callback).items()}
    if all(state[k] is v for k, v in vars(callback).items()):
        return callback
    copied = copy.copy(callback)
    copied.__dict__.update(state)
    return copied


def balanced_labels(y):
    """The labels whose classes :class:`BalancedBatchIterator` balances its
    batches over: ``y``, or the first column of 2-D targets (a pair's class
    code, then the groups of its sides)."""
    return y[:, 0] if y.ndim == 2 else y


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
        y = balanced_labels(y)
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
        # When every batch holds every class, every batch's labels are the
        # same (the sampler puts the classes in order): one tensor serves them
        # all, and the loss makes what it takes from the labels once, not at
        # every step (see :meth:`~sksiamese._losses.InBatchLoss._labels`).
        self.labels = None
        if self.y.dim() == 1 and self.sampler.n_per_batch == len(self.sampler.classes):
            labels = np.repeat(self.sampler.classes, self.sampler.samples_per_class)
            self.labels = torch.from_numpy(labels).to(self.y.dtype)
            if device is not None:
                self.labels = self.labels.to(device)
            elif pin_memory:
                self.labels = self.labels.pin_memory()
        self.augment = None if augment is None else tuple(augment)
        if self.augment is not None:
            seed = self.sampler.random_state.randint(np.iinfo(np.int32).max)
            self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        on_cuda = self.device is not None and torch.device(self.device).type == "cuda"
        for idx in self.sampler:
            idx = torch.from_numpy(idx)
            if on_cuda:
                # From pageable memory a copy waits for the device to finish
                # the work queued before it (the last step); from pinned
                # memory it is queued like a kernel.
                idx = idx.pin_memory().to(self.device, non_blocking=True)
            elif self.device is not None:
                idx = idx.to(self.device)
            X = self.X[idx]
            if self.augment is not None:
                X = random_affine(X, self.augment, self._generator)
            yield X, self.y[idx] if self.labels is None else self.labels


def _read_losses(rows, key):
    """Turn the tensors under ``key`` in history ``rows`` into floats, with
    one copy to the host (entries a callback has already replaced by a
    number are left as they are)."""
    pending = [row for row in rows if isinstance(row.get(key), torch.Tensor)]
    if pending:
        values = torch.stack([row[key] for row in pending]).tolist()
        for row, value in zip(pending, values, strict=True):
            row[key] = value


def _check_embeddings(E, first_row, n_rows, prepare=None, rows=None, name=None):
    """Raise a ValueError if the embeddings ``E`` of rows ``first_row`` on (of
    ``n_rows`` embedded) hold NaN or infinite values, after ``prepare``'s
    ``check`` (errors of the input come first). With ``rows``, the rows
    embedded are those rows of the input, and the error names them so;
    ``name`` (a function of a row) says what a row of the input is, where
    it is not a sample (the sides of pairs)."""
    # A sum is finite exactly when every value is, unless the sum itself
    # overflows; one cheap pass decides, the exact check runs only then.
    if torch.isfinite(E.sum()):
        return
    bad = ~torch.isfinite(E).all(dim=1).cpu().numpy()
    if not bad.any():
        return
    if hasattr(prepare, "check"):
        prepare.check()
    # A range of places among the rows embedded, which are the input's own
    # rows only without ``rows`` (and samples only without ``name``).
    where = (
        ""
        if len(E) == n_rows or rows is not None or name is not None
        else f" of rows {first_row} to {first_row + len(E) - 1} of {n_rows}"
    )
    first = first_row + np.flatnonzero(bad)[0]
    first = first if rows is None else rows[first]
    # Distances to NaN would give NaN probabilities and arbitrary labels.
    raise ValueError(
        f"The encoder returned NaN or infinite embeddings for {bad.sum()} of "
        f"{len(E)} {'samples' if name is None else 'vectors'}{where} (the first "
        f"is {f'row {first}' if name is None else name(first)}). Their values "
        "may lie far outside those seen in fit: rescale or clip them."
    )


class EmbeddedRows:
    """The embeddings of the rows of ``Z`` by the skorch ``net``, each
    computed the first time it is read, then kept.

    Indexing it as an array of shape ``(len(Z), width)`` (an int, a slice,
    an array of indices or a boolean mask) gives what indexing
    ``net.embed(Z)`` would, up to float32 rounding (a row may take another
    place in a block of :meth:`SiameseNet.embed`, and on a CPU a matrix
    product may round a row differently at another place: a few units in
    the last place, for some input widths), but rows are embedded as they
    are read (with rows not read yet in the rest of the last forward pass,
    see :meth:`embed_rows`). A fit's references and calibration read a
    sample of each large class (the rows its k-means sees, at most
    ``_calibration.calibration_cap`` calibration queries and their pair
    partners), so on hundreds of thousands of rows they embed a small share.
    """

    def __init__(self, net, Z):
        self._net, self._Z = net, Z
        # Where each row's embedding is in _kept (-1: not embedded yet).
        self._at = np.full(len(Z), -1, dtype=np.int64)
        self._kept = None

    def __len__(self):
        return len(self._Z)

    def __getitem__(self, index):
        rows = self._rows(index)
        self.embed_rows(rows)
        return self._kept[self._at[rows]]

    def _rows(self, index):
        """The row indices that ``index`` reads, as ``np.arange(len(Z))[index]``
        gives them, without making that whole range for the many small reads
        of a fit's references (one or three per class)."""
        n = len(self._Z)
        if isinstance(index, slice):
            return np.arange(*index.indices(n))
        index = np.asarray(index)
        if index.dtype.kind in "iu" and index.ndim == 1:
            if len(index) and (index.max() >= n or index.min() < -n):
                raise IndexError(f"index out of range for {n} rows")
            return np.where(index < 0, index + n, index)
        if index.dtype == bool and index.shape == (n,):
            return np.flatnonzero(index)
        return np.arange(n)[index]

    def embed_rows(self, rows):
        """Embed those of the rows ``rows`` (indices) not embedded yet, in one
        call of :meth:`SiameseNet.embed`. Its last forward pass would be
        padded to a whole block: rows not embedded yet (at most
        ``_FILL_ROWS``) take the place of the padding, at no cost, so that
        many small reads (a fit's calibration reads the rows of each class
        for each ensemble member) embed a small data set in the first and a
        large one in far fewer passes."""
        missing = rows[self._at[rows] < 0]
        if self._kept is None:
            # The first read sets the width (row 0 gives it when none is read).
            missing = np.append(missing, np.arange(min(1, len(self._Z))))
        if not np.size(missing):
            return
        missing = np.unique(missing)
        fill = -len(missing) % self._net.embed_pass_rows(self._Z, rows=missing)
        # At most _FILL_ROWS: a GPU's pass is far larger than a CPU's, and
        # every row embedded is copied back to the host.
        fill = min(fill, _FILL_ROWS)
        if fill:
            spare = self._at < 0
            spare[missing] = False
            missing = np.union1d(missing, np.flatnonzero(spare)[:fill])
        E = self._net.embed(self._Z, rows=missing)
        if self._kept is None:
            self._kept, self._n_kept = np.empty((len(self._Z), E.shape[1]), E.dtype), 0
        end = self._n_kept + len(E)
        self._kept[self._n_kept : end] = E
        self._at[missing] = np.arange(self._n_kept, end)
        self._n_kept = end

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


class _Initialized:
    """In a pickled :class:`SiameseNet`, a parameter (``module``,
    ``criterion``) that is the same object as its initialised attribute."""


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

    def __getstate__(self):
        # skorch pickles the module, criterion and optimizer so that a net
        # trained on a GPU loads on a machine without one; callbacks are
        # pickled as they are, and EarlyStopping keeps the best weights on
        # the training device: those go to the CPU. Compiled code is not
        # pickled: it is compiled again at the next training step.
        state = super().__getstate__()
        state.pop("_compiled", None)
        state.pop("_labels_copy", None)  # a batch's labels, on the device
        if "callbacks_" in state:
            state["callbacks_"] = [
                (name, _callback_on_cpu(cb)) for name, cb in state["callbacks_"]
            ]
        # The module and criterion are given to the net as instances, which
        # skorch uses as module_ and criterion_. As the parameters ``module``
        # and ``criterion`` they would be pickled plainly, on the training
        # device (a net trained on a GPU would then not load without one):
        # they are restored from module_ and criterion_ instead, which
        # skorch maps to the CPU where CUDA is absent.
        for name in ("module", "criterion"):
            if name in state and state[name] is self.__dict__.get(name + "_"):
                state[name] = _Initialized()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        for name in ("module", "criterion"):
            if isinstance(self.__dict__.get(name), _Initialized):
                self.__dict__[name] = self.__dict__[name + "_"]

    def torch_compile(self, module, name):
        """The module as it is: with ``compile=True`` the training steps run a
        compiled version of it (:meth:`_for_training`), while ``module_`` and
        ``criterion_`` stay plain modules, so that their state dicts, pickles
        and saved files are the same as without compiling, and prediction
        (blocks of other sizes, no gradients) compiles nothing."""
        return module

    def _for_training(self, name):
        """``module_`` or ``criterion_`` (``name``), compiled with
        ``torch.compile`` when ``compile=True`` (``compile__*`` parameters are
        its keyword arguments); compiled once per module, at its first
        training step."""
        module = getattr(self, name + "_")
        if not self.compile:
            return module
        compiled = self.__dict__.setdefault("_compiled", {})
        if name not in compiled or compiled[name][0] is not module:
            kwargs = self.get_params_for("compile")
            try:
                compiled[name] = (module, torch.compile(module, **kwargs))
            except (RuntimeError, TypeError, ValueError) as exc:
                # Its arguments' values, checked by torch.compile itself.
                raise ValueError(
                    f"compile={kwargs!r} was refused by torch.compile: {exc}"
                ) from exc
        return compiled[name][1]

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

    def _labels_on_device(self, y):
        """``y`` on the device. A batch's labels that are the host tensor of
        the previous batch (:attr:`BalancedBatchIterator.labels`, shared by
        every batch when the training data stay on the host) are copied once
        and the copy is used again, so that the loss makes its terms of the
        labels once (see :meth:`~sksiamese._losses.InBatchLoss._labels`),
        not at every step."""
        last = self.__dict__.get("_labels_copy")
        if last is not None and last[0] is y and last[1] == y._version:
            return last[2]
        on_device = self._to_device(y)
        if isinstance(y, torch.Tensor) and on_device is not y:
            # The source is held, so its identity stays its own.
            self._labels_copy = (y, y._version, on_device)
        return on_device

    def infer(self, x, **fit_params):
        x = self._to_device(x)
        training = self.module_.training
        autocast = (
            torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
            if self.mixed_precision and training
            else contextlib.nullcontext()  # entering autocast costs even if off
        )
        # Validation runs the plain module: no gradients, other batch sizes.
        module = self._for_training("module") if training else self.module_
        with autocast:
            if x.dim() == 3:
                n = len(x)
                emb = module(x.reshape(2 * n, -1), **fit_params)
                emb = emb.float().reshape(n, 2, -1)
                return emb[:, 0], emb[:, 1]
            # The loss is computed in float32 whatever the encoder ran in.
            return module(x, **fit_params).float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = self._labels_on_device(y_true)
        criterion = self._for_training("criterion") if training else self.criterion_
        return criterion(y_pred, y_true, self.module_)

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

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch, except that the batches' losses are read on the
        host once, at the end of the epoch, not after every step.

        Reading a loss (``.item()``) makes the host wait until a GPU has
        finished the step, so the next step cannot be queued while this one
        runs. During the epoch the history holds each batch's loss as a 0-d
        tensor (a callback that needs the number calls ``float`` on it); at
        its end, or when it is interrupted, as a float, as skorch records it.
        """
        if iterator is None:
            return
        key = prefix + "_loss"
        batches = self.history[-1]["batches"]
        first = len(batches)
        batch_count = 0
        try:
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                loss = step["loss"].detach()
                # A compiled step may run as a CUDA graph (mode=
                # "reduce-overhead"), whose outputs the next step overwrites.
                self.history.record_batch(key, loss.clone() if self.compile else loss)
                size = get_len(batch[0] if isinstance(batch, (tuple, list)) else batch)
                self.history.record_batch(prefix + "_batch_size", size)
                self.notify("on_batch_end", batch=batch, training=training, **step)
                batch_count += 1
        finally:
            _read_losses(batches[first:], key)
        self.history.record(prefix + "_batch_count", batch_count)

    # -- inference without DataLoaders: embed once, compare to references --------

    @torch.inference_mode()
    def embed(self, X, batch_size=None, prepare=None, then=None, rows=None, name=None):
        """Embeddings of the rows of ``X`` (or of its rows ``rows``, indices,
        gathered block by block) as a float32 numpy array.

        ``X`` holds float32 encoder inputs, or raw rows that ``prepare`` turns
        into them block by block, as tensors on the device (scaling a block
        that sits in the CPU cache is faster than scaling the whole array
        first; on a GPU the device scales): a
        :class:`~sksiamese._preprocessing.BlockTransform`, whose ``check``
        is called after the last block and whose ``row_shape`` is that of
        the encoder inputs it makes.

        ``then``, a function of a float32 tensor of embeddings on the device
        that returns a numpy array, is called on every group of at most
        ``_EMBED_COPY_ROWS`` rows as soon as it is embedded, and the result
        is its returns, concatenated: the embeddings never leave the device
        (e.g. prediction compares them with the references there).

        NaN or infinite embeddings raise a ``ValueError`` that names the
        first row that has them, or ``name`` of it (a function of a row
        number: what a row is, where it is not a sample).

        Every forward pass gets blocks of the same number of rows
        (``batch_size``, by default :func:`pass_rows` of the module and the
        device: :data:`EMBED_ROWS`, or fewer for wide activations), the last
        one padded with zeros: matrix products take other code paths for
        other numbers of rows, which round differently, so a sample's
        embedding would otherwise depend on how many samples were embedded
        with it. (Its place in a block can still change its rounding on a
        CPU, for some input widths: by a few units in the last place.)
        """
        module = self.module_
        module.eval()
        kind = torch.device(self.device).type
        on_host = kind == "cpu"
        n_rows = len(X) if rows is None else len(rows)

        def read(start, stop):
            """Rows ``start:stop`` of the input, prepared, on the device."""
            xb = X[start:stop] if rows is None else X[rows[start:stop]]
            if prepare is not None:
                xb = prepare(xb)
            return torch.as_tensor(xb).to(self.device, non_blocking=True)

        if batch_size is None:
            batch_size = self.embed_pass_rows(X, prepare, rows)
        # Blocks are written into a group of at most _EMBED_COPY_ROWS rows on
        # the device, which goes back to the host (or to ``then``) at once: a
        # copy (and a wait for the device) per group, not per block. On a
        # CPU without ``then`` the group is a part of the result itself; no
        # embedding is ever copied twice, nor held in two places.
        group_rows = -(-_EMBED_COPY_ROWS // batch_size) * batch_size
        out, result, group, done = [], None, None, 0
        for start in range(0, n_rows, batch_size):
            xb = read(start, start + batch_size)
            n = len(xb)
            if n < batch_size:
                xb = torch.cat([xb, xb.new_zeros((batch_size - n, *xb.shape[1:]))])
            block = module(xb)[:n]
            if group is None:  # the first block of a group
                size = min(group_rows, n_rows - start)
                if then is None and result is None:
                    result = torch.empty((n_rows, block.shape[1]), dtype=torch.float32)
                if then is None and on_host:
                    group = result[start : start + size]
                else:
                    group = block.new_empty((size, block.shape[1]), dtype=torch.float32)
                filled = 0
            group[filled : filled + n] = block
            filled += n
            if filled == len(group):
                if then is not None or not on_host:
                    # Checked on the device, where it is one cheap pass.
                    _check_embeddings(group, done, n_rows, prepare, rows, name)
                if then is not None:
                    out.append(then(group))
                elif not on_host:
                    result[done : done + filled] = group
                done += filled
                group = None
        if hasattr(prepare, "check"):
            prepare.check()  # errors of the input, before those of the output
        if then is not None:
            return np.concatenate(out)
        if on_host:
            _check_embeddings(result, 0, len(result), rows=rows, name=name)
        return result.numpy()

    def embed_pass_rows(self, X, prepare=None, rows=None):
        """Rows of every forward pass of :meth:`embed` over ``X`` (or its
        rows ``rows``), by default: fixed for the module and the kind of
        input rows, not by the number of rows given (see
        :func:`pass_rows`). Leaves the module in evaluation mode, as
        :meth:`embed` does: the measurement is a forward pass."""
        self.module_.eval()
        kind = torch.device(self.device).type
        if not (len(X) if rows is None else len(rows)):
            return EMBED_ROWS[kind]

        def first_row():
            xb = X[0:1] if rows is None else X[rows[0:1]]
            if prepare is not None:
                xb = prepare(xb)
            return torch.as_tensor(xb).to(self.device, non_blocking=True)

        shape = X.shape[1:] if prepare is None else prepare.row_shape
        return pass_rows(self.module_, kind, tuple(shape), first_row)

    @torch.inference_mode()
    def rowwise(self, A, B):
        """Dissimilarity of embedding rows ``A[i]`` and ``B[i]``."""
        a = torch.as_tensor(A, device=self.device)
        b = torch.as_tensor(B, device=self.device)
        return self.module_.rowwise(a, b).cpu().numpy()


class BalancedProgressBar(ProgressBar):
    """skorch's :class:`~skorch.callbacks.ProgressBar` (a tqdm bar on stderr for
    each epoch) counting the batches of the class-balanced iterators.

    skorch's own count divides the number of samples by ``batch_size``; a
    balanced batch holds ``P * K`` samples (see
    :func:`~sksiamese._sampling.batch_layout`), which can differ.
    """

    def _get_postfix_dict(self, net):
        # The batch's loss is a tensor until the end of the epoch (see
        # SiameseNet.run_single_epoch); the bar shows it as a number.
        return {k: float(v) for k, v in super()._get_postfix_dict(net).items()}

    def _get_batches_per_epoch_phase(self, net, dataset, training):
        name = "iterator_train" if training else "iterator_valid"
        if dataset is None or getattr(net, name) is not BalancedBatchIterator:
            return super()._get_batches_per_epoch_phase(net, dataset, training)
        y = balanced_labels(np.asarray(dataset.y))
        if not hasattr(self, "counts_"):
            self.counts_ = {}
        params = net.get_params_for(name)
        batch_size = params.get("batch_size", net.batch_size)
        samples_per_class = params.get("samples_per_class")
        # The layout follows the classes present and the largest (codes:
        # counted in one pass), which partial_fit's calls change at the same
        # number of rows, as they change the batch parameters.
        counts = np.bincount(y)
        counts = counts[counts > 0]
        key = (training, len(y), batch_size, samples_per_class)
        key += (len(counts), counts.max())
        if key not in self.counts_:
            p, k = batch_layout(
                max(len(counts), 2),
                batch_size,
                samples_per_class,
                largest_class=counts.max(),
            )
            self.counts_[key] = max(1, math.ceil(len(y) / (p * k)))
        return self.counts_[key]


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class _DivergenceGuard(Callback):
    """Stop with a clear message at the end of an epoch in which a training
    loss was not finite, or after which the weights are not (the last step
    of training can break them with a finite loss).

    The losses are checked once per epoch, when they are read on the host
    (see :meth:`SiameseNet.run_single_epoch`): checking every step would
    make the host wait for a GPU at every step.
    """

    _advice = (
        "Try a lower `lr`, scale the inputs (values of very different "
        "magnitudes), or a smaller `margin`."
    )

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        for row in net.history[-1]["batches"]:
            loss = row.get("train_loss")
            if loss is not None and not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"Training diverged: the loss became {loss} in epoch {epoch}. "
                    + self._advice
                )
        with torch.no_grad():
            params = list(net.module_.parameters())
            finite = torch.stack([torch.isfinite(p).all() for p in params]).all()
        if not finite:
            raise TrainingDivergedError(
                "Training diverged: the network weights became NaN or infinite in "
                f"epoch {epoch}. " + self._advice
            )


def warn_if_not_converged(estimator, net):
    """ConvergenceWarning when early stopping ran all ``max_epochs`` epochs
    while the held-out loss was still improving, as scikit-learn's MLP warns.

    It is still improving when it fell by more than ``tol`` (relative) within
    the last ``n_iter_no_change`` epochs; with no fall after the first epoch,
    the warning says that there were too few epochs to judge. Without early
    stopping the number of epochs is a fixed budget and nothing is checked:
    the training loss of freshly drawn balanced batches is too noisy to tell
    convergence, and a held-out loss recorded without it
    (:class:`SiamesePairClassifier` holds out pairs to calibrate on) is a
    record, not a stopping rule.
    """
    history = net.history
    if (
        not estimator.early_stopping
        or len(history) < estimator.max_epochs
        or "valid_loss" not in history[-1]
    ):
        return
    losses = np.asarray(history[:, "valid_loss"], dtype=float)
    best = np.minimum.accumulate(losses)
    improved = np.flatnonzero(best[1:] < best[:-1] * (1 - estimator.tol)) + 1
    last = improved[-1] if len(improved) else 0
    if len(losses) - 1 - last < estimator.n_iter_no_change:
        # Without an improvement after the first epoch, only too few epochs
        # to judge (max_epochs <= n_iter_no_change) get here.
        why = (
            "while the held-out loss was still improving"
            if last
            else f"before early stopping could judge (n_iter_no_change="
            f"{estimator.n_iter_no_change} epochs without improvement)"
        )
        warnings.warn(
            f"{type(estimator).__name__} stopped after max_epochs="
            f"{estimator.max_epochs} epochs {why}; raise max_epochs to let "
            "training converge.",
            ConvergenceWarning,
            stacklevel=4,
        )


# -- devices and seeds ---------------------------------------------------------


@contextlib.contextmanager
def recording_gradients():
    """Training's grad mode, whatever the caller's: ``fit`` called under
    ``torch.no_grad()`` or ``torch.inference_mode()`` (from an evaluation
    loop, say) would otherwise fail inside ``backward()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def resolve_device(device):
    """Turn the ``device`` parameter into a torch device string."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    # Other torch device types ("meta", "mps", ...) would fail later, deep in torch.
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='auto' or device='cpu'."
        )
    return str(parsed)


def data_device(nbytes, device):
    """Where training batches should be gathered: on a CUDA ``device`` when the
    data take less than a quarter of its free memory, else None (on the host,
    pinned, copied per batch)."""
    if not str(device).startswith("cuda"):
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return device if nbytes < free / 4 else None


def fused_optimizer(module, device):
    """Whether ``torch.optim.AdamW(fused=True)`` can train ``module`` on
    ``device``: one kernel per step instead of a loop over the parameters
    (10-15% faster steps for a small MLP on the CPU), the same algorithm.
    PyTorch has it for CPU and CUDA tensors since 2.4, for floating point
    parameters only."""
    return (
        torch.__version__ >= "2.4"  # a TorchVersion: compares as a version
        and torch.device(device).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in module.parameters())
    )


# Held while torch's process-wide random generator is seeded for a fit.
_TORCH_RNG_LOCK = threading.RLock()
# Whether seeded switches cuDNN to its deterministic algorithms on a CUDA
# device. On an H200 the Omniglot benchmark trained in 9.00 s with them and
# 9.03 s without, so fits always use them; benchmarks/omniglot.py
# --cudnn-default sets this to False to measure that again.
_DETERMINISTIC_CUDNN = True


@contextlib.contextmanager
def seeded(seed, device):
    """Seed torch's global RNG for the block, then restore its state.

    The generator is shared by the whole process, so blocks in different
    threads (a search on joblib's threading backend, an in-process Dask
    cluster) take turns: otherwise one fit would reseed another's generator
    halfway through and ``random_state`` would not repeat a fit.

    On a CUDA device, cuDNN also runs deterministic algorithms for the block
    (its autotuner off), as convolutions' backward passes otherwise sum in
    an order that changes from run to run; its settings are restored after.
    """
    cuda = device.startswith("cuda")
    devices = list(range(torch.cuda.device_count())) if cuda else []
    cudnn = torch.backends.cudnn
    with _TORCH_RNG_LOCK, torch.random.fork_rng(devices=devices):
        saved = cudnn.deterministic, cudnn.benchmark
        if cuda and _DETERMINISTIC_CUDNN:
            cudnn.deterministic, cudnn.benchmark = True, False
        try:
            torch.manual_seed(seed)
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = saved


# -- the factories: module and net from an estimator's parameters ---------------


class _Reshape(nn.Module):
    """Give a user's encoder its inputs back in their original (image) shape."""

    def __init__(self, shape, module):
        super().__init__()
        self.shape = tuple(shape)
        self.module = module

    def forward(self, x):
        return self.module(x.reshape(len(x), *self.shape))


def n_members(estimator):
    """Ensemble members of the encoder: ``n_members`` for the "mlp" encoder,
    1 for the others (single networks)."""
    return int(estimator.n_members) if estimator.encoder == "mlp" else 1


def _make_encoder(estimator, n_inputs):
    """The encoder that ``estimator``'s parameters name, untrained."""
    encoder, params = estimator.encoder, estimator.encoder_params
    if encoder == "mlp" and params:
        raise ValueError(
            "encoder_params are for encoder='cnn' or a module class; the 'mlp' "
            "encoder is set by hidden_layer_sizes, embedding_dim and dropout. "
            f"Got encoder_params={params!r}."
        )
    if encoder == "mlp":
        # One int is one hidden layer, as in scikit-learn's MLPClassifier.
        sizes = np.atleast_1d(np.asarray(estimator.hidden_layer_sizes, dtype=object))
        # A width of 0 would train a constant network without complaint.
        if sizes.ndim != 1 or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
            for s in sizes
        ):
            raise ValueError(
                "hidden_layer_sizes must be a sequence of positive ints; got "
                f"{estimator.hidden_layer_sizes!r}."
            )
        sizes = tuple(int(s) for s in sizes)
        members = n_members(estimator)
        if members > 1:
            return EnsembleMLPEncoder(
                n_inputs, sizes, estimator.embedding_dim, estimator.dropout, members
            )
        return MLPEncoder(n_inputs, sizes, estimator.embedding_dim, estimator.dropout)
    if encoder == "cnn":
        if n_inputs != int(np.prod(estimator.image_shape_)):
            raise ValueError("encoder='cnn' does not accept blanks (NaN) in images.")
        params = dict(params or {})
        unknown = sorted(set(params) - {"channels", "n_blocks"})
        if unknown:
            raise ValueError(
                f"encoder_params for encoder='cnn' may set 'channels' and "
                f"'n_blocks'; got unknown {unknown}."
            )
        for key, value in params.items():
            if (
                not isinstance(value, numbers.Integral)
                or isinstance(value, bool)
                or value < 1
            ):
                raise ValueError(
                    f"encoder_params[{key!r}] must be a positive int; got {value!r}."
                )
        return CNNEncoder(estimator.image_shape_, estimator.embedding_dim, **params)
    if isinstance(encoder, nn.Module):
        encoder = copy.deepcopy(encoder)
    elif isinstance(encoder, type) and issubclass(encoder, nn.Module):
        try:
            encoder = encoder(**(params or {}))
        except TypeError as exc:
            raise TypeError(
                f"encoder_params={params!r} do not fit {encoder.__name__}: {exc}"
            ) from exc
    else:
        raise TypeError(
            "encoder must be 'mlp', 'cnn', a torch.nn.Module instance or a "
            f"torch.nn.Module subclass; got {encoder!r}."
        )
    if estimator.image_shape_ is not None:
        if n_inputs != int(np.prod(estimator.image_shape_)):
            # The columns that flag blanks have no place in an image.
            raise ValueError(
                f"encoder={type(encoder).__name__} does not accept blanks (NaN) "
                "in images: it receives them in their shape "
                f"{estimator.image_shape_}, with no place for the columns that "
                "flag blanks. Fill the blanks, or give X as flat rows without "
                "image_shape: the module then receives the rows and those columns."
            )
        encoder = _Reshape(estimator.image_shape_, encoder)
    return encoder


def _encoder_name(estimator):
    """The name of ``estimator.encoder`` in messages: a class's, or a
    module's class's."""
    encoder = estimator.encoder
    return getattr(encoder, "__name__", type(encoder).__name__)


def build_module(estimator, n_inputs, head, probe, device):
    """The twin module of ``estimator``'s parameters on ``device``, its encoder
    checked on two rows of ``probe`` (scaled inputs): it must return 2-D
    floating-point embeddings that depend on its trainable parameters, if it
    has any, and the module (encoder and ``head``) must have parameters to
    train."""
    encoder = _make_encoder(estimator, n_inputs).to(device)
    x = torch.as_tensor(probe[:2], device=device)
    was_training = encoder.training
    encoder.eval()
    try:
        # With the gradient recorded (two rows: it costs nothing), to learn
        # whether the embeddings depend on the encoder's trainable weights.
        with torch.enable_grad():
            out = encoder(x)
    except Exception as exc:
        raise ValueError(
            f"The encoder failed on a batch of shape {tuple(x.shape)}: {exc}"
        ) from exc
    encoder.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
        raise ValueError(
            "The encoder must return a 2-D tensor of shape (n_samples, "
            f"embedding_dim); for an input of shape {tuple(x.shape)} it "
            f"returned {got}."
        )
    # Training follows the gradient of the loss through the embeddings to the
    # weights: without either, it fails deep inside torch.
    if not out.is_floating_point():
        raise ValueError(
            "The encoder must return floating-point embeddings, through which "
            "training can follow the gradient; for an input of shape "
            f"{tuple(x.shape)} it returned {out.dtype}."
        )
    if (
        any(p.requires_grad for p in encoder.parameters())
        and not out.requires_grad
        and not torch.is_inference_mode_enabled()  # (where nothing records it)
    ):
        raise ValueError(
            f"encoder={_encoder_name(estimator)} returns embeddings that do not "
            "depend on its trainable parameters (they carry no gradient: a "
            ".detach(), torch.no_grad() or an integer step inside forward?): "
            "training could not change it. Return embeddings computed from "
            "the parameters, or freeze them with requires_grad_(False) to "
            "train a pair head alone."
        )
    module = SiameseModule(
        encoder,
        distance=estimator.distance,
        head=head,
        embedding_dim=out.shape[1],
        n_members=n_members(estimator),
    ).to(device)
    if not any(p.requires_grad for p in module.parameters()):
        raise ValueError(
            f"encoder={_encoder_name(estimator)} has no parameters to train "
            "(none, or none with requires_grad=True): training could not "
            "change it. Give a module "
            "with trainable parameters, or unfreeze them with requires_grad_()."
        )
    return module


def _check_callbacks(callbacks):
    for item in callbacks or []:
        cb = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if not (
            isinstance(cb, Callback)
            or (isinstance(cb, type) and issubclass(cb, Callback))
        ):
            raise TypeError(
                "callbacks must hold skorch callbacks or (name, callback) "
                f"tuples; got {item!r}."
            )


def resolve_batch_size(batch_size, n_train, all_pairs=False):
    """``batch_size``, or for ``"auto"`` the size
    :func:`~sksiamese._sampling.auto_batch_size` gives ``n_train`` rows.

    ``all_pairs``: the loss compares every pair of a batch, so its cost per
    step grows with the square of the batch, and a larger batch would cost
    more per sample, not less (an epoch of 220,000 rows with the contrastive
    loss took 9 times as long at 1,024 as at 128 on a CPU): ``"auto"`` is then
    128.
    """
    if batch_size != "auto":
        return batch_size
    return auto_batch_size(n_train, AUTO_BATCH[0] if all_pairs else AUTO_BATCH[1])


def batch_size_and_lr(estimator):
    """The batch size and learning rate ``estimator`` trains with.

    Its ``batch_size`` and ``lr``; with ``batch_size="auto"``, the fitted
    ``batch_size_`` (:func:`~sksiamese._sampling.auto_batch_size` of the
    training rows) and ``lr`` scaled by ``(batch_size_ / 128) ** 0.75``: larger
    batches make fewer steps, each a less noisy one, and a larger step keeps the
    training done per epoch (on 400,000 generated rows, batches of 512 and
    1,024 so scaled matched the average precision of batches of 128 after 5
    epochs, where the unscaled rate fell behind).
    """
    if estimator.batch_size != "auto":
        return estimator.batch_size, estimator.lr
    batch = estimator.batch_size_
    return batch, estimator.lr * (batch / AUTO_BATCH[0]) ** 0.75


# The keyword arguments of torch.compile, which compile=dict(...) may set.
_COMPILE_KWARGS = tuple(
    name
    for name, p in inspect.signature(torch.compile).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)


def _compile_params(compile):
    """The skorch parameters of an estimator's ``compile`` (False, True or a
    dict of ``torch.compile``'s keyword arguments)."""
    if not isinstance(compile, dict):
        return {"compile": bool(compile)}
    unknown = sorted(set(compile) - set(_COMPILE_KWARGS))
    if unknown:
        raise ValueError(
            f"compile holds {', '.join(map(repr, unknown))}, which torch.compile "
            f"does not take; its keyword arguments are {', '.join(_COMPILE_KWARGS)}."
        )
    return {"compile": True, **{f"compile__{k}": v for k, v in compile.items()}}


def batch_params(estimator, augment=None):
    """The parameters of the skorch net that make its batches from
    ``estimator``'s: the batch size, the samples of a class in a batch,
    and ``augment`` (see :func:`make_net`). ``partial_fit`` sets them again
    at every call, so a net follows the estimator's parameters as they are
    set (as a net rebuilt by :func:`~sksiamese.load` does)."""
    samples_per_class = getattr(estimator, "samples_per_class", None)
    return dict(
        batch_size=batch_size_and_lr(estimator)[0],
        iterator_train__samples_per_class=samples_per_class,
        iterator_valid__samples_per_class=samples_per_class,
        iterator_train__augment=augment,
    )


def make_net(
    estimator,
    module,
    criterion,
    valid,
    rng,
    device,
    augment=None,
    batch_device=None,
):
    """The untrained skorch net that trains ``module`` with ``estimator``'s
    parameters.

    ``valid`` is the held-out ``(X, y)`` of early stopping, or None; ``rng``
    draws the seeds of the batch iterators; ``augment`` is the image shape to
    distort training batches with (see :class:`BalancedBatchIterator`), or
    None; ``batch_device`` the device to keep training data on (see
    :func:`data_device`), or None.
    """
    lr = batch_size_and_lr(estimator)[1]
    for name, value in (("lr", lr), ("weight_decay", estimator.weight_decay)):
        # The optimizer works in float32: a larger value is an overflow in
        # torch, not a learning rate.
        try:
            ok = abs(float(value)) <= float(np.finfo(np.float32).max)
        except OverflowError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} must be a finite float32 number (at most 3.4e38); "
                f"got {value!r}."
            )
    callbacks = [("divergence_guard", _DivergenceGuard())]
    if valid is not None and estimator.early_stopping:
        callbacks.append(
            (
                "early_stopping",
                EarlyStopping(
                    monitor="valid_loss",
                    patience=estimator.n_iter_no_change,
                    threshold=estimator.tol,
                    threshold_mode="rel",
                    load_best=True,
                ),
            )
        )
    if estimator.verbose >= 2:
        callbacks.append(("progress_bar", BalancedProgressBar()))
    _check_callbacks(estimator.callbacks)
    callbacks += copy.deepcopy(estimator.callbacks or [])
    return SiameseNet(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.AdamW,
        lr=lr,
        optimizer__weight_decay=estimator.weight_decay,
        optimizer__fused=fused_optimizer(module, device) or None,
        max_epochs=estimator.max_epochs,
        **batch_params(estimator, augment),
        iterator_train=BalancedBatchIterator,
        iterator_train__random_state=rng.randint(np.iinfo(np.int32).max),
        iterator_train__pin_memory=device.startswith("cuda"),
        mixed_precision=getattr(estimator, "mixed_precision", False),
        **_compile_params(getattr(estimator, "compile", False)),
        iterator_train__device=batch_device,
        iterator_valid=BalancedBatchIterator,
        iterator_valid__random_state=rng.randint(np.iinfo(np.int32).max),
        iterator_valid__resample=False,
        iterator_valid__device=batch_device,
        train_split=None if valid is None else predefined_split(Dataset(*valid)),
        callbacks=callbacks,
        verbose=estimator.verbose,
        device=device,
    )
