"""SiameseClassifier: a twin network that learns from labelled samples.

The public methods; the fit skeleton is in ``_base.py``, references in
``_references.py``, probabilities and thresholds in ``_calibration.py``.
"""

import numbers

import numpy as np
from scipy.special import expit, logit
from sklearn.base import (
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import FitPlan, _BaseSiamese, restore_on_failure
from ._calibration import (
    PAIR_SLOPE_C,
    calibration_scores,
    check_strategy,
    class_weight_vector,
    fit_logistic_1d,
    fit_temperature,
    log_class_prior,
    prior_term,
    select_threshold,
    softmax_rows,
)
from ._compat import (
    Interval,
    StrOptions,
    _fit_context,
    validate_parameter_constraints,
)
from ._losses import LOSSES, InBatchLoss
from ._persistence import register
from ._references import (
    References,
    kept_samples,
    new_reservoir,
    select_references,
    update_reservoir,
)
from ._training import (
    EmbeddedRows,
    batch_params,
    n_members,
    recording_gradients,
    seeded,
)

# Samples of each class kept (by reservoir sampling) across partial_fit calls:
# they give rare classes partners in later chunks, and the references and
# calibration after each call.
_RESERVOIR_SIZE = 1000


@register
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
        had blanks during ``fit`` (images: the image shape, and no blanks) and
        must return ``(batch, embedding_dim)``.

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
        features, a square grey-scale image is assumed. ``X`` of images
        (``(n, H, W)`` / ``(n, C, H, W)``, channels first) gives their shape
        itself; an ``image_shape`` set as well must be that shape. With
        ``"cnn"``, images that look like channels last (``(n, H, W, 3)``)
        are refused unless ``image_shape`` confirms their shape.

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
        the odds of each class multiplied by its weight (classes left out
        weigh 1), as if it had been so much more frequent in the training
        data, as with scikit-learn's class weights (``{0: 1, 1: 1}`` is None;
        the weights of :func:`~sklearn.utils.class_weight.compute_class_weight`
        give the probabilities of ``"balanced"``); and the loss around class
        1 counts five times more in training (a pair counts with the mean
        weight of its two samples). Ranking metrics (ROC AUC, average
        precision) of two classes are the same with None and ``"balanced"``.
        To trade recall against precision on held-out data,
        :meth:`calibrate_threshold` is the measured alternative.

    max_epochs : int, default=30
        Passes over the training data (the most, with ``early_stopping``).

    batch_size : int or "auto", default="auto"
        Samples per training batch. ``"auto"``: 128, doubled for every
        doubling of the training rows beyond 51,200, up to 1,024 (so 256 from
        51,200 rows, 1,024 from 204,800), with ``lr`` multiplied by
        ``(batch_size_ / 128) ** 0.75``; an epoch of 51,200 to 409,600 rows
        then takes 200 to 400 steps, and more beyond (:meth:`partial_fit`:
        chosen by its first call's rows). That is for ``loss="prototype"``,
        whose cost per step grows with the batch; the other losses compare
        every pair of a batch, a cost that grows with its square (an epoch of
        220,000 rows on a CPU took 6.6 times as long with
        ``loss="contrastive"`` at 1,024 as at 128, :ref:`scaling`),
        so for them ``"auto"`` is 128. An int is used as given, with ``lr``
        as given.

    samples_per_class : int, default=None
        Samples of each class in a batch (``K``); by default
        ``batch_size // n_classes``, at least 4 (where a batch holds 2
        classes of 4), and at most the size of the largest class (a batch
        larger than the data would only repeat it). With many classes, a
        batch then holds ``batch_size // 4`` of them: with 2 samples each, a
        sample's own class mean would be a single other sample, and the
        embeddings can collapse to one point (:ref:`batches`).

    augment : bool, default=False
        Distort each training image, every time it is drawn, by a small random
        affine transform (rotation up to 10 degrees, shear, scaling by 0.9 to
        1.1, shift up to 8% of the side), seeded by ``random_state``. Images
        only: flat rows with ``image_shape`` (any encoder), or ``X`` of
        ``(n, H, W)`` / ``(n, C, H, W)`` images with ``encoder="cnn"`` or a
        torch module (``"cnn"`` also takes flat rows of a square number of
        features for square images).

    lr : float, default=1e-3
        Learning rate of the AdamW optimizer (for batches of more than 128
        samples chosen by ``batch_size="auto"``, scaled as said there).

    weight_decay : float, default=1e-4
        Decoupled weight decay of AdamW.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified),
        stop when the loss on it has not improved for ``n_iter_no_change``
        epochs, keep the best weights, and calibrate ``predict_proba`` on it.
        By default every sample trains for ``max_epochs`` epochs and the
        calibration scores each sample with an ensemble member that left it
        out of its training (out of bag; with fewer than 4 members or another
        loss than ``"prototype"``, a two-fold split of the training data): on
        tables with a rare class, holding out a tenth of its few samples cost
        more than early stopping saved (:ref:`training`).

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

    compile : bool or dict, default=False
        Train with the encoder and the loss compiled by ``torch.compile``
        (a dict: its keyword arguments, e.g. ``{"mode": "max-autotune"}``).
        Compiling takes seconds to tens of seconds at the first training step
        and makes every later step faster, so it pays off on long fits only
        (see :ref:`scaling`); it needs a C++ compiler on a CPU. The fitted
        model is the same kind of object either way: prediction runs the
        plain encoder, and pickles and saved files hold no compiled code.

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

    batch_size_ : int
        Samples per training batch: ``batch_size``, or what ``"auto"`` chose.

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
        batch_size="auto",
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
        self.compile = compile
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
        return self._fit(X, y)

    def _validate_read_params(self, *names):
        """Check the parameters ``names`` where a fitted estimator reads them
        (a value set since fit), with the error fit would give."""
        validate_parameter_constraints(
            {name: self._parameter_constraints[name] for name in names},
            {name: getattr(self, name) for name in names},
            caller_name=type(self).__name__,
        )

    def _check_references(self):
        """Refuse a bool ``references``, which scikit-learn's integer
        constraint takes (as 1): no number of centres but a misreading of the
        parameter. The constraints themselves are checked before."""
        if isinstance(self.references, (bool, np.bool_)):
            raise ValueError(
                "references must be 'all', 'prototypes' or a number of "
                f"centres per class (an int >= 1); got {self.references!r}."
            )

    def _check_fit_data(self, X, y, classes):
        self._check_references()
        if classes is not None:  # partial_fit: labels checked against classes
            X = self._validate_X(X, reset=True)
            classes = _check_classes(classes)
            return X, _codes(y, classes, len(X)), classes
        X, y = self._validate_X(X, y, reset=True)
        classes, codes = _labels(y, f"{type(self).__name__}.fit")
        counts = np.bincount(codes)
        if counts.min() < 2:
            rare = classes[np.flatnonzero(counts < 2)].tolist()
            raise ValueError(
                "Every class needs at least 2 samples in fit to form same-class "
                f"pairs; these classes have only 1: {rare}. Remove them, or add "
                "them after training with fit_references."
            )
        return X, codes, classes

    def _split(self, X, codes, rng):
        train, held = _stratified_holdout(
            codes, self.validation_fraction if self.early_stopping else 0, rng
        )
        if held is None and self._out_of_bag():
            # The targets: each row's class code and the member that leaves
            # it out (the prototype loss reads both).
            return train, held, np.c_[codes, _left_out(codes, n_members(self), rng)]
        return train, held, codes

    def _out_of_bag(self):
        """Whether a fit with nothing held out calibrates out of bag: each
        member of the encoder's ensemble leaves some rows out of its training,
        and scores them for the calibration."""
        return self.loss == "prototype" and n_members(self) >= _OUT_OF_BAG_MEMBERS

    def _criterion(self, classes):
        weights = class_weight_vector(self.class_weight, classes)
        return InBatchLoss(self.loss, self.margin, weights, n_classes=len(classes))

    def _fit_finish(self, plan):
        """Keep the references and calibrate, from a trained ``plan.net``."""
        net, codes, rng, n_classes = plan.net, plan.codes, plan.rng, len(plan.classes)
        # Only the rows the references and the calibration read are embedded.
        E = EmbeddedRows(net, plan.Z)
        cal = calibration_scores(
            net,
            E,
            codes,
            n_classes,
            self.references,
            self.n_neighbors,
            rng,
            plan.train,
            plan.held,
            plan.class_counts,
            # The member that left each row out, when members did (_split).
            plan.targets[:, 1] if plan.targets.ndim == 2 else None,
        )
        counts = plan.class_counts
        if counts is None:
            counts = np.bincount(codes, minlength=n_classes)
        self._keep_references(
            select_references(E, codes, self.references, rng, device=net.device),
            plan.classes,
            counts,
        )
        self.net_ = net
        self._scaler = plan.scaler
        self._n_features_out = self.references_.shape[1]
        self.n_epochs_ = len(net.history)
        self.temperature_, self._prior_scale = fit_temperature(
            cal.S, cal.codes, log_class_prior(self.class_prior_), cal.weights
        )
        # The pair estimator's prior on the slope (PAIR_SLOPE_C): with a few
        # dozen samples, a few calibration pairs separated by chance gave
        # pair_score probabilities of 0 and 1 too.
        self.pair_calibration_ = fit_logistic_1d(cal.d, cal.same, C=PAIR_SLOPE_C)
        return self

    def _keep_references(self, refs, classes, counts):
        self.classes_ = classes
        self.references_ = refs.embeddings
        self._reference_codes = refs.codes
        self._reference_weights = refs.weights
        self.reference_labels_ = classes[refs.codes]
        self.class_prior_ = counts / counts.sum()
        self.threshold_ = 0.5 if len(classes) == 2 else None
        self._threshold_log_odds = 0.0 if len(classes) == 2 else None

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train on one chunk of data, for data that does not fit in memory.

        Each call trains one epoch on the chunk plus a class-stratified sample
        (at most 1000 per class) kept from earlier chunks, then refreshes the
        references and the calibration from that sample, so the estimator can
        predict after every call. The scaling of the inputs is fitted on the
        first chunk, which should therefore be representative. Hyperparameters
        ``early_stopping``, ``validation_fraction`` and ``max_epochs`` apply
        to :meth:`fit` only; ``batch_size``, ``samples_per_class`` and
        ``augment`` are read at every call (after :func:`~sksiamese.load`
        too), while the network, its loss and its optimizer go on as the
        first call (or ``fit``) made them. ``fit`` starts over, discarding what
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
            call of an unfitted estimator; afterwards it may be left out, or
            given again (as a loop over chunks does), but must then be
            ``classes_``, as in scikit-learn's ``partial_fit``. Classes not
            seen yet are never predicted.

        Returns
        -------
        self : SiameseClassifier
        """
        with restore_on_failure(self, deep=("net_", "_stream")), recording_gradients():
            if not hasattr(self, "_stream") and not hasattr(self, "net_"):
                if classes is None:
                    raise ValueError(
                        "classes must be passed on the first call to partial_fit."
                    )
                plan = self._fit_setup(X, y, classes)
                self.net_, self.classes_, self._scaler = (
                    plan.net,
                    plan.classes,
                    plan.scaler,
                )
                self._stream = new_reservoir(
                    plan.rng, plan.device, plan.Z, len(plan.classes)
                )
                return self._partial_fit_step(plan.Z, plan.codes)
            # _fit_context checks the parameters of an unfitted estimator
            # only; every call reads them (batch_size, samples_per_class,
            # references, ...), so a value set since is checked here, as
            # fit would check it.
            self._validate_params()
            self._check_references()
            if classes is not None:
                classes = _check_classes(classes)
            if classes is not None and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"classes={classes.tolist()} is not "
                    f"classes_={self.classes_.tolist()}, the classes of the first "
                    "call to partial_fit (or of fit or fit_references): leave "
                    "classes out after the first call, or fit anew."
                )
            Z = self._scaled(X)
            if not hasattr(self, "_stream"):  # fitted by fit: train on from here
                rng, _ = self._random_streams()
                self._stream = new_reservoir(
                    rng, str(self.net_.device), Z, len(self.classes_)
                )
            return self._partial_fit_step(Z, _codes(y, self.classes_, len(Z)))

    def _partial_fit_step(self, Z, codes):
        """One epoch on the chunk and the kept samples, then keep samples of
        the chunk and finish as fit does, from the kept samples."""
        stream, net = self._stream, self.net_
        Z_kept, codes_kept = kept_samples(stream)
        Z_all = np.concatenate([Z_kept, Z])
        codes_all = np.concatenate([codes_kept, codes]).astype(np.int64)
        counts = np.bincount(codes_all, minlength=len(self.classes_))
        if (counts >= 2).sum() < 2:
            raise ValueError(
                "partial_fit needs at least 2 samples of each of at least 2 classes "
                "in the data seen so far (the samples it kept and this chunk); got "
                f"{(counts >= 2).sum()}. The first call, and the first after fit "
                "or fit_references (which keep no samples), need a chunk with them."
            )
        seed = stream.rng.randint(np.iinfo(np.int32).max)
        # Batches as the parameters are now, drawn afresh at every call (set
        # directly: skorch's set_params refuses iterator parameters of an
        # initialised net).
        vars(net).update(
            batch_params(self, self._augment_shape(self._scaler)),
            iterator_train__random_state=seed,
        )
        with seeded(seed, stream.device):
            net.partial_fit(Z_all, codes_all, epochs=1)
        update_reservoir(stream, Z, codes, _RESERVOIR_SIZE)
        Z_kept, codes_kept = kept_samples(stream)
        # The references and the calibration come from the kept samples,
        # the class frequencies from all seen.
        plan = FitPlan(
            Z=Z_kept,
            targets=codes_kept,
            codes=codes_kept,
            classes=self.classes_,
            train=np.arange(len(codes_kept)),
            held=None,
            scaler=self._scaler,
            net=net,
            rng=stream.rng,
            seed=seed,
            device=stream.device,
            class_counts=stream.seen,
        )
        return self._fit_finish(plan)

    # -- references ------------------------------------------------------------

    def fit_references(self, X, y):
        """Replace the reference samples (and ``classes_``) without retraining.

        The trained encoder embeds ``X`` once; later predictions compare queries
        with these references only. Use it to recognise classes never seen in
        training, from as little as one sample each. :meth:`partial_fit`
        afterwards trains the encoder on with these classes (and
        ``class_weight`` for them), from the chunks it is given.

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
        self._validate_read_params("references")
        self._check_references()
        Z = self._scaled(X)
        classes, codes = _labels(
            y, f"{type(self).__name__}.fit_references", "for predictions to choose from"
        )
        if len(codes) != len(Z):
            raise ValueError(
                f"X and y have different numbers of samples: {len(Z)} and {len(codes)}."
            )
        refs = select_references(
            EmbeddedRows(self.net_, Z),
            codes,
            self.references,
            check_random_state(0),
            device=self.net_.device,
        )
        self._keep_references(refs, classes, np.bincount(codes))
        # partial_fit trains on from here with these classes: the samples
        # kept of the former ones, and the loss's class count and weights
        # for them, no longer apply.
        self.__dict__.pop("_stream", None)
        self.net_.criterion_.set_classes(
            len(classes),
            class_weight_vector(self.class_weight, classes, strict=False),
            device=self.net_.device,
        )
        return self

    def _loss_over_all_pairs(self):
        # Only the prototype loss costs batch x classes per step; the others
        # compare every pair (nca, contrastive, bce) or more (triplet).
        return self.loss != "prototype"

    # -- prediction ------------------------------------------------------------

    def _class_dissimilarity(self, X):
        check_is_fitted(self)
        # Read here, not at fit only: a value set since is checked too.
        self._validate_read_params("n_neighbors", "class_weight")
        X = self._validate_X(X, reset=False)
        # Model files written before references had weights: one sample each.
        weights = getattr(self, "_reference_weights", None)
        refs = References(self.references_, self._reference_codes, weights)
        # The references meet the embeddings on the net's device: only the
        # dissimilarities come back to the host.
        return self._embed(
            X,
            then=lambda E: refs.dissimilarity(
                self.net_, E, len(self.classes_), self.n_neighbors
            ),
        )

    def _logits(self, S):
        prior = getattr(self, "class_prior_", None)
        scale = getattr(self, "_prior_scale", 0.0)
        term = prior_term(prior, scale, self.class_weight, self.classes_)
        return -S / self.temperature_ + term

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
            return logits[:, 1] - logits[:, 0] - self._threshold_logit()
        return logits

    def _threshold_logit(self):
        """The log-odds of ``threshold_``: those :meth:`calibrate_threshold`
        chose, which ``threshold_`` holds only to rounding (above 36.7, a
        probability of 1 and infinite log-odds); or those of a threshold set
        otherwise (by hand, or in a model file written before they were kept).
        """
        chosen = getattr(self, "_threshold_log_odds", None)
        if chosen is not None and expit(chosen) == self.threshold_:
            return chosen
        return logit(self.threshold_)

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
        return softmax_rows(self._logits(self._class_dissimilarity(X)))

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
        """Label of the most probable class (the argmax of :meth:`predict_proba`,
        at the class priors that ``class_weight`` sets).

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
        self._threshold_log_odds = t
        return self

    # scikit-learn's set_output wraps only the ``transform`` a class defines
    # itself, not one it inherits from a base outside TransformerMixin.
    transform = _BaseSiamese.transform

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _labels(y, caller, why="to form different pairs"):
    """Sorted labels of ``y`` and each sample's code; at least two classes
    (``why``: what ``caller`` needs them for)."""
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"{caller} needs samples of at least 2 classes {why}; got 1 class: "
            f"{classes.tolist()}."
        )
    return classes, codes


def _check_classes(classes):
    """``partial_fit``'s ``classes``: sorted, at least two."""
    classes = column_or_1d(classes)
    check_classification_targets(classes)
    classes = np.unique(classes)
    if len(classes) < 2:
        raise ValueError(
            f"partial_fit needs at least 2 classes; got classes={classes.tolist()}."
        )
    return classes


def _codes(y, classes, n_samples):
    """The codes of the labels ``y`` among the sorted ``classes``."""
    y = column_or_1d(y, warn=True)
    if len(y) != n_samples:
        raise ValueError(
            f"X and y have different numbers of samples: {n_samples} and {len(y)}."
        )
    codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    unknown = classes[codes] != y
    if unknown.any():
        raise ValueError(
            f"y contains labels not in classes: {np.unique(y[unknown]).tolist()}."
        )
    return codes


# Out-of-bag calibration needs this many ensemble members at least: each
# member trains on all rows but its share, 1 / n_members of them.
_OUT_OF_BAG_MEMBERS = 4


def _left_out(codes, k, rng):
    """The member (of ``k``) that leaves each sample out: in each class the
    samples are dealt to the members in turn, in a random order and from a
    random first member, so that every member leaves out about ``1 / k`` of
    every class and a class of at least two samples keeps samples in every
    member."""
    left_out = np.empty(len(codes), dtype=codes.dtype)
    for c in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == c))
        left_out[rows] = (np.arange(len(rows)) + rng.randint(k)) % k
    return left_out


def _stratified_holdout(codes, fraction, rng):
    """Stratified (train, held-out) indices holding out ``fraction`` of the
    samples, or (all, None) when that is 0 or too few to split."""
    n, n_classes = len(codes), codes.max() + 1
    everything = np.arange(n)
    n_held = int(np.ceil(fraction * n))
    if fraction == 0 or n_held < n_classes or n - n_held < 2 * n_classes:
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
