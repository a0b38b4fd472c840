"""The training core shared by every sksiamese estimator."""

import contextlib
import copy
import math
import numbers
import threading
import warnings

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

from ._compat import HasMethods, Interval, StrOptions, validate_data
from ._net import BalancedBatchIterator, SiameseNet
from ._networks import (
    DISTANCES,
    CNNEncoder,
    EnsembleMLPEncoder,
    MLPEncoder,
    SiameseModule,
)
from ._preprocessing import BlankAwareScaler


class TrainingDivergedError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class _DivergenceGuard(Callback):
    """Stop with a clear message as soon as a training loss is not finite, or
    the weights are not at the end of an epoch (the last step of training can
    break them with a finite loss)."""

    _advice = (
        "Try a lower `lr`, scale the inputs (values of very different "
        "magnitudes), or a smaller `margin`."
    )

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        # A Python float check: cheaper than a tensor op at every step.
        if training and loss is not None and not math.isfinite(loss.item()):
            epoch = len(net.history)
            raise TrainingDivergedError(
                f"Training diverged: the loss became {loss.item()} in epoch {epoch}. "
                + self._advice
            )

    def on_epoch_end(self, net, **kwargs):
        with torch.no_grad():
            finite = all(torch.isfinite(p).all() for p in net.module_.parameters())
        if not finite:
            raise TrainingDivergedError(
                "Training diverged: the network weights became NaN or infinite in "
                f"epoch {len(net.history)}. " + self._advice
            )


class _Reshape(nn.Module):
    """Give a user's encoder its inputs back in their original (image) shape."""

    def __init__(self, shape, module):
        super().__init__()
        self.shape = tuple(shape)
        self.module = module

    def forward(self, x):
        return self.module(x.reshape(len(x), *self.shape))


@contextlib.contextmanager
def _restore_on_failure(estimator, deep=()):
    """Leave ``estimator`` exactly as it was if the block raises.

    Attributes are restored by reference, except those named in ``deep``: the
    block changes them in place (``partial_fit`` trains the existing net), so
    they are restored from a deep copy taken first.
    """
    state = estimator.__dict__.copy()
    for name in deep:
        if name in state:
            state[name] = copy.deepcopy(state[name])
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        raise


def data_device(nbytes, device):
    """Where training batches should be gathered: on a CUDA ``device`` when the
    data take less than a quarter of its free memory, else None (on the host,
    pinned, copied per batch)."""
    if not str(device).startswith("cuda"):
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return device if nbytes < free / 4 else None


# Held while torch's process-wide random generator is seeded for a fit.
_TORCH_RNG_LOCK = threading.RLock()


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


class _BaseSiamese(BaseEstimator):
    """Parameters, input handling and the training loop shared by the estimators.

    Subclasses define the criterion and what ``y`` means; this class builds the
    encoder, the skorch net, the balanced batches and the held-out split.
    """

    _parameter_constraints = {
        "encoder": [
            StrOptions({"mlp", "cnn"}),
            nn.Module,
            HasMethods(["forward"]),
        ],
        "hidden_layer_sizes": ["array-like"],
        "embedding_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_members": [Interval(numbers.Integral, 1, None, closed="left")],
        "image_shape": ["array-like", None],
        "encoder_params": [dict, None],
        "distance": [StrOptions(set(DISTANCES))],
        "margin": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 4, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "callbacks": [list, None],
        "scaling": [StrOptions({"auto", "robust", "standard", "global"}), None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # -- input -----------------------------------------------------------------

    def _image_input(self):
        return self.encoder == "cnn" or not isinstance(self.encoder, str)

    def _validate_X(self, X, y="no_validation", reset=True):
        """Validate ``X`` (and ``y``), flattening image arrays to rows.

        Returns a float 2-D array (NaN allowed), or ``(X, y)`` when ``y`` is
        given (None included, which is refused with scikit-learn's message).
        """
        shape = None
        if self._image_input() and getattr(X, "ndim", 2) in (3, 4):
            X = np.asarray(X)
            shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]
            if not reset and getattr(self, "image_shape_", None) not in (None, shape):
                raise ValueError(
                    f"X has images of shape {shape}, but {type(self).__name__} was "
                    f"fitted on images of shape {self.image_shape_}."
                )
            X = X.reshape(len(X), -1)
        kwargs = dict(
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            ensure_min_samples=2 if reset else 1,
        )
        out = validate_data(self, X, y, **kwargs)
        if reset:
            X = out[0] if isinstance(out, tuple) else out
            self.image_shape_ = self._resolve_image_shape(shape, X.shape[1])
        return out

    def _resolve_image_shape(self, shape, n_features):
        if shape is None and self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if len(shape) == 2:
                shape = (1, *shape)
            if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"image_shape={self.image_shape!r} does not match X with "
                    f"{n_features} features per row; give (height, width) or "
                    "(channels, height, width), positive, whose product is "
                    "n_features."
                )
        if shape is None and self.encoder == "cnn":
            side = int(round(np.sqrt(n_features)))
            if side * side != n_features:
                raise ValueError(
                    "encoder='cnn' needs the image shape: pass X as (n, H, W) or "
                    "(n, C, H, W), or set image_shape; X has "
                    f"{n_features} features per row, which is not a square image."
                )
            shape = (1, side, side)
        return tuple(int(s) for s in shape) if shape is not None else None

    def _make_scaler(self):
        scaling = self.scaling
        if scaling == "auto":
            scaling = "global" if self.image_shape_ is not None else self._auto_scaling
        return BlankAwareScaler(scaling)

    # What scaling="auto" means for feature vectors (images: "global").
    _auto_scaling = "robust"

    def _encode(self, X):
        """Validated, scaled float32 rows for a fitted estimator."""
        X = self._validate_X(X, reset=False)
        return self._scaler.transform(X)

    def _embed(self, X):
        """Embeddings of validated, unscaled rows ``X`` of a fitted estimator
        (scaled block by block while embedding)."""
        return self.net_.embed(X, prepare=self._scaler.tensor_transform())

    # -- network ---------------------------------------------------------------

    def _build_module(self, n_inputs, head, probe, device):
        """The twin module on ``device``, checked on two rows of ``probe``."""
        encoder = self.encoder
        if encoder == "mlp" and self.encoder_params:
            raise ValueError(
                "encoder_params are for encoder='cnn' or a module class; the 'mlp' "
                "encoder is set by hidden_layer_sizes, embedding_dim and dropout. "
                f"Got encoder_params={self.encoder_params!r}."
            )
        if encoder == "mlp":
            sizes = np.asarray(self.hidden_layer_sizes, dtype=object)
            # A width of 0 would train a constant network without complaint.
            if sizes.ndim != 1 or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                for s in sizes
            ):
                raise ValueError(
                    "hidden_layer_sizes must be a sequence of positive ints; got "
                    f"{self.hidden_layer_sizes!r}."
                )
            sizes = tuple(int(s) for s in sizes)
            n_members = self._n_members()
            if n_members > 1:
                encoder = EnsembleMLPEncoder(
                    n_inputs, sizes, self.embedding_dim, self.dropout, n_members
                )
            else:
                encoder = MLPEncoder(n_inputs, sizes, self.embedding_dim, self.dropout)
        elif encoder == "cnn":
            if n_inputs != int(np.prod(self.image_shape_)):
                raise ValueError(
                    "encoder='cnn' does not accept blanks (NaN) in images."
                )
            params = dict(self.encoder_params or {})
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
                        f"encoder_params[{key!r}] must be a positive int; got "
                        f"{value!r}."
                    )
            encoder = CNNEncoder(self.image_shape_, self.embedding_dim, **params)
        elif isinstance(encoder, nn.Module):
            encoder = copy.deepcopy(encoder)
        elif isinstance(encoder, type) and issubclass(encoder, nn.Module):
            try:
                encoder = encoder(**(self.encoder_params or {}))
            except TypeError as exc:
                raise TypeError(
                    f"encoder_params={self.encoder_params!r} do not fit "
                    f"{encoder.__name__}: {exc}"
                ) from exc
        else:
            raise TypeError(
                "encoder must be 'mlp', 'cnn', a torch.nn.Module instance or a "
                f"torch.nn.Module subclass; got {encoder!r}."
            )
        if not isinstance(self.encoder, str) and self.image_shape_ is not None:
            encoder = _Reshape(self.image_shape_, encoder)
        encoder = encoder.to(device)
        x = torch.as_tensor(probe[:2], device=device)
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
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
        return SiameseModule(
            encoder,
            distance=self.distance,
            head=head,
            embedding_dim=out.shape[1],
            n_members=self._n_members(),
        ).to(device)

    def _n_members(self):
        """Ensemble members of the encoder: ``n_members`` for the "mlp" encoder,
        1 for the others (single networks)."""
        return int(self.n_members) if self.encoder == "mlp" else 1

    def _make_net(
        self,
        module,
        criterion,
        valid,
        rng,
        device,
        samples_per_class,
        augment=None,
        batch_device=None,
    ):
        """The untrained skorch net; ``augment`` is the image shape to distort
        training batches with (see :class:`BalancedBatchIterator`), or None;
        ``batch_device`` the device to keep training data on (see
        :func:`data_device`), or None."""
        for name in ("lr", "weight_decay"):
            # The optimizer works in float32: a larger value is an overflow in
            # torch, not a learning rate.
            value = getattr(self, name)
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
        if valid is not None and self.early_stopping:
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss",
                        patience=self.n_iter_no_change,
                        threshold=self.tol,
                        threshold_mode="rel",
                        load_best=True,
                    ),
                )
            )
        if self.verbose >= 2:
            from ._progress import BalancedProgressBar

            callbacks.append(("progress_bar", BalancedProgressBar()))
        for item in self.callbacks or []:
            cb = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            if not (
                isinstance(cb, Callback)
                or (isinstance(cb, type) and issubclass(cb, Callback))
            ):
                raise TypeError(
                    "callbacks must hold skorch callbacks or (name, callback) "
                    f"tuples; got {item!r}."
                )
        callbacks += copy.deepcopy(self.callbacks or [])
        return SiameseNet(
            module=module,
            criterion=criterion,
            optimizer=torch.optim.AdamW,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            optimizer__fused=fused_optimizer(module, device) or None,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=BalancedBatchIterator,
            iterator_train__samples_per_class=samples_per_class,
            iterator_train__random_state=rng.randint(np.iinfo(np.int32).max),
            iterator_train__pin_memory=device.startswith("cuda"),
            mixed_precision=getattr(self, "mixed_precision", False),
            iterator_train__augment=augment,
            iterator_train__device=batch_device,
            iterator_valid=BalancedBatchIterator,
            iterator_valid__samples_per_class=samples_per_class,
            iterator_valid__random_state=rng.randint(np.iinfo(np.int32).max),
            iterator_valid__resample=False,
            train_split=None if valid is None else predefined_split(Dataset(*valid)),
            callbacks=callbacks,
            verbose=self.verbose,
            device=device,
        )

    @staticmethod
    @contextlib.contextmanager
    def _seeded(seed, device):
        """Seed torch's global RNG for the block, then restore its state.

        The generator is shared by the whole process, so blocks in different
        threads (a search on joblib's threading backend, an in-process Dask
        cluster) take turns: otherwise one fit would reseed another's generator
        halfway through and ``random_state`` would not repeat a fit.
        """
        devices = (
            list(range(torch.cuda.device_count())) if device.startswith("cuda") else []
        )
        with _TORCH_RNG_LOCK, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # -- common public methods -------------------------------------------------

    def transform(self, X):
        """Embed samples with the trained encoder.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples; blanks (NaN) allowed. Images may also be given as
            ``(n_samples, H, W)`` or ``(n_samples, C, H, W)``.

        Returns
        -------
        X_embedded : ndarray of shape (n_samples, n_features_out)
            float32 for float32 input, else float64. ``n_features_out`` is
            ``n_members * embedding_dim`` for the ``"mlp"`` encoder (the
            members' embeddings side by side), else ``embedding_dim``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        E = self._embed(X)
        # float32 stays float32 (as in scikit-learn's transformers); else float64.
        return E if X.dtype == np.float32 else E.astype(np.float64)

    def pair_distance(self, X1, X2):
        """Dissimilarity of row ``i`` of ``X1`` and row ``i`` of ``X2``.

        A distance in embedding space (lower = more alike); with ``loss="bce"``,
        minus the logit of the learned pair head.

        Parameters
        ----------
        X1, X2 : array-like of shape (n_pairs, n_features)

        Returns
        -------
        distance : ndarray of shape (n_pairs,)
        """
        check_is_fitted(self)
        A, B = self.transform(X1), self.transform(X2)
        if len(A) != len(B):
            raise ValueError(
                f"X1 and X2 must have the same number of rows; got {len(A)} "
                f"and {len(B)}."
            )
        # In float64, as for predict: far-apart embeddings overflow float32.
        return self.net_.rowwise(A, B).astype(np.float64)

    def pair_score(self, X1, X2):
        """Probability that row ``i`` of ``X1`` and row ``i`` of ``X2`` are alike.

        A logistic function of :meth:`pair_distance`, calibrated on pairs held
        out from training.

        Parameters
        ----------
        X1, X2 : array-like of shape (n_pairs, n_features)

        Returns
        -------
        score : ndarray of shape (n_pairs,)
        """
        d = self.pair_distance(X1, X2)
        slope, intercept = self.pair_calibration_
        return expit(intercept + slope * d)

    @property
    def history_(self):
        """Per-epoch training log of the skorch net (``net_.history``)."""
        check_is_fitted(self, "net_")
        return self.net_.history

    def save(self, path):
        """Save the fitted estimator to one file, without pickle.

        The file is a zip archive of JSON (parameters, fitted attributes,
        training history), a numpy ``.npz`` archive and the network weights as
        a torch ``state_dict``. Read it back with :func:`sksiamese.load`, which
        cannot run code from the file, unlike :mod:`pickle` and :mod:`joblib`
        (both of which also work on these estimators, for files you trust).

        The ``callbacks`` parameter is not saved (it acts only during ``fit``).
        A user-supplied ``encoder`` module is saved as weights only: pass the
        same module to :func:`sksiamese.load` to read the file back.

        Parameters
        ----------
        path : str or path-like
            File to write, for example ``"model.zip"``; replaced if it exists.
        """
        from ._persistence import save

        save(self, path)

    def _seed_pair(self):
        rng = check_random_state(self.random_state)
        return rng, int(rng.randint(np.iinfo(np.int32).max))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.three_d_array = self.encoder == "cnn"
        return tags


def warn_if_not_converged(estimator, net):
    """ConvergenceWarning when early stopping ran all ``max_epochs`` epochs
    while the held-out loss was still improving, as scikit-learn's MLP warns.

    It is still improving when it fell by more than ``tol`` (relative) within
    the last ``n_iter_no_change`` epochs. Without early stopping the number
    of epochs is a fixed budget and nothing is checked: the training loss of
    freshly drawn balanced batches is too noisy to tell convergence.
    """
    history = net.history
    if len(history) < estimator.max_epochs or "valid_loss" not in history[-1]:
        return
    losses = np.asarray(history[:, "valid_loss"], dtype=float)
    best = np.minimum.accumulate(losses)
    improved = np.flatnonzero(best[1:] < best[:-1] * (1 - estimator.tol)) + 1
    last = improved[-1] if len(improved) else 0
    if len(losses) - 1 - last < estimator.n_iter_no_change:
        warnings.warn(
            f"{type(estimator).__name__} stopped after max_epochs="
            f"{estimator.max_epochs} epochs while the held-out loss was still "
            "improving; raise max_epochs to let training converge.",
            ConvergenceWarning,
            stacklevel=3,
        )


def fit_logistic_1d(d, same):
    """Slope and intercept of ``P(same) = sigmoid(intercept + slope * d)``."""
    from sklearn.linear_model import LogisticRegression

    d = np.asarray(d, dtype=np.float64)
    same = np.asarray(same)
    if len(np.unique(same)) < 2:
        return -1.0, 0.0
    # Fitted on standardised distances (Newton's method is then well
    # conditioned, whatever their unit) and mapped back.
    with np.errstate(all="ignore"):
        size = np.max(np.abs(d))
        unit = d / size
        centre, spread = unit.mean(), unit.std()
    if not (np.isfinite(size) and size > 0 and np.isfinite(spread) and spread > 0):
        # All distances equal: they carry no information, only the base rate.
        rate = np.mean(same == np.max(same))
        return 0.0, float(np.log(rate / (1.0 - rate)))
    z = ((unit - centre) / spread).reshape(-1, 1)
    # Newton-Cholesky: exact and fast for one feature and many pairs (lbfgs
    # took 20x longer here and stopped further from the optimum).
    lr = LogisticRegression(C=1e4, solver="newton-cholesky").fit(z, same)
    w, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    return float(w / (spread * size)), float(b - w * centre / spread)
