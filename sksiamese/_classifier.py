"""SiameseClassifier: a twin network that learns from labelled samples."""

import numbers
from types import SimpleNamespace

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, logit, logsumexp, softmax
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import (
    _BaseSiamese,
    _restore_on_failure,
    data_device,
    fit_logistic_1d,
    resolve_device,
    warn_if_not_converged,
)
from ._compat import Interval, StrOptions, _fit_context
from ._losses import LOSSES, InBatchLoss
from ._threshold import check_strategy, select_threshold


class SiameseClassifier(
    ClassifierMixin, TransformerMixin, ClassNamePrefixFeaturesOutMixin, _BaseSiamese
):
    """Siamese (twin) network classifier.

    A shared encoder is trained so that samples of one class lie close together
    and samples of different classes lie apart. Training batches are
    class-balanced (``P`` classes x ``K`` samples each, drawn afresh every epoch)
    and pairs, triplets or prototypes are formed inside each batch, so memory
    grows with the number of samples, never with the number of pairs.

    The default encoder is an efficient ensemble: ``n_members`` networks that
    share most of their weights (TabM's BatchEnsemble layers), trained at once,
    each on its own loss; two samples are as dissimilar as the members find
    them on average.

    To predict, every reference sample is embedded once; a query is embedded
    once and compared with all references at the same time. The class scores are
    the mean dissimilarity to the ``n_neighbors`` closest references of each
    class, turned into probabilities at the training class frequencies by a
    temperature and a prior weight fitted on samples scored against references
    they were not among.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    encoder : {"mlp", "cnn"}, torch.nn.Module instance or class, default="mlp"
        The shared network. ``"mlp"`` for feature vectors; ``"cnn"`` for images
        (given as ``(n, H, W)`` / ``(n, C, H, W)`` arrays, or as flat rows with
        ``image_shape``). A module instance is copied at ``fit``; a module class
        is instantiated with ``encoder_params``. A user's module receives float32
        rows of ``n_features_in_`` plus one "was blank" column per feature that
        had blanks during ``fit`` (images: the image shape) and must return
        ``(batch, embedding_dim)``.

    hidden_layer_sizes : tuple of int, default=(128, 64)
        Widths of the hidden layers of the ``"mlp"`` encoder.

    embedding_dim : int, default=32
        Width of the embedding (``"mlp"`` and ``"cnn"`` encoders); with
        ``n_members > 1``, of each member's embedding, and :meth:`transform`
        returns the members' embeddings side by side.

    dropout : float, default=0.0
        Dropout after each hidden layer of the ``"mlp"`` encoder.

    n_members : int, default=8
        Members of the ``"mlp"`` encoder's ensemble (TabM, Gorishniy et al.
        2025): their hidden layers share one weight matrix, each member has
        its own scalings and biases (BatchEnsemble) and its own embedding
        layer, and its input signs are flipped at random at the start. They
        are trained at once on the same batches, each with its own loss, so
        an ensemble of ``n_members`` networks costs a fraction of as many fits.
        Two samples are compared by the root mean square of the members'
        euclidean distances (the mean for the other distances), so the
        members' scores are averaged. 1: a single network. Ignored by the
        ``"cnn"`` encoder and by user modules.

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)`` of images given as
        flat rows. With ``encoder="cnn"`` and flat rows of a square number of
        features, a square grey-scale image is assumed.

    encoder_params : dict, default=None
        Keyword arguments for ``encoder`` when it is a module class; for
        ``"cnn"``, ``channels`` (filters per convolution, default 64) and
        ``n_blocks`` (at most this many conv blocks, default 4). Not used by
        ``"mlp"``, which ``hidden_layer_sizes`` and ``dropout`` set.

    loss : {"prototype", "nca", "contrastive", "bce", "triplet"}, \
            default="prototype"
        Training objective over the samples of a batch. ``"prototype"``: softmax
        over distances to the in-batch class means (prototypical networks).
        ``"nca"``: softmax over distances to the other samples of the batch
        (neighbourhood components analysis), for classes made of several
        clusters.
        ``"contrastive"``: all in-batch pairs, same pairs pulled together and
        different pairs pushed ``margin`` apart. ``"bce"``: a learned sigmoid
        head on ``|a - b|`` (Koch et al.); ``distance`` is then not used.
        ``"triplet"``: batch semi-hard triplets. The default was chosen by
        measurement (see the User Guide, "Choosing the loss").

    distance : {"euclidean", "manhattan", "cosine"}, default="euclidean"
        Distance between embeddings.

    margin : float, default=1.0
        Margin of the contrastive and triplet losses.

    references : {"all", "prototypes"} or int, default=100
        Which embedded training samples are kept to compare queries with.
        ``"all"``: every training sample. ``"prototypes"``: the mean embedding
        of each class. An int ``k``: for each class, its samples if it has at
        most ``k``, else ``k`` k-means centres of its embeddings (a compact
        "gold standard" set that keeps prediction fast on large data).

    n_neighbors : int, default=5
        Number of closest references averaged into the score of the class with
        the fewest references. Every other class is scored on its closest
        references that hold the same share of its training samples (a k-means
        centre counts for the samples of its cluster), at most a quarter of the
        class and never fewer than ``n_neighbors`` references. Classes of equal
        size whose references are samples are all scored on their
        ``n_neighbors`` closest references; across classes of different sizes,
        the scores compare how dense each class is around the query rather
        than how many of its references are near, so a rare class is not
        outvoted merely for being rare (a balanced k-nearest-neighbour rule).

    class_weight : dict, "balanced" or None, default=None
        Batches are class-balanced, so training treats every class alike
        whatever ``class_weight``; it sets the class priors of
        :meth:`predict_proba`, and so what :meth:`predict` favours, as the
        class weights of scikit-learn's estimators do. None: probabilities at
        the class frequencies of the training data (``class_prior_``), for
        which :meth:`predict` makes the fewest errors.
        ``"balanced"``: probabilities as if every class were equally frequent
        (Bayes' rule), so that :meth:`predict` treats a missed rare case and a
        false alarm alike (balanced accuracy). A dict such as ``{0: 1, 1: 5}``:
        from the balanced probabilities, the odds of each class multiplied by
        its weight (classes left out weigh 1), and the loss around class 1
        counts five times more in training (a pair counts with the mean
        weight of its two samples). Ranking metrics (ROC AUC, average
        precision) of two classes are the same with None and ``"balanced"``.
        To trade recall against precision on held-out data,
        :meth:`calibrate_threshold` is the measured alternative.

    max_epochs : int, default=30
        Passes over the training data (the most, with ``early_stopping``).

    batch_size : int, default=128
        Samples per training batch.

    samples_per_class : int, default=None
        Samples of each class in a batch (``K``); by default
        ``batch_size // n_classes``, at least 2, and at most the size of the
        largest class (a batch larger than the data would only repeat it).

    augment : bool, default=False
        Distort each training image, every time it is drawn, by a small random
        affine transform (rotation up to 10 degrees, shear, scaling by 0.9 to
        1.1, shift up to 8% of the side), seeded by ``random_state``. Images
        only (``encoder="cnn"``, ``image_shape``, or image-shaped ``X``).

    lr : float, default=1e-3
        Learning rate of the AdamW optimizer.

    weight_decay : float, default=1e-4
        Decoupled weight decay of AdamW.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified),
        stop when the loss on it has not improved for ``n_iter_no_change``
        epochs, keep the best weights, and calibrate ``predict_proba`` on it.
        By default every sample trains for ``max_epochs`` epochs and the
        calibration uses a two-fold split of the training data: on tables
        with a rare class, holding out a tenth of its few samples cost more
        than early stopping saved (see the benchmarks page).

    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping=True``.
        With 0, or too few samples to split, nothing is held out and early
        stopping does not apply.

    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.

    tol : float, default=1e-4
        Relative improvement of the held-out loss that counts as progress.

    callbacks : list of skorch callbacks or (name, callback) tuples, default=None
        Extra skorch callbacks (learning-rate schedules, checkpoints, progress
        bars, ...). They are copied at ``fit``.

    scaling : {"auto", "robust", "standard", "global"} or None, default="auto"
        Input scaling fitted on the training data. ``"robust"``: per feature,
        minus the median, divided by the interquartile range (half the range
        when the quartiles coincide), then smoothly clipped by
        ``z / sqrt(1 + (z / 3) ** 2)``, so that skewed features and outliers
        do not crowd the bulk of the data into a narrow band. ``"standard"``:
        per-feature mean and standard deviation. ``"global"``: one mean and
        standard deviation for all features (images). None: no scaling.
        ``"auto"`` is ``"global"`` for images and ``"robust"`` otherwise.
        Blanks (NaN) are then set to 0 and flagged in an extra column.

    device : str, default="auto"
        Torch device. ``"auto"`` uses CUDA when available, else the CPU. On a
        GPU, training data that fit in a quarter of its free memory stay there
        and batches are gathered on the device; larger data are pinned in host
        memory and copied asynchronously, batch by batch.

    mixed_precision : bool, default=False
        Run the encoder in bfloat16 autocast during training (the loss stays
        in float32). Faster on GPUs with bfloat16 support; prediction always
        runs in float32.

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the batches and the held-out split.
        An int makes CPU runs repeatable.

    verbose : int, default=0
        0: silent. 1: a per-epoch log (skorch's ``PrintLog``) on stdout. 2 or
        more: also a progress bar over the batches of each epoch (skorch's
        ``ProgressBar``, drawn by tqdm on stderr), for long fits.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; after :meth:`fit_references`, those of the new references.

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column
        names.

    image_shape_ : tuple of int or None
        ``(channels, height, width)`` of image input, else None.

    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the twin module.

    history_ : skorch.History
        Per-epoch log of training (``net_.history``): losses, durations.

    n_epochs_ : int
        Number of epochs trained.

    references_ : ndarray of shape (n_references, n_features_out)
        Embedded reference samples (``n_features_out`` is ``n_members *
        embedding_dim`` for the ``"mlp"`` encoder, else ``embedding_dim``).

    reference_labels_ : ndarray of shape (n_references,)
        Label of each reference.

    temperature_ : float
        Scale that turns class dissimilarities into calibrated probabilities.

    class_prior_ : ndarray of shape (n_classes,)
        Frequency of each class in the training data (after
        :meth:`fit_references`, in its ``y``): the prior of
        :meth:`predict_proba` with ``class_weight=None``.

    threshold_ : float or None
        With two classes, the probability of ``classes_[1]`` above which
        :meth:`predict` returns ``classes_[1]``: 0.5 after ``fit``, else as set
        by :meth:`calibrate_threshold`. None with more than two classes.

    pair_calibration_ : tuple of float
        ``(slope, intercept)`` of the logistic map used by :meth:`pair_score`.

    See Also
    --------
    sklearn.neighbors.NeighborhoodComponentsAnalysis : Linear metric learning.
    sklearn.neighbors.KNeighborsClassifier : Nearest neighbours in input space.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by
       Learning an Invariant Mapping", CVPR 2006.
    .. [2] G. Koch, R. Zemel and R. Salakhutdinov, "Siamese Neural Networks for
       One-shot Image Recognition", ICML Deep Learning Workshop 2015.
    .. [3] F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: A Unified
       Embedding for Face Recognition and Clustering", CVPR 2015.
    .. [4] J. Snell, K. Swersky and R. Zemel, "Prototypical Networks for
       Few-shot Learning", NeurIPS 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sksiamese import SiameseClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SiameseClassifier(max_epochs=20, random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.transform(X[:3]).shape  # 8 members' embeddings of width 32
    (3, 256)
    """

    _parameter_constraints = {
        **_BaseSiamese._parameter_constraints,
        "loss": [StrOptions(set(LOSSES))],
        "references": [
            StrOptions({"all", "prototypes"}),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "samples_per_class": [Interval(numbers.Integral, 2, None, closed="left"), None],
        "augment": ["boolean"],
        "mixed_precision": ["boolean"],
    }

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
        loss="prototype",
        distance="euclidean",
        margin=1.0,
        references=100,
        n_neighbors=5,
        class_weight=None,
        max_epochs=30,
        batch_size=128,
        samples_per_class=None,
        augment=False,
        lr=1e-3,
        weight_decay=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        callbacks=None,
        scaling="auto",
        device="auto",
        mixed_precision=False,
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
        self.references = references
        self.n_neighbors = n_neighbors
        self.class_weight = class_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.augment = augment
        self.lr = lr
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.callbacks = callbacks
        self.scaling = scaling
        self.device = device
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    # -- fit -------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the encoder on labelled samples and keep embedded references.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples; blanks (NaN) allowed. Images may be given as
            ``(n_samples, H, W)`` or ``(n_samples, C, H, W)``.
        y : array-like of shape (n_samples,)
            Class labels, at least two samples of each class.

        Returns
        -------
        self : SiameseClassifier
            The fitted estimator.
        """
        with _restore_on_failure(self):
            return self._fit(X, y)

    def _fit(self, X, y):
        self.__dict__.pop("_stream", None)  # fit starts over, after partial_fit too
        plan = self._fit_setup(X, y)
        with self._seeded(plan.seed, plan.device):
            plan.net.partial_fit(plan.Z[plan.train], plan.codes[plan.train])
        warn_if_not_converged(self, plan.net)
        return self._fit_finish(plan)

    def _fit_setup(self, X, y):
        """Validate the data and build everything training needs.

        Returns a namespace with the scaled data ``Z``, class ``codes``, the
        ``train`` / ``held`` indices, the fitted ``scaler``, the untrained skorch
        ``net``, and the ``rng``, ``seed`` and ``device`` of this fit. Training
        is ``net.partial_fit(Z[train], codes[train])`` under ``self._seeded(seed,
        device)``; engines that train elsewhere (several processes, several
        machines) load the trained weights into ``net.module_`` instead, then
        call :meth:`_fit_finish`.
        """
        X, y = self._validate_X(X, y, reset=True)
        classes, codes = self._encode_labels(y, "fit")
        counts = np.bincount(codes)
        if counts.min() < 2:
            rare = classes[np.flatnonzero(counts < 2)].tolist()
            raise ValueError(
                "Every class needs at least 2 samples in fit to form same-class "
                f"pairs; these classes have only 1: {rare}. Remove them, or add "
                "them after training with fit_references."
            )
        device = resolve_device(self.device)
        rng, seed = self._seed_pair()
        train, held = self._holdout_split(codes, rng)

        scaler = self._make_scaler().fit(X[train])
        Z = scaler.transform(X)
        with self._seeded(seed, device):
            module = self._build_module(
                scaler.n_outputs,
                head=self.loss == "bce",
                probe=Z[train],
                device=device,
            )
            net = self._make_net(
                module,
                InBatchLoss(self.loss, self.margin, self._class_weights(classes)),
                None if held is None else (Z[held], codes[held]),
                rng,
                device,
                self.samples_per_class,
                augment=self._augment_shape(scaler),
                batch_device=data_device(Z[train].nbytes, device),
            )
            net.initialize()
        return SimpleNamespace(
            Z=Z,
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

    def _fit_finish(self, plan):
        """Embed the references and calibrate, from a trained ``plan.net``."""
        net, Z, codes, rng = plan.net, plan.Z, plan.codes, plan.rng
        train, held, classes = plan.train, plan.held, plan.classes
        E = net.embed(Z)
        if held is None:
            S, y_cal, w_cal, d_pairs, same = self._crossfit_scores(
                net, E, codes, len(classes), rng
            )
        else:
            R, r_codes, r_weights = self._select_references(E[train], codes[train], rng)
            keep, w_cal = _cap_per_class(codes[held], _CALIBRATION_PER_CLASS, rng)
            held = held[keep]
            S = net.class_dissimilarity(
                E[held], R, r_codes, len(classes), self.n_neighbors, r_weights
            )
            y_cal = codes[held]
            d_pairs, same = self._calibration_pairs(
                net, E[held], codes[held], E[train], codes[train], rng
            )
        R, r_codes, r_weights = self._select_references(E, codes, rng)

        self.classes_ = classes
        self.net_ = net
        self._scaler = plan.scaler
        self._n_features_out = R.shape[1]
        self.n_epochs_ = len(net.history)
        self.references_ = R
        self._reference_codes = r_codes
        self._reference_weights = r_weights
        self.reference_labels_ = classes[r_codes]
        counts = getattr(plan, "class_counts", None)
        if counts is None:
            counts = np.bincount(codes, minlength=len(classes))
        self.class_prior_ = counts / counts.sum()
        self.temperature_, self._prior_scale = _fit_calibration(
            S, y_cal, _log_class_prior(self.class_prior_), w_cal
        )
        self.threshold_ = 0.5 if len(classes) == 2 else None
        self.pair_calibration_ = fit_logistic_1d(d_pairs, same)
        return self

    def _augment_shape(self, scaler):
        """The image shape for ``augment=True``, or None."""
        if not self.augment:
            return None
        if self.image_shape_ is None:
            raise ValueError(
                "augment=True distorts images; use encoder='cnn', set "
                "image_shape, or pass X as (n, H, W) or (n, C, H, W) images."
            )
        if scaler.n_outputs != int(np.prod(self.image_shape_)):
            raise ValueError("augment=True does not accept blanks (NaN) in images.")
        return self.image_shape_

    def _class_weights(self, classes, strict=True):
        """``class_weight`` as one weight per class of ``classes``, or None.

        A label that ``classes`` lacks is an error when ``strict``, else
        skipped (classes replaced by fit_references); unnamed classes weigh 1.
        """
        if self.class_weight is None or isinstance(self.class_weight, str):
            return None
        position = {label: i for i, label in enumerate(classes.tolist())}
        weights = np.ones(len(classes))
        for label, weight in self.class_weight.items():
            label = label.item() if isinstance(label, np.generic) else label
            if label not in position:
                if not strict:
                    continue
                raise ValueError(
                    f"class_weight names the class {label!r}, which is not among "
                    f"the classes of y: {classes.tolist()}."
                )
            if (
                not isinstance(weight, numbers.Real)
                or isinstance(weight, bool)
                or not np.isfinite(weight)
                or weight <= 0
            ):
                raise ValueError(
                    "class_weight values must be positive finite numbers; got "
                    f"{weight!r} for class {label!r}."
                )
            weights[position[label]] = float(weight)
        return weights

    def _encode_labels(self, y, method):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__}.{method} needs samples of at least 2 "
                f"classes to form different pairs; got 1 class: {classes.tolist()}."
            )
        return classes, codes

    def _holdout_split(self, codes, rng):
        """Stratified (train, held-out) indices, or (all, None) when too small."""
        n, n_classes = len(codes), codes.max() + 1
        everything = np.arange(n)
        n_held = int(np.ceil(self.validation_fraction * n))
        if (
            not self.early_stopping
            or self.validation_fraction == 0
            or n_held < n_classes
            or n - n_held < 2 * n_classes
        ):
            return everything, None
        split = StratifiedShuffleSplit(
            n_splits=1, test_size=n_held, random_state=rng.randint(2**31 - 1)
        )
        train, held = next(split.split(np.zeros(n), codes))
        # A rare class can round to no held-out sample; the held-out loss and
        # the calibration need every class (and balanced batches at least two).
        if (
            np.bincount(codes[train], minlength=n_classes).min() < 2
            or np.bincount(codes[held], minlength=n_classes).min() < 1
        ):
            return everything, None
        return np.sort(train), np.sort(held)

    def _select_references(self, E, codes, rng):
        """The reference embeddings kept for prediction, their class codes and
        the number of training samples each stands for."""
        if self.references == "all":
            return E, codes, np.ones(len(E))
        present = np.unique(codes)
        groups = [E[codes == c] for c in present]
        if self.references == "prototypes":
            kept = [(g.mean(0, keepdims=True), np.array([len(g)])) for g in groups]
        else:
            kept = [self._class_centres(g, self.references, rng) for g in groups]
        r_codes = np.concatenate(
            [np.full(len(r), c) for c, (r, _) in zip(present, kept, strict=True)]
        )
        R = np.concatenate([r for r, _ in kept]).astype(np.float32)
        return R, r_codes, np.concatenate([w for _, w in kept]).astype(np.float64)

    @staticmethod
    def _class_centres(E, k, rng):
        """At most ``k`` centres of the rows ``E``, and how many of the rows
        each stands for (counted in all of ``E`` when k-means saw a subsample)."""
        n = len(E)
        # k-means on a subsample is as good as on everything for k centres and
        # keeps this step cheap on hundreds of thousands of samples.
        if n > 20 * k:
            E = E[rng.choice(n, 20 * k, replace=False)]
        # Repeated rows (e.g. oversampled) are placed once but keep their count.
        E, counts = np.unique(E, axis=0, return_counts=True)
        counts = counts * (n / counts.sum())
        if len(E) <= k:
            return E, counts
        E = E.astype(np.float64)
        seed = rng.randint(2**31 - 1)
        # Plain k-means++ seeding (one candidate per centre instead of
        # scikit-learn's 2 + log(k)): the seeding was most of the time, and the
        # Lloyd iterations that follow end within 2% of the same inertia.
        init, _ = kmeans_plusplus(E, k, random_state=seed, n_local_trials=1)
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=50, random_state=seed)
        km.fit(E)
        held = np.bincount(km.labels_, weights=counts, minlength=k)
        keep = held > 0
        return km.cluster_centers_[keep].astype(np.float32), held[keep]

    def _crossfit_scores(self, net, E, codes, n_classes, rng):
        """Calibration data without a held-out split: two stratified halves,
        each scored against the references of the other. Samples of a class
        seen only once (possible after ``partial_fit``) are left out."""
        keep = np.bincount(codes, minlength=n_classes)[codes] >= 2
        E, codes = E[keep], codes[keep]
        half = np.zeros(len(codes), dtype=bool)
        for c in range(n_classes):
            idx = rng.permutation(np.flatnonzero(codes == c))
            half[idx[: len(idx) // 2]] = True
        S_all, y_all, w_all, d_all, same_all = [], [], [], [], []
        for q in (half, ~half):
            r = ~q
            R, r_codes, r_weights = self._select_references(E[r], codes[r], rng)
            q = np.flatnonzero(q)
            keep, w = _cap_per_class(codes[q], _CALIBRATION_PER_CLASS, rng)
            q = q[keep]
            w_all.append(w)
            S_all.append(
                net.class_dissimilarity(
                    E[q], R, r_codes, n_classes, self.n_neighbors, r_weights
                )
            )
            y_all.append(codes[q])
            d, same = self._calibration_pairs(net, E[q], codes[q], E[r], codes[r], rng)
            d_all.append(d)
            same_all.append(same)
        return (
            np.concatenate(S_all),
            np.concatenate(y_all),
            np.concatenate(w_all),
            np.concatenate(d_all),
            np.concatenate(same_all),
        )

    @staticmethod
    def _calibration_pairs(net, Q, q_codes, R, r_codes, rng, max_queries=10_000):
        """Dissimilarities of one same-class and one other-class pair per query."""
        if len(Q) > max_queries:
            keep = rng.choice(len(Q), max_queries, replace=False)
            Q, q_codes = Q[keep], q_codes[keep]
        order = np.argsort(r_codes, kind="stable")
        sorted_codes = r_codes[order]
        lo = np.searchsorted(sorted_codes, q_codes, side="left")
        hi = np.searchsorted(sorted_codes, q_codes, side="right")
        same_pick = order[lo + (rng.random_sample(len(Q)) * (hi - lo)).astype(int)]
        # A reference drawn uniformly outside the query's class.
        n_other = len(r_codes) - (hi - lo)
        j = (rng.random_sample(len(Q)) * n_other).astype(int)
        other_pick = order[np.where(j < lo, j, j + (hi - lo))]
        d_same = net.rowwise(Q, R[same_pick])
        d_other = net.rowwise(Q, R[other_pick])
        d = np.concatenate([d_same, d_other])
        same = np.r_[np.ones(len(Q)), np.zeros(len(Q))]
        return d, same

    # -- out-of-core training ----------------------------------------------------

    # Samples of each class kept (by reservoir sampling) across partial_fit calls:
    # they give rare classes partners in later chunks, and the references and
    # calibration after each call.
    _reservoir_size = 1000

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train on one chunk of data, for data that does not fit in memory.

        Each call trains one epoch on the chunk plus a class-stratified sample
        (at most 1000 per class) kept from earlier chunks, then refreshes the
        references and the calibration from that sample, so the estimator can
        predict after every call. The scaling of the inputs is fitted on the
        first chunk, which should therefore be representative. Hyperparameters
        ``early_stopping``, ``validation_fraction`` and ``max_epochs`` apply
        to :meth:`fit` only. ``fit`` starts over, discarding what
        ``partial_fit`` learned; ``partial_fit`` after ``fit`` trains the
        fitted encoder on, keeps ``classes_`` and the input scaling, and
        rebuilds the references from the chunks it is given.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of samples; blanks (NaN) allowed.
        y : array-like of shape (n_samples,)
            Their labels.
        classes : array-like of shape (n_classes,), default=None
            Every label that may appear in any chunk. Required on the first
            call of an unfitted estimator, ignored afterwards. Classes not
            seen yet are never predicted.

        Returns
        -------
        self : SiameseClassifier
        """
        with _restore_on_failure(self, deep=("net_", "_stream")):
            if not hasattr(self, "_stream") and not hasattr(self, "net_"):
                return self._partial_fit_first(X, y, classes)
            Z = self._encode(X)
            if not hasattr(self, "_stream"):  # fitted by fit: train on from here
                rng, _ = self._seed_pair()
                self._stream = self._new_stream(rng, str(self.net_.device), Z)
            codes = self._partial_codes(y, self.classes_, len(Z))
            return self._partial_fit_step(Z, codes)

    def _partial_fit_first(self, X, y, classes):
        if classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        X = self._validate_X(X, reset=True)
        classes = column_or_1d(classes)
        check_classification_targets(classes)
        classes = np.unique(classes)
        if len(classes) < 2:
            raise ValueError(
                f"partial_fit needs at least 2 classes; got classes={classes.tolist()}."
            )
        codes = self._partial_codes(y, classes, len(X))
        device = resolve_device(self.device)
        rng, seed = self._seed_pair()
        scaler = self._make_scaler().fit(X)
        Z = scaler.transform(X)
        with self._seeded(seed, device):
            module = self._build_module(
                scaler.n_outputs, head=self.loss == "bce", probe=Z, device=device
            )
            net = self._make_net(
                module,
                InBatchLoss(self.loss, self.margin, self._class_weights(classes)),
                None,
                rng,
                device,
                self.samples_per_class,
            )
            net.initialize()
        self.net_ = net
        self.classes_ = classes
        self._scaler = scaler
        self._stream = self._new_stream(rng, device, Z)
        return self._partial_fit_step(Z, codes)

    def _new_stream(self, rng, device, Z):
        return SimpleNamespace(
            rng=rng,
            device=device,
            seen=np.zeros(len(self.classes_), dtype=np.int64),
            kept=[Z[:0] for _ in self.classes_],
        )

    @staticmethod
    def _partial_codes(y, classes, n_samples):
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(
                f"X and y have different numbers of samples: {n_samples} and {len(y)}."
            )
        codes = np.searchsorted(classes, y)
        codes = np.minimum(codes, len(classes) - 1)
        unknown = classes[codes] != y
        if unknown.any():
            raise ValueError(
                f"y contains labels not in classes: {np.unique(y[unknown]).tolist()}."
            )
        return codes

    def _partial_fit_step(self, Z, codes):
        stream, net = self._stream, self.net_
        kept_codes = np.concatenate(
            [np.full(len(k), c) for c, k in enumerate(stream.kept)]
        )
        Z_all = np.concatenate([*stream.kept, Z])
        codes_all = np.concatenate([kept_codes, codes]).astype(np.int64)
        if (np.bincount(codes_all, minlength=len(self.classes_)) >= 2).sum() < 2:
            raise ValueError(
                "partial_fit needs at least 2 samples of each of at least 2 classes "
                "in the data seen so far; pass a larger first chunk."
            )
        with self._seeded(stream.rng.randint(np.iinfo(np.int32).max), stream.device):
            net.partial_fit(Z_all, codes_all, epochs=1)
        self._update_reservoir(Z, codes)
        kept_codes = np.concatenate(
            [np.full(len(k), c) for c, k in enumerate(stream.kept)]
        )
        plan = SimpleNamespace(
            net=net,
            Z=np.concatenate(stream.kept),
            codes=kept_codes,
            classes=self.classes_,
            train=None,
            held=None,
            scaler=self._scaler,
            rng=stream.rng,
            class_counts=stream.seen,
        )
        return self._fit_finish(plan)

    def _update_reservoir(self, Z, codes):
        """Reservoir sampling (Vitter's algorithm R), one reservoir per class."""
        stream, cap = self._stream, self._reservoir_size
        for c in np.unique(codes):
            rows = Z[codes == c]
            kept, seen = stream.kept[c], stream.seen[c]
            room = max(0, cap - len(kept))
            kept = np.concatenate([kept, rows[:room]])
            rest = rows[room:]
            if len(rest):
                # Sample i of the stream replaces a random slot with prob. cap / i.
                slots = (
                    stream.rng.random_sample(len(rest))
                    * (seen + room + 1 + np.arange(len(rest)))
                ).astype(np.int64)
                take = slots < cap
                kept = kept.copy()
                kept[slots[take]] = rest[take]
            stream.kept[c] = kept
            stream.seen[c] = seen + len(rows)

    # -- references ------------------------------------------------------------

    def fit_references(self, X, y):
        """Replace the reference samples (and ``classes_``) without retraining.

        The trained encoder embeds ``X`` once; later predictions compare queries
        with these references only. Use it to recognise classes never seen in
        training, from as little as one sample each.

        Parameters
        ----------
        X : array-like of shape (n_references, n_features)
            Reference samples.
        y : array-like of shape (n_references,)
            Their labels; at least two classes, one sample each is enough.

        Returns
        -------
        self : SiameseClassifier
        """
        check_is_fitted(self)
        Z = self._encode(X)
        classes, codes = self._encode_labels(y, "fit_references")
        if len(codes) != len(Z):
            raise ValueError(
                f"X and y have different numbers of samples: {len(Z)} and {len(codes)}."
            )
        E = self.net_.embed(Z)
        R, r_codes, r_weights = self._select_references(E, codes, check_random_state(0))
        self.classes_ = classes
        self.references_ = R
        self._reference_codes = r_codes
        self._reference_weights = r_weights
        self.reference_labels_ = classes[r_codes]
        self.class_prior_ = np.bincount(codes) / len(codes)
        self.threshold_ = 0.5 if len(classes) == 2 else None
        return self

    # -- prediction ------------------------------------------------------------

    def _class_dissimilarity(self, X):
        check_is_fitted(self)
        E = self._embed(self._validate_X(X, reset=False))
        return self.net_.class_dissimilarity(
            E,
            self.references_,
            self._reference_codes,
            len(self.classes_),
            self.n_neighbors,
            # Model files written before references had weights: one sample each.
            getattr(self, "_reference_weights", None),
        )

    def _log_prior(self):
        """The prior term of the logits.

        The class scores are balanced (as if every class were equally
        frequent); ``_prior_scale * log(class_prior_)`` turns them into
        probabilities at the training frequencies (fitted with the
        temperature). ``class_weight="balanced"`` removes the training
        frequencies again (Bayes' rule); a dict then multiplies each class's
        odds by its weight.
        """
        prior = getattr(self, "class_prior_", None)
        if prior is None:  # model files written before: balanced scores
            log_prior, scale = np.zeros(len(self.classes_)), 0.0
        else:
            log_prior, scale = _log_class_prior(prior), self._prior_scale
        if self.class_weight is None:
            return scale * log_prior
        weights = self._class_weights(self.classes_, strict=False)
        shift = (scale - 1.0) * log_prior
        return shift if weights is None else shift + np.log(weights)

    def _logits(self, S):
        return -S / self.temperature_ + self._log_prior()

    def decision_function(self, X):
        """Class scores: the logits of :meth:`predict_proba` (minus the class
        dissimilarities over the temperature, plus the prior term).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the log-odds of ``classes_[1]`` minus those of
            ``threshold_`` (which are 0 until :meth:`calibrate_threshold`), so
            that :meth:`predict` returns ``classes_[1]`` exactly where the score
            is positive; otherwise one column per class (log-probabilities up
            to a constant per row).
        """
        logits = self._logits(self._class_dissimilarity(X))
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0] - logit(self.threshold_)
        return logits

    def predict_proba(self, X):
        """Calibrated class probabilities.

        Fitted after training on samples scored against references they were
        not among; at the class frequencies of the training data, or as
        ``class_weight`` sets the priors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        return softmax(self._logits(self._class_dissimilarity(X)), axis=1)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Label of the closest class (the most probable one with ``class_weight``).

        With two classes and a threshold set by :meth:`calibrate_threshold`,
        ``classes_[1]`` where its probability exceeds ``threshold_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        if self.threshold_ not in (None, 0.5):
            return self.classes_[(self.decision_function(X) > 0).astype(int)]
        logits = self._logits(self._class_dissimilarity(X))
        return self.classes_[np.argmax(logits, axis=1)]

    def calibrate_threshold(
        self,
        X,
        y,
        strategy="balanced_accuracy",
        *,
        beta=1.0,
        min_tnr=0.9,
        min_tpr=0.9,
    ):
        """Choose the decision threshold of a binary classifier on held-out data.

        Sets ``threshold_`` to the probability of ``classes_[1]`` that does best
        on ``(X, y)`` by ``strategy``. :meth:`predict` then returns
        ``classes_[1]`` where ``predict_proba(X)[:, 1] > threshold_``, and
        :meth:`decision_function` is shifted to stay positive exactly there;
        :meth:`predict_proba` does not change. The encoder is not retrained.
        ``fit``, ``partial_fit`` and :meth:`fit_references` set the threshold
        back to 0.5.

        Use samples not seen in ``fit``: on training samples the threshold is
        optimistic. To tune the threshold by cross-validation instead, wrap the
        estimator in :class:`~sklearn.model_selection.TunedThresholdClassifierCV`.

        Below, ``classes_[1]`` is the positive class: the true positive rate
        (TPR) is its recall, the true negative rate (TNR) that of
        ``classes_[0]`` (specificity), both on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out samples.
        y : array-like of shape (n_samples,)
            Their labels, from ``classes_``; both classes must be present.
        strategy : {"balanced_accuracy", "accuracy", "f_beta", "max_tpr", \
"max_tnr"}, default="balanced_accuracy"
            What the threshold optimizes on ``(X, y)``:

            - ``"balanced_accuracy"``: the mean of TPR and TNR, whatever the
              class mix of ``y``.
            - ``"accuracy"``: the fraction predicted right; it depends on the
              class mix, so use data mixed as it will be in use.
            - ``"f_beta"``: the F-beta score of ``classes_[1]``.
            - ``"max_tpr"``: the highest TPR subject to TNR >= ``min_tnr``
              (find as many cases as possible at a bounded false alarm rate).
            - ``"max_tnr"``: the highest TNR subject to TPR >= ``min_tpr`` (a
              guaranteed recall, with as few false alarms as possible).

            Ties of the first three go to the highest threshold (the fewest
            predictions of ``classes_[1]``).
        beta : float, default=1.0
            Weight of recall relative to precision for ``"f_beta"`` (1 is F1).
        min_tnr : float, default=0.9
            Lowest acceptable TNR for ``"max_tpr"``, in [0, 1].
        min_tpr : float, default=0.9
            Lowest acceptable TPR (recall) for ``"max_tnr"``, in [0, 1].

        Returns
        -------
        self : SiameseClassifier
        """
        check_is_fitted(self)
        check_strategy(strategy, beta, min_tnr, min_tpr)
        if len(self.classes_) != 2:
            raise ValueError(
                "calibrate_threshold is for binary problems; this classifier has "
                f"{len(self.classes_)} classes."
            )
        y = column_or_1d(y, warn=True)
        S = self._class_dissimilarity(X)
        if len(y) != len(S):
            raise ValueError(
                f"X and y have different numbers of samples: {len(S)} and {len(y)}."
            )
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(
                f"y contains labels not in classes_: {np.unique(y[unknown]).tolist()}."
            )
        logits = self._logits(S)
        log_odds = logits[:, 1] - logits[:, 0]
        t = select_threshold(
            log_odds,
            y == self.classes_[1],
            strategy,
            beta=beta,
            min_tnr=min_tnr,
            min_tpr=min_tpr,
        )
        self.threshold_ = float(expit(t))
        return self

    # scikit-learn's set_output wraps only the ``transform`` a class defines
    # itself, not one it inherits from a base outside TransformerMixin.
    transform = _BaseSiamese.transform

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# Calibration fits one or two numbers: a few thousand samples of each class
# determine them as well as hundreds of thousands, at a fraction of the cost.
_CALIBRATION_PER_CLASS = 2000


def _cap_per_class(codes, cap, rng):
    """Sorted positions of at most ``cap`` randomly chosen samples per class,
    and for each the weight that restores the frequency of its class."""
    counts = np.bincount(codes)
    if counts.max() <= cap:
        return np.arange(len(codes)), np.ones(len(codes))
    keep = []
    for c in np.flatnonzero(counts):
        idx = np.flatnonzero(codes == c)
        keep.append(idx if len(idx) <= cap else rng.choice(idx, cap, replace=False))
    keep = np.sort(np.concatenate(keep))
    return keep, (counts / np.minimum(counts, cap))[codes[keep]]


def _log_class_prior(prior):
    """``log(prior)``, 0 for a class of prior 0: a class not seen yet
    (``partial_fit``) has no references, and its scores are infinite anyway."""
    return np.log(np.where(prior > 0, prior, 1.0))


def _fit_calibration(S, codes, log_prior, weights=None):
    """Temperature ``T`` and prior scale ``a`` of ``softmax(-S / T + a *
    log_prior)`` that minimise its log loss on ``(S, codes)`` (``log_prior``
    finite, as :func:`_log_class_prior` gives it).

    The class scores ``S`` compare densities as if the classes were equally
    frequent (balanced batches, share-of-class neighbourhoods); Bayes' rule
    turns them into probabilities at the training frequencies with ``a = 1``,
    which the fit may correct. ``weights`` (one per sample) restore the class
    frequencies of a calibration set that was subsampled per class. The
    targets are Platt's (1999) smoothed ones, ``(n_c + 1) / (n_c + 2)`` for
    the true class: a perfectly separated calibration set would otherwise
    drive the temperature to zero and the probabilities to 0 and 1.
    """
    n_classes = S.shape[-1]
    weights = np.ones(len(codes)) if weights is None else weights
    counts = np.bincount(codes, minlength=n_classes)
    on = (counts[codes] + 1.0) / (counts[codes] + 2.0)
    # Classes without references (S = inf) get no target mass.
    finite = np.isfinite(S)
    n_other = np.maximum(finite.sum(1) - 1, 1)
    targets = np.where(finite, ((1.0 - on) / n_other)[:, None], 0.0)
    targets[np.arange(len(codes)), codes] = on
    # The temperature is searched around the spread of the scores.
    spread = np.std(S[finite])
    centre = np.log(spread if spread > 0 else 1.0)

    def loss(params):
        log_t, a = params
        z = -S / np.exp(log_t) + a * log_prior
        logp = z - logsumexp(z, axis=-1, keepdims=True)
        ce = (targets * np.where(finite, logp, 0.0)).sum(1)
        return -(weights * ce).sum() / weights.sum()

    # Start from Bayes' rule (a = 1) at the temperature that is best for it.
    start = minimize_scalar(
        lambda log_t: loss((log_t, 1.0)),
        bounds=(centre - 10, centre + 10),
        method="bounded",
    ).x
    res = minimize(
        loss,
        x0=[start, 1.0],
        method="L-BFGS-B",
        bounds=[(centre - 10, centre + 10), (0.0, 2.0)],
    )
    log_t, a = res.x if res.fun <= loss((start, 1.0)) else (start, 1.0)
    return float(np.exp(log_t)), float(a)
