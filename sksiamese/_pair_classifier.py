"""SiamesePairClassifier: a twin network that learns from labelled pairs."""

import numbers

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.utils import assert_all_finite, check_array
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import _BaseSiamese, _flat_rows, _image_shape
from ._calibration import check_strategy, pair_logistic, select_distance_threshold
from ._compat import Interval, StrOptions, _fit_context
from ._losses import RowPairLoss
from ._persistence import register


def _side_of_pair(row):
    """What the row ``row`` of pairs embedded side after side is, for an error."""
    return f"side {row % 2} of pair {row // 2}"


@register
class SiamesePairClassifier(ClassifierMixin, TransformerMixin, _BaseSiamese):
    """Siamese (twin) network that learns from labelled pairs.

    Each row of ``X`` is a pair of vectors (for example two pre-computed text
    embeddings) and ``y`` says whether the two are the same (1) or different
    (0). One shared encoder embeds both sides; the pair is scored by the
    distance between the two embeddings (``loss="contrastive"``) or by a learned
    sigmoid head on their absolute difference (``loss="bce"``). Training
    batches hold as many same as different pairs, drawn afresh every epoch,
    whatever the proportion of same pairs in ``y``.

    The pairs say more than their labels one by one: a vector that occurs in
    several pairs is one item, and the same pairs join items into groups
    whose members are all the same kind. Besides the loss of each pair, the
    items of a batch are trained to lie closer to their group than to the
    other items of the batch (``group_weight``). Held-out pairs, for early
    stopping and calibration, are chosen by item, so that a network that
    memorises the training items cannot look better for it.

    A pair is predicted "same" when its dissimilarity is below ``threshold_``.
    After ``fit`` the threshold is where the calibrated probability of "same"
    is 0.5 (the fewest expected errors for pairs mixed as in the training
    data); :meth:`calibrate_threshold` chooses it for another goal.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    encoder : {"mlp", "cnn"}, torch.nn.Module instance or class, default="mlp"
        The shared network applied to each side of a pair. ``"mlp"`` for
        feature vectors; ``"cnn"`` for images (pairs given as
        ``(n_pairs, 2, H, W)`` / ``(n_pairs, 2, C, H, W)``, or as flat rows
        with ``image_shape``). A module instance is copied at ``fit``; a module
        class is instantiated with ``encoder_params``. A user's module receives
        float32 rows of ``n_features`` (plus one "was blank" column per feature
        that had blanks during ``fit``) and must return
        ``(batch, embedding_dim)``.

    hidden_layer_sizes : tuple of int or int, default=(128, 64)
        Widths of the hidden layers of the ``"mlp"`` encoder; an int is one
        hidden layer of that width, as in scikit-learn's ``MLPClassifier``.

    embedding_dim : int, default=32
        Width of the embedding (``"mlp"`` and ``"cnn"`` encoders); with
        ``n_members > 1``, of each member's embedding, and :meth:`transform`
        returns the members' embeddings side by side.

    dropout : float, default=0.0
        Dropout after each hidden layer of the ``"mlp"`` encoder.

    n_members : int, default=8
        Members of the ``"mlp"`` encoder's ensemble, trained at once with
        shared weights, each on its own loss (see
        :class:`SiameseClassifier`); a pair's dissimilarity is the members'
        average. 1: a single network. Ignored by the ``"cnn"`` encoder and by
        user modules.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` of the images on
        each side of a pair given as flat rows. Pairs of images (``(n_pairs,
        2, H, W)`` / ``(n_pairs, 2, C, H, W)``, channels first) give their
        shape themselves; an ``image_shape`` set as well must be that shape.
        With ``"cnn"``, images that look like channels last (``(n_pairs, 2,
        H, W, 3)``) are refused unless ``image_shape`` confirms their shape.

    encoder_params : dict, default=None
        Keyword arguments for ``encoder`` when it is a module class; for
        ``"cnn"``, ``channels`` (filters per convolution, default 64) and
        ``n_blocks`` (at most this many conv blocks, default 4). Not used by
        ``"mlp"``, which ``hidden_layer_sizes`` and ``dropout`` set.

    loss : {"contrastive", "bce"}, default="contrastive"
        ``"contrastive"`` (Hadsell et al.): same pairs are pulled together and
        different pairs pushed at least ``margin`` apart in the ``distance``;
        the dissimilarity of a pair is that distance. ``"bce"`` (Koch et al.):
        binary cross-entropy of a learned logistic head on ``|a - b|``; the
        dissimilarity of a pair is minus the head's logit, and ``distance`` and
        ``margin`` are not used.

    distance : {"euclidean", "manhattan", "cosine"}, default="euclidean"
        Distance between embeddings, for ``loss="contrastive"``.

    margin : float, default=1.0
        Margin of the contrastive loss.

    group_weight : float, default=1.0
        Weight of the group term of the loss. The items (vectors) of the pairs
        in a batch, both sides, are grouped by the same pairs of the training
        data (connected components of the graph of same pairs); each item
        with a group mate in the batch is trained, as in neighbourhood
        components analysis, to pick a mate rather than an item of another
        group, which is almost always of another kind. 0: the pairs alone,
        for data where items of different groups are often the same kind
        (pairs drawn from two or three classes, say).

    max_epochs : int, default=100
        Maximum number of passes over the training pairs.

    batch_size : int or "auto", default=128
        Pairs per training batch, half same and half different. ``"auto"``
        sizes batches by the number of training pairs and scales ``lr`` as
        :class:`SiameseClassifier` does, with ``group_weight=0`` only: the
        group term compares every vector of a batch with every other, so its
        cost grows with the square of the batch (on 40,000 pairs on a CPU,
        batches of 1,024 took 9 times as long per pair as batches of 128),
        and ``"auto"`` keeps 128. Not the default here: unmeasured on large
        sets of pairs.

    lr : float, default=1e-3
        Learning rate of the AdamW optimizer.

    weight_decay : float, default=1e-4
        Decoupled weight decay of AdamW.

    early_stopping : bool, default=True
        Stop when the loss on the held-out pairs has not improved for
        ``n_iter_no_change`` epochs, and keep the best weights.

    validation_fraction : float, default=0.1
        Fraction of the training pairs held out for early stopping and for
        calibrating :meth:`predict_proba` (with ``early_stopping=False`` too:
        they then calibrate only, and ``history_`` records their loss). Items
        are held out, not pairs: pairs are taken at random (stratified by
        ``y``) and their vectors set aside until the pairs that hold a
        set-aside vector make up this fraction; none of those vectors is in
        a training pair, so every held-out pair has a side that training
        never saw. With 0, or too few pairs to split, the calibration uses
        the training pairs, and is then overconfident.

    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.

    tol : float, default=1e-4
        Relative improvement of the held-out loss that counts as progress.

    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra skorch callbacks (learning-rate schedules, checkpoints, progress
        bars, ...). They are copied at ``fit``.

    scaling : {"auto", "robust", "standard", "global"} or None, default="auto"
        Input scaling fitted on the individual vectors of both sides of the
        training pairs: per feature, robust (median and interquartile range,
        then smooth clipping towards +-3, as in :class:`SiameseClassifier`)
        or standard (mean and standard deviation); one mean and scale for all
        features (``"global"``); or none. ``"auto"`` is ``"global"``: the
        coordinates of pre-encoded vectors (embeddings, PCA codes, images)
        share one unit, and their relative scales are the geometry the
        distances rely on, which per-feature scaling would flatten. For
        records whose columns have different units, use ``"robust"``. Blanks
        (NaN) are then set to 0 and flagged in an extra column.

    device : str, default="auto"
        Torch device. ``"auto"`` uses CUDA when available, else the CPU.

    compile : bool or dict, default=False
        Train with the encoder and the loss compiled by ``torch.compile`` (a
        dict: its keyword arguments), as in :class:`SiameseClassifier`:
        faster steps after seconds of compiling at the first one, so for
        long fits only (see :ref:`scaling`). Prediction runs the plain
        encoder; pickles and saved files hold no compiled code.

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the batches and the held-out split.
        An int makes CPU runs repeatable.

    verbose : int, default=0
        0: silent. 1: a per-epoch log (skorch's ``PrintLog``) on stdout. 2 or
        more: also a progress bar over the batches of each epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[0, 1]``: different, same.

    n_features_in_ : int
        Number of columns of ``X`` in the side-by-side layout seen during
        ``fit``: ``2 * n_features`` (pairs given as ``(n_pairs, 2, n_features)``
        count as that flat layout).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the columns of ``X`` seen during ``fit``, when ``X`` has
        string column names.

    image_shape_ : tuple of int or None
        ``(channels, height, width)`` of the images on each side, else None.

    batch_size_ : int
        Pairs per training batch: ``batch_size``, or what ``"auto"`` chose.

    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the twin module.

    history_ : skorch.History
        Per-epoch log of training (``net_.history``): losses, durations.

    n_epochs_ : int
        Number of epochs trained.

    pair_calibration_ : tuple of float
        ``(slope, intercept)`` of ``P(same) = sigmoid(intercept + slope * d)``
        for a pair of dissimilarity ``d``, fitted on the held-out pairs (see
        ``validation_fraction``; on the training pairs when none are held
        out), with ``early_stopping=False`` too.

    threshold_ : float
        Dissimilarity below which :meth:`predict` says "same": where the
        calibrated probability is 0.5 after ``fit``, else as set by
        :meth:`calibrate_threshold`.

    See Also
    --------
    SiameseClassifier : Learns from labelled samples instead of pairs.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by
       Learning an Invariant Mapping", CVPR 2006.
    .. [2] G. Koch, R. Zemel and R. Salakhutdinov, "Siamese Neural Networks for
       One-shot Image Recognition", ICML Deep Learning Workshop 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sksiamese import SiamesePairClassifier
    >>> images, digit = load_digits(return_X_y=True)
    >>> a, b = np.random.RandomState(0).randint(len(images), size=(2, 600))
    >>> X = np.stack([images[a], images[b]], axis=1)  # (600 pairs, 2, 64)
    >>> y = digit[a] == digit[b]  # True: the same digit
    >>> clf = SiamesePairClassifier(max_epochs=10, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:4]).shape
    (4, 2)
    >>> clf.transform(images[:3]).shape  # 8 members' embeddings of width 32
    (3, 256)
    """

    _parameter_constraints = {
        **_BaseSiamese._parameter_constraints,
        "loss": [StrOptions({"contrastive", "bce"})],
        "group_weight": [Interval(numbers.Real, 0, None, closed="left")],
    }

    # Pre-encoded vectors share one unit: their relative scales are their
    # geometry, which per-feature scaling would flatten (see ``scaling``).
    _auto_scaling = "global"

    def __init__(
        self,
        encoder="mlp",
        *,
        hidden_layer_sizes=(128, 64),
        embedding_dim=32,
        dropout=0.0,
        n_members=8,
        image_shape=None,
        encoder_params=None,
        loss="contrastive",
        distance="euclidean",
        margin=1.0,
        group_weight=1.0,
        max_epochs=100,
        batch_size=128,
        lr=1e-3,
        weight_decay=1e-4,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        callbacks=None,
        scaling="auto",
        device="auto",
        compile=False,
        random_state=None,
        verbose=0,
    ):
        self.encoder = encoder
        self.hidden_layer_sizes = hidden_layer_sizes
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.n_members = n_members
        self.image_shape = image_shape
        self.encoder_params = encoder_params
        self.loss = loss
        self.distance = distance
        self.margin = margin
        self.group_weight = group_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.callbacks = callbacks
        self.scaling = scaling
        self.device = device
        self.compile = compile
        self.random_state = random_state
        self.verbose = verbose

    # -- input -----------------------------------------------------------------

    def _check_target(self, y, method):
        """``y`` as a 1-D array of two classes (their values are checked by
        :meth:`_as_same`, once ``X`` is known to be valid)."""
        y = column_or_1d(y, warn=True)
        if len(y) == 0:
            raise ValueError(
                f"{type(self).__name__}.{method} needs at least one pair; got y "
                f"with 0 samples (shape={y.shape})."
            )
        # scikit-learn's messages for blanks and infinities (as check_X_y
        # gives SiameseClassifier: type_of_target would first cast them to
        # integers, with a RuntimeWarning), for continuous or otherwise
        # unusable targets.
        assert_all_finite(y, input_name="y", estimator_name=type(self).__name__)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type not in ("binary", "unknown"):
            raise ValueError(
                "Only binary classification is supported: y must be 1 (or True) "
                "for pairs of the same kind and 0 (or False) for different pairs; "
                f"got a {y_type} target with labels {_labels(y)}."
            )
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"{type(self).__name__}.{method} needs both same (1) and different "
                f"(0) pairs in y; got only one class: {_labels(y)}."
            )
        return y

    @staticmethod
    def _as_same(y):
        """``y`` as a boolean array, True for same pairs."""
        if not np.isin(np.unique(y), [0, 1]).all():
            raise ValueError(
                "y must be 1 (or True) for pairs of the same kind and 0 (or "
                f"False) for different pairs; got labels {_labels(y)}."
            )
        return y.astype(bool)

    def _validate_pairs(self, X, y=None, reset=True):
        """Validate pairs given as ``(n_pairs, 2, ...)`` or side by side.

        Returns a float array of shape ``(n_pairs, 2, n_features)`` (NaN
        allowed), and the validated ``y`` too when one is given.
        """
        side_shape = None
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if X.ndim >= 3:
            if X.shape[1] != 2:
                raise ValueError(
                    f"X of shape {X.shape} is not a set of pairs: its second axis "
                    "must have length 2, the two sides of each pair, as in "
                    "(n_pairs, 2, n_features)."
                )
            side_shape = X.shape[2:]
            if len(side_shape) > 1:
                if not self._image_input() or len(side_shape) > 3:
                    raise ValueError(
                        f"X of shape {X.shape} holds pairs of images: use "
                        "encoder='cnn' (or a torch module) for images of shape "
                        "(H, W) or (C, H, W), or flatten each side to a vector."
                    )
                side_shape = (1, *side_shape) if len(side_shape) == 2 else side_shape
                if not reset and self.image_shape_ not in (None, side_shape):
                    raise ValueError(
                        f"X has pairs of images of shape {side_shape}, but "
                        f"{type(self).__name__} was fitted on images of shape "
                        f"{self.image_shape_}."
                    )
            else:
                side_shape = None
            X = _flat_rows(X)
        if y is None:
            X = self._validate_rows(X, "no_validation", reset)
        else:
            X, y = self._validate_rows(X, y, reset)
        if X.shape[1] % 2:
            raise ValueError(
                f"X has {X.shape[1]} feature(s) per row, an odd number: a row "
                "must hold the two vectors of a pair side by side, the first "
                "n_features columns for one side and the last n_features for "
                "the other. Or pass X of shape (n_pairs, 2, n_features)."
            )
        n_features = X.shape[1] // 2
        if reset:
            self.image_shape_ = self._resolve_image_shape(side_shape, n_features)
        X = X.reshape(len(X), 2, n_features)
        return X if y is None else (X, y)

    def _embed_pairs(self, X, scaled=False):
        """Embeddings ``(n_pairs, 2, d)`` of validated pairs ``X``: unscaled
        ones are scaled block by block where they are embedded, as single
        vectors are in :meth:`transform`."""
        embed = self.net_.embed if scaled else self._embed
        E = embed(X.reshape(2 * len(X), -1), name=_side_of_pair)
        return E.reshape(len(X), 2, -1)

    def _holdout_split(self, same, items, rng):
        """(train, held-out) pair indices, or (all, None) when too few pairs.

        Vectors are held out, not pairs: pairs are taken in a random order
        (stratified by ``same``) and their vectors set aside until the pairs
        that hold a set-aside vector make up ``validation_fraction`` of all
        pairs. Those pairs are held out; every other pair trains. So every
        held-out pair has a side that no training pair holds, and a network
        that memorises the training vectors does not look better on them for
        it. When no vector is in two pairs this is a stratified split of the
        pairs.
        """
        n = len(same)
        everything = np.arange(n)
        n_held = int(np.ceil(self.validation_fraction * n))
        counts = np.bincount(same, minlength=2)
        if self.validation_fraction == 0 or counts.min() < 3 or n - n_held < 4:
            return everything, None
        # Stratified random order: each class's pairs spread evenly through it.
        rank = np.empty(n)
        for c in (0, 1):
            idx = np.flatnonzero(same == c)
            rank[idx] = (rng.permutation(len(idx)) + rng.random_sample()) / len(idx)
        order = np.argsort(rank, kind="stable")
        n_items = items.max() + 1

        def touching(m):
            """Pairs that share a vector with the first ``m`` pairs of ``order``."""
            aside = np.zeros(n_items, dtype=bool)
            aside[items[order[:m]].ravel()] = True
            return aside[items].any(axis=1)

        # The smallest prefix whose vectors reach n_held pairs (monotone in m).
        lo, hi = 1, n_held
        while lo < hi:
            mid = (lo + hi) // 2
            if touching(mid).sum() >= n_held:
                hi = mid
            else:
                lo = mid + 1
        held = touching(lo)
        train = ~held
        if (
            np.bincount(same[held], minlength=2).min() < 1
            or np.bincount(same[train], minlength=2).min() < 2
        ):
            return everything, None
        return np.flatnonzero(train), np.flatnonzero(held)

    # -- fit -------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the twin network on labelled pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2 * n_features)
            Training pairs: the two sides along the second axis, or side by
            side in one row (the first ``n_features`` columns for one side).
            Blanks (NaN) allowed.
        y : array-like of shape (n_pairs,)
            1 (or True) where the two sides are the same kind, 0 (or False)
            where they differ. Both must occur.

        Returns
        -------
        self : SiamesePairClassifier
            The fitted estimator.
        """
        return self._fit(X, y)

    def _check_fit_data(self, X, y, classes):
        # The kind of target first (one class, several, continuous), then X,
        # then the values of y, whose meaning is tied to the pairs. With no
        # pairs in y, X first: scikit-learn's message for an empty X (or for
        # X and y of different lengths), as SiameseClassifier gives.
        if np.asarray(y).shape[:1] == (0,):  # np.shape would skip __array__
            self._validate_pairs(X, y, reset=True)
        y = self._check_target(y, "fit")
        X, y = self._validate_pairs(X, y, reset=True)
        return X, self._as_same(y).astype(np.int64), np.array([0, 1])

    def _split(self, X, codes, rng):
        items = pair_items(X)
        train, held = self._holdout_split(codes, items, rng)
        # Class code first, then the group of each side (see RowPairLoss),
        # from the same pairs of the training and the held-out pairs apart.
        same = codes.astype(bool)
        groups = pair_groups(items, same, train)
        if held is not None:
            groups[held] = pair_groups(items, same, held)[held]
        return train, held, np.column_stack([same, groups]).astype(np.int64)

    def _criterion(self, classes):
        return RowPairLoss(self.loss, self.margin, self.group_weight)

    def _loss_over_all_pairs(self):
        # The pairs' own terms cost a row each; the group term compares every
        # vector of the batch with every other.
        return self.group_weight != 0

    def _fit_finish(self, plan):
        """Calibrate the probability of "same" and the threshold."""
        self.net_ = plan.net
        self._scaler = plan.scaler
        self.classes_ = plan.classes
        self.n_epochs_ = len(plan.net.history)
        calibration = plan.train if plan.held is None else plan.held
        d = self._dissimilarity(self._embed_pairs(plan.Z[calibration], scaled=True))
        slope, intercept = pair_logistic(d, plan.codes[calibration].astype(bool))
        self.pair_calibration_ = (slope, intercept)
        self.threshold_ = -intercept / slope
        return self

    # -- prediction ------------------------------------------------------------

    def _dissimilarity(self, E):
        """Dissimilarity of the pairs of embeddings ``E`` (lower = more alike)."""
        return self.net_.rowwise(E[:, 0], E[:, 1]).astype(np.float64)

    def _pair_dissimilarity(self, X):
        check_is_fitted(self)
        return self._dissimilarity(
            self._embed_pairs(self._validate_pairs(X, None, False))
        )

    def decision_function(self, X):
        """How much more alike than the threshold each pair is.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2 * n_features)
            Pairs.

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
            ``threshold_`` minus the pair's dissimilarity: higher means more
            alike, and positive exactly where :meth:`predict` says "same".
        """
        check_is_fitted(self)
        return self.threshold_ - self._pair_dissimilarity(X)

    def predict_proba(self, X):
        """Calibrated probabilities of "different" and "same".

        A logistic function of the pair's dissimilarity, fitted on the pairs
        held out from training (see ``validation_fraction``), its slope held
        back by a weak prior so that a few held-out pairs that happen to be
        separated do not give probabilities of 0 and 1. It reflects the
        proportion of same pairs in the training data.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2 * n_features)
            Pairs.

        Returns
        -------
        proba : ndarray of shape (n_pairs, 2)
            Columns in the order of ``classes_``: different, same.
        """
        check_is_fitted(self)
        slope, intercept = self.pair_calibration_
        p_same = expit(intercept + slope * self._pair_dissimilarity(X))
        return np.column_stack([1.0 - p_same, p_same])

    def predict(self, X):
        """1 where a pair is predicted the same, 0 where different.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2 * n_features)
            Pairs.

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,)
            1 where the pair's dissimilarity is below ``threshold_``, else 0.
        """
        check_is_fitted(self)
        return (self.decision_function(X) > 0).astype(self.classes_.dtype)

    def transform(self, X):
        """Embed single vectors, or both sides of pairs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or pairs
            Single vectors, ``n_features = n_features_in_ // 2`` (blanks (NaN)
            allowed; images also as ``(n_samples, H, W)`` or
            ``(n_samples, C, H, W)``). Or pairs, as in :meth:`predict`.

        Returns
        -------
        X_embedded : ndarray
            ``(n_samples, n_features_out)`` for single vectors; for pairs,
            ``(n_pairs, 2, n_features_out)``, or ``(n_pairs, 2 *
            n_features_out)`` (side by side) when they were given side by
            side. ``n_features_out`` is ``n_members * embedding_dim`` for the
            ``"mlp"`` encoder (the members' embeddings side by side), else
            ``embedding_dim``.
        """
        check_is_fitted(self)
        n_features = self.n_features_in_ // 2
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        shape = X.shape
        if self._single_vectors(shape):
            # Infinite values: raised by the scaling in _embed (see
            # _validate_rows).
            X = check_array(
                _flat_rows(X) if len(shape) > 2 else X,
                dtype=[np.float64, np.float32],
                ensure_all_finite=False,
            )
            return self._embed(X).astype(np.float64)
        if self.image_shape_ is not None and len(shape) in (3, 4) and shape[1] != 2:
            # Not pairs (no second axis of two sides): single images, of
            # another shape than those of fit.
            self._check_image_shape(_image_shape(shape))
        if len(shape) == 2 and shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input (pairs side "
                f"by side), or {n_features} (single vectors)."
            )
        E = self._embed_pairs(self._validate_pairs(X, None, False))
        E = E.astype(np.float64)
        return E.reshape(len(E), -1) if len(shape) == 2 else E

    def _single_vectors(self, shape):
        """Whether ``X`` of this shape holds single vectors, not pairs."""
        images = self.image_shape_
        return (len(shape) == 2 and shape[1] == self.n_features_in_ // 2) or (
            images is not None
            and (shape[1:] == images or (images[0] == 1 and shape[1:] == images[1:]))
        )

    def pair_distance(self, X1, X2):
        """Dissimilarity of the single vector ``X1[i]`` and ``X2[i]`` (each
        of ``n_features_in_ // 2`` features: one side of a pair)."""
        check_is_fitted(self)
        for name, X in (("X1", X1), ("X2", X2)):
            if not self._single_vectors(np.shape(X)):
                raise ValueError(
                    f"{name} must hold single vectors of {self.n_features_in_ // 2} "
                    f"features (one side of a pair each); got shape {np.shape(X)}. "
                    "To score pairs, use decision_function or predict_proba."
                )
        return super().pair_distance(X1, X2)

    # -- threshold -------------------------------------------------------------

    def calibrate_threshold(
        self, X, y, strategy="accuracy", *, beta=1.0, min_tnr=0.9, min_tpr=0.9
    ):
        """Choose the decision threshold of :meth:`predict` from labelled pairs.

        Sets ``threshold_`` to the dissimilarity that does best on ``(X, y)``
        by ``strategy``; a pair is then predicted the same when its
        dissimilarity is below it. :meth:`decision_function` moves with the
        threshold; :meth:`predict_proba` does not change, and the network is
        not retrained. ``fit`` sets the threshold back to its default.

        Below, the true positive rate (TPR) is the fraction of same pairs
        predicted same, and the true negative rate (TNR) the fraction of
        different pairs predicted different, both on ``(X, y)``.

        Use pairs not seen in ``fit``: on training pairs the threshold is
        optimistic. To tune it by cross-validation instead, wrap the estimator
        in :class:`~sklearn.model_selection.TunedThresholdClassifierCV`.

        Parameters
        ----------
        X : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2 * n_features)
            Labelled pairs, ideally held out from training.
        y : array-like of shape (n_pairs,)
            1 (or True) for same pairs, 0 (or False) for different pairs;
            both must occur.
        strategy : {"accuracy", "balanced_accuracy", "f_beta", "max_tpr", \
"max_tnr"}, default="accuracy"
            What the threshold optimizes on ``(X, y)``:

            - ``"accuracy"``: the fraction of pairs predicted correctly. It
              depends on the proportion of same pairs in ``y``: choose pairs
              mixed as they will be in use.
            - ``"balanced_accuracy"``: the mean of TPR and TNR, whatever the
              proportion of same pairs in ``y``.
            - ``"f_beta"``: the F-beta score of "same",
              ``(1 + beta**2) * precision * TPR / (beta**2 * precision + TPR)``.
            - ``"max_tpr"``: the highest TPR subject to TNR >= ``min_tnr``
              (accept as many same pairs as possible while rejecting at least
              that fraction of different pairs); among thresholds of equal
              TPR, the one of highest TNR.
            - ``"max_tnr"``: the highest TNR subject to TPR >= ``min_tpr``;
              among thresholds of equal TNR, the one of highest TPR.

            Ties of (balanced) accuracy or F-beta go to the lowest such
            threshold (the fewest pairs predicted same).
        beta : float, default=1.0
            Weight of the TPR (recall) relative to precision for ``"f_beta"``.
        min_tnr : float, default=0.9
            Lowest acceptable TNR for ``"max_tpr"``, in [0, 1].
        min_tpr : float, default=0.9
            Lowest acceptable TPR for ``"max_tnr"``, in [0, 1].

        Returns
        -------
        self : SiamesePairClassifier
            The estimator with its new ``threshold_``.
        """
        check_is_fitted(self)
        check_strategy(strategy, beta, min_tnr, min_tpr)
        same = self._as_same(self._check_target(y, "calibrate_threshold"))
        d = self._pair_dissimilarity(X)
        if len(same) != len(d):
            raise ValueError(
                f"X and y have different numbers of pairs: {len(d)} and {len(same)}."
            )
        self.threshold_ = select_distance_threshold(
            d, same, strategy, beta=beta, min_tnr=min_tnr, min_tpr=min_tpr
        )
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.three_d_array = True
        # A model of pairs is symmetric in their two sides: it cannot fit
        # arbitrary classification data split into two halves.
        tags.classifier_tags.poor_score = True
        return tags


def pair_items(X):
    """Which vector each side of each pair is: ``(n_pairs, 2)`` indices, equal
    where the two vectors are equal bit for bit (the same item in two pairs).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[[0.0, 1.0], [2.0, 3.0]], [[2.0, 3.0], [4.0, 5.0]]])
    >>> pair_items(X).tolist()
    [[0, 1], [1, 2]]
    """
    n, _, d = X.shape
    flat = np.ascontiguousarray(X.reshape(2 * n, d))
    # One opaque value per row: rows compare as bytes (NaN included).
    rows = flat.view(np.dtype((np.void, flat.dtype.itemsize * d))).ravel()
    _, index = np.unique(rows, return_inverse=True)
    return index.reshape(n, 2)


def pair_groups(items, same, pairs=None):
    """The group of each side of each pair: the connected components of the
    graph whose nodes are the vectors and whose edges are the same pairs
    (those among ``pairs`` only, when given). Vectors of one group are all
    the same kind.

    Examples
    --------
    >>> import numpy as np
    >>> items = np.array([[0, 1], [1, 2], [3, 4]])
    >>> pair_groups(items, np.array([True, True, False])).tolist()
    [[0, 0], [0, 0], [1, 2]]
    """
    n_items = items.max() + 1
    edges = items[same] if pairs is None else items[pairs][same[pairs]]
    graph = coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_items, n_items)
    )
    _, labels = connected_components(graph, directed=False)
    return labels[items]


def _labels(y, limit=5):
    labels = np.unique(y).tolist()
    return labels if len(labels) <= limit else [*labels[:limit], "..."]
