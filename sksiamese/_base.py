"""The surface the estimators share: their parameters, input validation, and
one fit skeleton over a :class:`FitPlan`.

A fit is set-up (validate, seed, split, scale, build the net:
:meth:`_BaseSiamese._fit_setup`), training (``net.partial_fit`` on the
training rows under a fixed torch seed: :meth:`_BaseSiamese._train`), and a
finish that each estimator defines (references and calibration). ``fit``,
``partial_fit``'s first call, the pair estimator and the Ray engine
(:mod:`sksiamese.distributed`, which trains elsewhere and finishes here) all
go through it; each estimator says what its data, split, loss and finish are.
"""

import contextlib
import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._compat import HasMethods, Interval, StrOptions, validate_data
from ._networks import DISTANCES
from ._persistence import save as save_model
from ._preprocessing import BlankAwareScaler, _infinity_error
from ._training import (
    SiameseNet,
    build_module,
    data_device,
    make_net,
    recording_gradients,
    resolve_batch_size,
    resolve_device,
    seeded,
    warn_if_not_converged,
)


@contextlib.contextmanager
def restore_on_failure(estimator, deep=()):
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


def _ndim(X):
    """The dimensions of array-like ``X``, nested lists included; 2 where numpy
    cannot tell (ragged lists: scikit-learn's validation names the problem)."""
    ndim = getattr(X, "ndim", None)
    if ndim is None:
        try:
            ndim = np.ndim(X)
        except (ValueError, TypeError):
            ndim = 2
    return ndim


def _columns_not_numbers(X):
    """The columns of pandas DataFrame ``X`` that cannot be read as numbers,
    each as "'name' (dtype)"; empty for anything else.

    Text, categories of text and dates, which scikit-learn's validation
    refuses with a message that names a value or a dtype, not the column.
    """
    if not (hasattr(X, "dtypes") and callable(getattr(X, "items", None))):
        return []
    found = []
    for name, column in X.items():
        kind = getattr(column.dtype, "kind", "O")
        if kind in "biufc":
            continue
        if kind not in "mM":
            try:
                column.to_numpy(dtype=np.float64, na_value=np.nan)
                continue
            except (ValueError, TypeError):
                pass
        found.append(f"{name!r} ({column.dtype})")
    return found


def _image_shape(shape):
    """``(channels, height, width)`` of the images of an array of ``shape``
    ``(n, H, W)`` (one channel) or ``(n, C, H, W)``."""
    return (1, *shape[1:]) if len(shape) == 3 else tuple(shape[1:])


def _refuse_channels_last(shape):
    """Refuse images of ``shape`` (channels, height, width), taken from an
    array, that look like images with their channels last: the CNN would read
    (n, 28, 28, 3) colour images as 28 channels of 28 x 3 pixels, and train
    on them without complaint."""
    channels, height, width = shape
    if width in (1, 3, 4) and channels not in (1, 3, 4):
        raise ValueError(
            f"X holds images of shape {shape}, which encoder='cnn' reads as "
            f"(channels, height, width): {channels} channels of {height} x "
            f"{width} pixels. For images with their channels last, pass "
            f"np.moveaxis(X, -1, -3); for {channels} channels, set "
            f"image_shape={shape}."
        )


def _flat_rows(X):
    """Array ``X`` of images or pairs as 2-D rows: every axis after the first
    flattened, with the width given, not inferred (-1): numpy cannot infer
    it from no rows, which then reach scikit-learn's check of an empty X."""
    return np.reshape(X, (X.shape[0], math.prod(X.shape[1:])))


def _rows(A):
    """Single vectors as rows: pairs ``(n, 2, d)`` become ``(2 n, d)``."""
    return A.reshape(-1, A.shape[-1])


def scale(scaler, X):
    """``X`` (rows, or pairs ``(n, 2, d)``) scaled by ``scaler``, in its shape."""
    return scaler.transform(_rows(X)).reshape(*X.shape[:-1], -1)


@dataclass
class FitPlan:
    """Everything one fit trains on and with.

    Built by :meth:`_BaseSiamese._fit_setup`; trained by
    ``net.partial_fit(Z[train], targets[train])`` under ``seeded(seed,
    device)`` (:meth:`_BaseSiamese._train`), or elsewhere, by engines that
    load the trained weights into ``net.module_`` (Ray); finished by the
    estimator's ``_fit_finish``.
    """

    #: Scaled inputs: rows, or pairs of shape ``(n_pairs, 2, n_outputs)``.
    Z: np.ndarray
    #: What the net learns, one entry per row of ``Z``: class codes, or for
    #: pairs the same/different code and the group of each side.
    targets: np.ndarray
    #: The class code of each row of ``Z`` (pairs: 1 for same).
    codes: np.ndarray
    #: The labels the codes stand for.
    classes: np.ndarray
    #: Training and held-out row indices (held None: nothing held out).
    train: np.ndarray
    held: np.ndarray | None
    #: The input scaling, fitted on the training rows.
    scaler: BlankAwareScaler
    #: The initialised, untrained skorch net.
    net: SiameseNet
    #: The random streams of this fit: numpy's for everything after set-up,
    #: torch's seed for training, and the torch device.
    rng: np.random.RandomState
    seed: int
    device: str
    #: Samples of each class the fit stands for, when ``codes`` hold only
    #: some of them (``partial_fit``'s reservoir); None: counted in codes.
    class_counts: np.ndarray | None = None


class _BaseSiamese(BaseEstimator):
    """Parameters, input handling and the fit skeleton of the estimators.

    A subclass defines ``_check_fit_data`` (validated data, class codes and
    classes), ``_split`` (training and held-out rows, and the training
    targets), ``_criterion`` (the loss) and ``_fit_finish`` (everything
    after training).
    """

    _parameter_constraints = {
        "encoder": [
            StrOptions({"mlp", "cnn"}),
            nn.Module,
            HasMethods(["forward"]),
        ],
        "hidden_layer_sizes": [
            "array-like",
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "embedding_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_members": [Interval(numbers.Integral, 1, None, closed="left")],
        "image_shape": ["array-like", None],
        "encoder_params": [dict, None],
        "distance": [StrOptions(set(DISTANCES))],
        "margin": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [
            Interval(numbers.Integral, 4, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "callbacks": [list, None],
        "scaling": [StrOptions({"auto", "robust", "standard", "global"}), None],
        "device": [str],
        "compile": ["boolean", dict],
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
        Infinite values are refused (by the scaling, for a fitted estimator:
        see :meth:`_validate_rows`).
        """
        shape = None
        if self._image_input() and _ndim(X) in (3, 4):
            X = np.asarray(X)
            shape = _image_shape(X.shape)
            if not reset:
                self._check_image_shape(shape)
            X = _flat_rows(X)
        out = self._validate_rows(X, y, reset)
        if reset:
            X = out[0] if isinstance(out, tuple) else out
            self.image_shape_ = self._resolve_image_shape(shape, X.shape[1])
        return out

    def _check_image_shape(self, shape):
        """Refuse images of ``shape`` (channels, height, width) other than
        those of ``fit``."""
        if getattr(self, "image_shape_", None) not in (None, shape):
            raise ValueError(
                f"X has images of shape {shape}, but {type(self).__name__} was "
                f"fitted on images of shape {self.image_shape_}."
            )

    def _validate_rows(self, X, y, reset):
        """scikit-learn's ``validate_data`` of flat rows: float, blanks (NaN)
        allowed, two rows at least to fit.

        Only ``fit`` (``reset``) looks for infinite values here, a pass over
        all of ``X`` on the host: a fitted estimator scales every row it
        validates (:meth:`_embed`, :meth:`_scaled`), block by block, with
        :class:`~sksiamese._preprocessing.BlockTransform`, which raises the
        same error for them on the device that scales them. On a GPU, that
        pass took as long as the encoder's forward pass over the rows.
        """
        try:
            return validate_data(
                self,
                X,
                y,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan" if reset else False,
                ensure_min_samples=2 if reset else 1,
            )
        except (ValueError, TypeError) as exc:
            columns = _columns_not_numbers(X)
            if not columns:
                raise
            kind = ValueError if isinstance(exc, ValueError) else TypeError
            raise kind(
                f"{type(self).__name__} takes numbers (NaN for blanks), but "
                f"these columns of X are not numbers: {', '.join(columns)}. "
                "Encode them first, for example one-hot with OneHotEncoder in a "
                "ColumnTransformer (see 'Text and categorical columns' in the "
                "user guide), or drop them."
            ) from exc

    def _resolve_image_shape(self, shape, n_features):
        """``image_shape_``: the ``(channels, height, width)`` of the images,
        or None.

        ``shape`` is that of the images of ``X`` when it is image-shaped, else
        None (flat rows of ``n_features``); ``image_shape``, when set, must
        agree with it.
        """
        if self.image_shape is not None:
            # Whole numbers only: int() would cut (1, 3.7) to a shape that fits.
            given = tuple(
                int(s) if isinstance(s, numbers.Real) and float(s).is_integer() else 0
                for s in self.image_shape
            )
            if len(given) == 2:
                given = (1, *given)
            if shape is not None and given != shape:
                raise ValueError(
                    f"image_shape={self.image_shape!r} does not match the images "
                    f"of X, of shape (channels, height, width) {shape}; leave "
                    "image_shape=None for X of images, or give their (height, "
                    "width) or (channels, height, width)."
                )
            if len(given) != 3 or min(given) < 1 or np.prod(given) != n_features:
                raise ValueError(
                    f"image_shape={self.image_shape!r} does not match X with "
                    f"{n_features} features per row; give (height, width) or "
                    "(channels, height, width), positive integers, whose "
                    "product is n_features."
                )
            shape = given
        elif shape is not None and self.encoder == "cnn":
            _refuse_channels_last(shape)
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

    def _scaled(self, X):
        """Validated, scaled float32 rows for a fitted estimator."""
        X = self._validate_X(X, reset=False)
        return self._scaler.transform(X)

    def _embed(self, X, then=None, name=None):
        """Embeddings of validated, unscaled rows ``X`` of a fitted estimator
        (scaled block by block while embedding), or ``then`` of them (see
        :meth:`~sksiamese._training.SiameseNet.embed`, as ``name``)."""
        prepare = self._scaler.tensor_transform(self.net_.device)
        try:
            return self.net_.embed(X, prepare=prepare, then=then, name=name)
        except ValueError:
            # The error of an earlier block (a value too large after scaling,
            # NaN embeddings) must not hide an infinite value in a later one,
            # which scikit-learn's validation would refuse first: one pass
            # over X on the host, on the way to an error only.
            if np.isinf(X).any():
                raise _infinity_error(X.dtype) from None
            raise

    # -- the fit skeleton ------------------------------------------------------

    def _fit(self, X, y):
        """Set up, train and finish; the estimator is left as it was if any
        step fails."""
        with restore_on_failure(self), recording_gradients():
            plan = self._fit_setup(X, y)
            self._train(plan)
            return self._fit_finish(plan)

    def _fit_setup(self, X, y, classes=None):
        """Validate the data and build everything training needs: a
        :class:`FitPlan`.

        With ``classes`` (``partial_fit``'s first call) nothing is held out
        and every row trains; otherwise a fit starts over, after
        ``partial_fit`` too.
        """
        streaming = classes is not None
        if not streaming:
            self.__dict__.pop("_stream", None)
        X, codes, classes = self._check_fit_data(X, y, classes)
        device = resolve_device(self.device)
        rng, seed = self._random_streams()
        if streaming:
            train, held, targets = np.arange(len(codes)), None, codes
        else:
            train, held, targets = self._split(X, codes, rng)
        scaler = self._make_scaler().fit(_rows(X[train]))
        Z = scale(scaler, X)
        self.batch_size_ = resolve_batch_size(
            self.batch_size, len(train), self._loss_over_all_pairs()
        )
        with seeded(seed, device):
            module = build_module(
                self,
                scaler.n_outputs,
                head=self.loss == "bce",
                probe=_rows(Z[train[:2]])[:2],
                device=device,
            )
            net = make_net(
                self,
                module,
                self._criterion(classes),
                None if held is None else (Z[held], targets[held]),
                rng,
                device,
                augment=self._augment_shape(scaler),
                # partial_fit's chunks differ in size: they stay on the host.
                batch_device=None
                if streaming
                else data_device(len(train) * Z[0].nbytes, device),
            )
            net.initialize()
        return FitPlan(
            Z=Z,
            targets=targets,
            codes=codes,
            classes=classes,
            train=train,
            held=held,
            scaler=scaler,
            net=net,
            rng=rng,
            seed=seed,
            device=device,
        )

    def _train(self, plan):
        """Train ``plan.net`` on the training rows, seeded."""
        with seeded(plan.seed, plan.device):
            plan.net.partial_fit(plan.Z[plan.train], plan.targets[plan.train])
        warn_if_not_converged(self, plan.net)

    def _loss_over_all_pairs(self):
        """Whether the training loss compares every pair of a batch, so that
        its cost per step grows with the square of the batch: then
        ``batch_size="auto"`` keeps 128 (see
        :func:`~sksiamese._training.resolve_batch_size`)."""
        return False

    def _random_streams(self):
        """numpy's random stream of a fit, and the seed of torch's."""
        rng = check_random_state(self.random_state)
        return rng, int(rng.randint(np.iinfo(np.int32).max))

    def _augment_shape(self, scaler):
        """The image shape for ``augment=True`` (training batches distorted),
        or None."""
        if not getattr(self, "augment", False):
            return None
        if self.image_shape_ is None:
            raise ValueError(
                "augment=True distorts images, but X holds feature vectors: set "
                "image_shape to the (height, width) or (channels, height, width) "
                "of its rows, or pass X as (n, H, W) or (n, C, H, W) images "
                "with encoder='cnn' or a torch module."
            )
        if scaler.n_outputs != int(np.prod(self.image_shape_)):
            raise ValueError("augment=True does not accept blanks (NaN) in images.")
        return self.image_shape_

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
        # In float64, as for predict: far-apart embeddings overflow float32
        # (and a float32 X1 beside a float64 X2 must not meet a pair head
        # in two dtypes).
        A, B = A.astype(np.float64, copy=False), B.astype(np.float64, copy=False)
        return self.net_.rowwise(A, B).astype(np.float64)

    def pair_score(self, X1, X2):
        """Probability that row ``i`` of ``X1`` and row ``i`` of ``X2`` are alike,
        where same and different pairs are equally common.

        A logistic function of :meth:`pair_distance`, fitted on as many same
        as different pairs: the calibration samples of ``predict_proba``
        (out of bag: each sample with a training sample, compared by the
        ensemble member that left the first out; or samples against the
        other half of a two-fold split of the training data; with
        ``early_stopping``, the held-out samples against the training ones).
        Where a share ``s`` of the pairs are same, the odds are ``s / (1 -
        s)`` times as large: ``1 / (1 + (1 - s) / s * (1 - p) / p)`` for a
        score ``p``. For :class:`SiamesePairClassifier`, the map is fitted
        on the labelled pairs held out by ``validation_fraction`` (on the
        training pairs when none are), at their own share of same pairs, as
        :meth:`predict_proba` is.

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
        save_model(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.three_d_array = self.encoder == "cnn"
        return tags
