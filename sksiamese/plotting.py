"""Plots of fitted sksiamese estimators, in scikit-learn's Display style.

Each display is built with ``from_estimator`` (or from precomputed values with
``from_predictions`` / ``from_embedding`` / ``from_history``), draws itself with
``plot(ax=...)``, and keeps the matplotlib objects as ``ax_``, ``figure_`` and
the drawn artists. matplotlib is imported only when a plot is made; install it
with ``pip install 'sksiamese[plot]'``.
"""

import numbers

import numpy as np
from sklearn.utils import assert_all_finite, check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import _BaseSiamese
from ._compat import Interval, validate_parameter_constraints
from ._pair_classifier import SiamesePairClassifier

__all__ = [
    "EmbeddingDisplay",
    "PairDistanceDisplay",
    "TrainingHistoryDisplay",
    "sample_pairs",
]


def _check_matplotlib(caller):
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib; install it with "
            "pip install 'sksiamese[plot]' (or pip install matplotlib)."
        ) from exc


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax, ax.figure


def _final_estimator(estimator):
    """The last step of a Pipeline, else the estimator itself."""
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def _fitted_siamese(estimator, caller):
    """``(estimator, model)``: ``estimator``, or the best estimator of a fitted
    search (``GridSearchCV``, ...), and the fitted sksiamese estimator that
    is it or ends it (a Pipeline)."""
    while hasattr(estimator, "best_estimator_"):
        estimator = estimator.best_estimator_
    model = _final_estimator(estimator)
    if not isinstance(model, _BaseSiamese):
        raise TypeError(
            f"{caller} needs a SiameseClassifier or a SiamesePairClassifier (or a "
            f"Pipeline ending in one, or a fitted search of them); got "
            f"{type(model).__name__}."
        )
    check_is_fitted(model)
    return estimator, model


def _check_threshold(threshold):
    """A threshold line's position: None, or a finite number."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"threshold must be a number or None; got {threshold!r} "
            f"({type(threshold).__name__})."
        )
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite; got {threshold!r}.")
    return threshold


def _take(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def sample_pairs(y, n_pairs, random_state=None):
    """Random same-class and different-class pairs of sample indices.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels; at least one class with two samples, and two classes.
    n_pairs : int
        Number of pairs of each kind, 0 or more.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    same : ndarray of shape (n_pairs, 2)
        Index pairs ``(i, j)``, ``i != j``, of samples of one class.
    different : ndarray of shape (n_pairs, 2)
        Index pairs of samples of different classes.
    """
    validate_parameter_constraints(
        {"n_pairs": [Interval(numbers.Integral, 0, None, closed="left")]},
        {"n_pairs": n_pairs},
        caller_name="sample_pairs",
    )
    rng = check_random_state(random_state)
    _, codes = np.unique(column_or_1d(y), return_inverse=True)
    counts = np.bincount(codes)
    if len(counts) < 2 or counts.max() < 2:
        raise ValueError(
            "Pairs need at least two classes and one class with two samples; got "
            f"class counts {counts.tolist()}."
        )
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    # Same pairs: a first sample from a class with two or more, then another
    # sample of its class (offset 1..count-1 from it, so never itself).
    eligible = np.flatnonzero(counts[codes] >= 2)
    i = rng.choice(eligible, n_pairs)
    c = codes[i]
    rank = np.empty(len(codes), dtype=int)  # position of each sample in its class
    rank[order] = np.arange(len(codes)) - np.repeat(starts, counts)
    offset = 1 + (rng.random_sample(n_pairs) * (counts[c] - 1)).astype(int)
    j = order[starts[c] + (rank[i] + offset) % counts[c]]
    same = np.column_stack([i, j])
    # Different pairs: a first sample, then one drawn uniformly outside its class.
    a = rng.randint(len(codes), size=n_pairs)
    ca = codes[a]
    k = (rng.random_sample(n_pairs) * (len(codes) - counts[ca])).astype(int)
    k = np.where(k < starts[ca], k, k + counts[ca])
    different = np.column_stack([a, order[k]])
    return same, different


class PairDistanceDisplay:
    """Histograms of pair dissimilarities: same-class pairs against
    different-class pairs, with the decision threshold.

    A good encoder puts the two histograms apart, on either side of the
    threshold. Use :meth:`from_estimator` or :meth:`from_predictions` to make
    one; all parameters are stored as attributes.

    Parameters
    ----------
    same_distances : ndarray of shape (n_same,)
        Dissimilarities of pairs of one class.
    different_distances : ndarray of shape (n_different,)
        Dissimilarities of pairs of different classes.
    threshold : float, default=None
        Dissimilarity at which a pair is as likely same as different; drawn
        as a vertical line when given.
    name : str, default=None
        Title of the plot.

    Attributes
    ----------
    same_hist_ : list of matplotlib patches
        Bars of the same-class histogram.
    different_hist_ : list of matplotlib patches
        Bars of the different-class histogram.
    threshold_line_ : matplotlib Line2D or None
        The threshold line.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    EmbeddingDisplay : The embedded samples in two dimensions.

    Examples
    --------
    With a fitted ``clf`` and labelled held-out data, draw pairs from them:
    ``PairDistanceDisplay.from_estimator(clf, X_test, y_test)``. From
    dissimilarities computed elsewhere:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sksiamese.plotting import PairDistanceDisplay
    >>> y_same = [1, 1, 1, 0, 0, 0]
    >>> distances = [0.1, 0.3, 0.6, 0.5, 1.2, 1.5]
    >>> disp = PairDistanceDisplay.from_predictions(y_same, distances, threshold=0.55)
    >>> disp.ax_.get_xlabel()
    'pair dissimilarity (lower = more alike)'
    """

    def __init__(
        self, *, same_distances, different_distances, threshold=None, name=None
    ):
        self.same_distances = same_distances
        self.different_distances = different_distances
        self.threshold = threshold
        self.name = name

    def plot(self, ax=None, *, name=None, bins=30, threshold_kw=None):
        """Draw the histograms.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Title; ``self.name`` when None.
        bins : int, default=30
            Number of bins, shared by both histograms.
        threshold_kw : dict, default=None
            Keyword arguments of the threshold line (``Axes.axvline``).

        Returns
        -------
        display : PairDistanceDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        _check_threshold(self.threshold)
        self.ax_, self.figure_ = _axes(ax)
        name = self.name if name is None else name
        same = np.asarray(self.same_distances, dtype=float)
        different = np.asarray(self.different_distances, dtype=float)
        edges = np.histogram_bin_edges(np.r_[same, different], bins=bins)
        common = dict(bins=edges, density=True, alpha=0.55, histtype="stepfilled")
        self.same_hist_ = self.ax_.hist(
            same, color="C0", label=f"same ({len(same)} pairs)", **common
        )[2]
        self.different_hist_ = self.ax_.hist(
            different,
            color="C1",
            label=f"different ({len(different)} pairs)",
            **common,
        )[2]
        self.threshold_line_ = None
        if self.threshold is not None:
            kw = {
                "color": "k",
                "linestyle": "--",
                "label": f"threshold ({self.threshold:.3g})",
                **(threshold_kw or {}),
            }
            self.threshold_line_ = self.ax_.axvline(self.threshold, **kw)
        self.ax_.set(xlabel="pair dissimilarity (lower = more alike)", ylabel="density")
        if name is not None:
            self.ax_.set_title(name)
        self.ax_.legend(loc="best")
        return self

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        n_pairs=1000,
        threshold="auto",
        random_state=None,
        name=None,
        ax=None,
        bins=30,
        threshold_kw=None,
    ):
        """Plot the pair dissimilarities of a fitted estimator.

        For a :class:`~sksiamese.SiameseClassifier`, random same-class and
        different-class pairs are drawn from the labelled samples ``(X, y)``;
        for a :class:`~sksiamese.SiamesePairClassifier`, ``(X, y)`` are
        labelled pairs and all of them are plotted.

        Parameters
        ----------
        estimator : SiameseClassifier, SiamesePairClassifier or Pipeline
            Fitted; a Pipeline must end in one of the two. A fitted search
            (``GridSearchCV``, ...) stands for its ``best_estimator_``.
        X : array-like
            Samples of shape ``(n_samples, n_features)`` (SiameseClassifier),
            or pairs as in :meth:`SiamesePairClassifier.predict
            <sksiamese.SiamesePairClassifier.predict>`; for example held out.
        y : array-like of shape (n_samples,) or (n_pairs,)
            Class labels of the samples, or 1 / 0 for same / different pairs.
        n_pairs : int, default=1000
            SiameseClassifier only: pairs of each kind, drawn with replacement.
        threshold : "auto", float or None, default="auto"
            ``"auto"``: the estimator's own threshold: ``threshold_`` of a
            SiamesePairClassifier, or where the ``pair_score`` of a
            SiameseClassifier is 0.5. None: no line.
        random_state : int, RandomState instance or None, default=None
            Draws the pairs (SiameseClassifier).
        name : str, default=None
            Title; the estimator's class name when None.
        ax : matplotlib Axes, default=None
        bins : int, default=30
        threshold_kw : dict, default=None

        Returns
        -------
        display : PairDistanceDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_estimator")
        estimator, model = _fitted_siamese(estimator, f"{cls.__name__}.from_estimator")
        if isinstance(threshold, str) and threshold != "auto":
            raise ValueError(
                f"threshold must be 'auto', a number or None; got {threshold!r}."
            )
        y = column_or_1d(y)
        if len(y) != len(X):
            raise ValueError(
                f"X and y have different numbers of samples: {len(X)} and {len(y)}."
            )
        if isinstance(model, SiamesePairClassifier):
            # decision_function is threshold_ minus the dissimilarity.
            d = model.threshold_ - estimator.decision_function(X)
            y_same = y
            if threshold == "auto":
                threshold = model.threshold_
        else:
            same, different = sample_pairs(y, n_pairs, random_state)
            if hasattr(estimator, "steps") and len(estimator) > 1:
                X = estimator[:-1].transform(X)  # the pipeline's preprocessing
            d = model.pair_distance(
                _take(X, np.r_[same[:, 0], different[:, 0]]),
                _take(X, np.r_[same[:, 1], different[:, 1]]),
            )
            y_same = np.r_[np.ones(n_pairs), np.zeros(n_pairs)]
            if threshold == "auto":
                threshold = _half_score_distance(model)
        return cls.from_predictions(
            y_same,
            d,
            threshold=threshold,
            name=type(model).__name__ if name is None else name,
            ax=ax,
            bins=bins,
            threshold_kw=threshold_kw,
        )

    @classmethod
    def from_predictions(
        cls,
        y_same,
        distances,
        *,
        threshold=None,
        name=None,
        ax=None,
        bins=30,
        threshold_kw=None,
    ):
        """Plot given pair dissimilarities, split by whether the pair is same.

        Parameters
        ----------
        y_same : array-like of shape (n_pairs,)
            1 (or True) for a same-class pair, 0 for a different-class pair.
        distances : array-like of shape (n_pairs,)
            Dissimilarity of each pair (lower = more alike).
        threshold : float, default=None
            Where to draw the threshold line; None: no line.
        name : str, default=None
        ax : matplotlib Axes, default=None
        bins : int, default=30
        threshold_kw : dict, default=None

        Returns
        -------
        display : PairDistanceDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_predictions")
        _check_threshold(threshold)
        y_same = column_or_1d(y_same)
        distances = column_or_1d(distances).astype(float)
        assert_all_finite(distances, input_name="distances")
        if len(y_same) != len(distances):
            raise ValueError(
                "y_same and distances have different lengths: "
                f"{len(y_same)} and {len(distances)}."
            )
        values = set(np.unique(y_same).tolist())
        if not values <= {0, 1}:
            raise ValueError(
                f"y_same must hold 1 (same) and 0 (different); got {sorted(values)}."
            )
        same = y_same.astype(bool)
        disp = cls(
            same_distances=distances[same],
            different_distances=distances[~same],
            threshold=threshold,
            name=name,
        )
        return disp.plot(ax=ax, bins=bins, threshold_kw=threshold_kw)


def _half_score_distance(model):
    """Dissimilarity at which the calibrated pair score is 0.5, or None."""
    calibration = getattr(model, "pair_calibration_", None)
    if calibration is None:
        return None
    slope, intercept = calibration
    if slope == 0:
        return None
    return -intercept / slope


class EmbeddingDisplay:
    """The embedded samples in two dimensions, coloured by class.

    Embeddings wider than two are projected on their first two principal
    components. Well-separated clusters mean the encoder has learned to tell
    the classes apart. Use :meth:`from_estimator` or :meth:`from_embedding`;
    all parameters are stored as attributes.

    Parameters
    ----------
    embedding : ndarray of shape (n_samples, 2)
        The two coordinates to plot.
    y : ndarray of shape (n_samples,), default=None
        Labels used for colours.
    explained_variance_ratio : ndarray of shape (2,), default=None
        Variance share of each axis when the embedding was projected by PCA.
    name : str, default=None
        Title of the plot.

    Attributes
    ----------
    scatters_ : list of matplotlib PathCollection
        One scatter per class (one in all without ``y``).
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    See Also
    --------
    PairDistanceDisplay : Same and different pair dissimilarities.

    Examples
    --------
    With a fitted ``clf``: ``EmbeddingDisplay.from_estimator(clf, X, y)``.
    From embeddings computed elsewhere:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksiamese.plotting import EmbeddingDisplay
    >>> rng = np.random.RandomState(0)
    >>> E = np.r_[rng.normal(0, 1, (20, 8)), rng.normal(3, 1, (20, 8))]
    >>> disp = EmbeddingDisplay.from_embedding(E, [0] * 20 + [1] * 20)
    >>> len(disp.scatters_)
    2
    """

    def __init__(self, *, embedding, y=None, explained_variance_ratio=None, name=None):
        self.embedding = embedding
        self.y = y
        self.explained_variance_ratio = explained_variance_ratio
        self.name = name

    def plot(self, ax=None, *, name=None, legend=True, scatter_kw=None):
        """Draw the scatter plot.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
        name : str, default=None
            Title; ``self.name`` when None.
        legend : bool, default=True
            Show a legend of the classes (at most 20).
        scatter_kw : dict, default=None
            Keyword arguments of ``Axes.scatter``.

        Returns
        -------
        display : EmbeddingDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        self.ax_, self.figure_ = _axes(ax)
        name = self.name if name is None else name
        E = np.asarray(self.embedding, dtype=float)
        kw = {"s": 14, "alpha": 0.8, "linewidths": 0, **(scatter_kw or {})}
        self.scatters_ = []
        if self.y is None:
            self.scatters_.append(self.ax_.scatter(E[:, 0], E[:, 1], **kw))
        else:
            y = np.asarray(self.y)
            classes = np.unique(y)
            cmap = None
            if len(classes) > 10:
                import matplotlib

                cmap = matplotlib.colormaps["tab20" if len(classes) <= 20 else "turbo"]
            for i, c in enumerate(classes):
                color = f"C{i}" if cmap is None else cmap(i / max(len(classes) - 1, 1))
                m = y == c
                self.scatters_.append(
                    self.ax_.scatter(E[m, 0], E[m, 1], color=color, label=str(c), **kw)
                )
            if legend and len(classes) <= 20:
                self.ax_.legend(title="class", loc="best", markerscale=1.5)
        evr = self.explained_variance_ratio
        if evr is not None:
            xlabel = f"principal component 1 ({evr[0]:.0%} of variance)"
            ylabel = f"principal component 2 ({evr[1]:.0%} of variance)"
        else:
            xlabel, ylabel = "embedding 1", "embedding 2"
        self.ax_.set(xlabel=xlabel, ylabel=ylabel)
        if name is not None:
            self.ax_.set_title(name)
        return self

    @classmethod
    def from_estimator(
        cls, estimator, X, y=None, *, name=None, ax=None, legend=True, scatter_kw=None
    ):
        """Embed ``X`` with a fitted estimator's ``transform`` and plot it.

        Parameters
        ----------
        estimator : SiameseClassifier, SiamesePairClassifier or Pipeline ending in one
            Fitted. A fitted search (``GridSearchCV``, ...) stands for its
            ``best_estimator_``.
        X : array-like of shape (n_samples, n_features)
            Samples (single vectors, also for a SiamesePairClassifier, whose
            Pipeline's steps before it must then take single vectors).
        y : array-like of shape (n_samples,), default=None
            Labels for colours.
        name : str, default=None
            Title; the estimator's class name when None.
        ax : matplotlib Axes, default=None
        legend : bool, default=True
        scatter_kw : dict, default=None

        Returns
        -------
        display : EmbeddingDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_estimator")
        estimator, model = _fitted_siamese(estimator, f"{cls.__name__}.from_estimator")
        E = np.asarray(estimator.transform(X))
        if name is None:
            name = type(model).__name__
        return cls.from_embedding(
            E, y, name=name, ax=ax, legend=legend, scatter_kw=scatter_kw
        )

    @classmethod
    def from_embedding(
        cls, X_embedded, y=None, *, name=None, ax=None, legend=True, scatter_kw=None
    ):
        """Plot given embeddings (projected by PCA when wider than two).

        Parameters
        ----------
        X_embedded : array-like of shape (n_samples, embedding_dim)
        y : array-like of shape (n_samples,), default=None
        name : str, default=None
        ax : matplotlib Axes, default=None
        legend : bool, default=True
        scatter_kw : dict, default=None

        Returns
        -------
        display : EmbeddingDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_embedding")
        E = np.asarray(X_embedded, dtype=float)
        if E.ndim != 2 or len(E) < 2 or E.shape[1] < 1:
            raise ValueError(
                "X_embedded must be a 2-D array of at least two samples and one "
                f"column; got shape {E.shape}."
            )
        if y is not None:
            y = column_or_1d(y)
            if len(y) != len(E):
                raise ValueError(
                    f"X_embedded and y have different numbers of samples: {len(E)} "
                    f"and {len(y)}."
                )
        evr = None
        if E.shape[1] > 2:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=2, svd_solver="full").fit(E)
            E, evr = pca.transform(E), pca.explained_variance_ratio_
        elif E.shape[1] == 1:
            E = np.column_stack([E[:, 0], np.zeros(len(E))])
        disp = cls(embedding=E, y=y, explained_variance_ratio=evr, name=name)
        return disp.plot(ax=ax, legend=legend, scatter_kw=scatter_kw)


class TrainingHistoryDisplay:
    """Training and held-out loss per epoch.

    Use :meth:`from_estimator` (or :meth:`from_history` with a skorch
    ``History``); all parameters are stored as attributes.

    Parameters
    ----------
    train_loss : ndarray of shape (n_epochs,)
    valid_loss : ndarray of shape (n_epochs,), default=None
        Loss on the held-out split, when there was one.
    best_epoch : int, default=None
        Epoch (from 1) of the lowest held-out loss: the weights kept by early
        stopping.
    name : str, default=None
        Title of the plot.

    Attributes
    ----------
    train_line_ : matplotlib Line2D
    valid_line_ : matplotlib Line2D or None
    best_line_ : matplotlib Line2D or None
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    With a fitted ``clf``: ``TrainingHistoryDisplay.from_estimator(clf)``.
    From a list of per-epoch records (as in a skorch ``History``):

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sksiamese.plotting import TrainingHistoryDisplay
    >>> history = [
    ...     {"train_loss": 0.9, "valid_loss": 0.8},
    ...     {"train_loss": 0.5, "valid_loss": 0.6},
    ...     {"train_loss": 0.3, "valid_loss": 0.65},
    ... ]
    >>> TrainingHistoryDisplay.from_history(history).best_epoch
    2
    """

    def __init__(self, *, train_loss, valid_loss=None, best_epoch=None, name=None):
        self.train_loss = train_loss
        self.valid_loss = valid_loss
        self.best_epoch = best_epoch
        self.name = name

    def plot(self, ax=None, *, name=None, logy=False):
        """Draw the loss curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
        name : str, default=None
            Title; ``self.name`` when None.
        logy : bool, default=False
            Logarithmic loss axis.

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        _check_matplotlib(f"{type(self).__name__}.plot")
        self.ax_, self.figure_ = _axes(ax)
        name = self.name if name is None else name
        train = np.asarray(self.train_loss, dtype=float)
        epochs = np.arange(1, len(train) + 1)
        (self.train_line_,) = self.ax_.plot(
            epochs, train, color="C0", marker=".", label="training loss"
        )
        self.valid_line_ = None
        if self.valid_loss is not None:
            valid = np.asarray(self.valid_loss, dtype=float)
            (self.valid_line_,) = self.ax_.plot(
                epochs, valid, color="C1", marker=".", label="held-out loss"
            )
        self.best_line_ = None
        if self.best_epoch is not None:
            self.best_line_ = self.ax_.axvline(
                self.best_epoch,
                color="k",
                linestyle=":",
                label=f"best epoch ({self.best_epoch})",
            )
        if logy:
            self.ax_.set_yscale("log")
        self.ax_.set(xlabel="epoch", ylabel="loss")
        if len(epochs) <= 20:
            self.ax_.set_xticks(epochs)
        if name is not None:
            self.ax_.set_title(name)
        self.ax_.legend(loc="best")
        return self

    @classmethod
    def from_estimator(cls, estimator, *, name=None, ax=None, logy=False):
        """Plot the ``history_`` of a fitted estimator.

        Parameters
        ----------
        estimator : SiameseClassifier, SiamesePairClassifier or Pipeline ending in one
            Fitted. A fitted search (``GridSearchCV``, ...) stands for its
            ``best_estimator_``.
        name : str, default=None
            Title; the estimator's class name when None.
        ax : matplotlib Axes, default=None
        logy : bool, default=False

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_estimator")
        estimator, model = _fitted_siamese(estimator, f"{cls.__name__}.from_estimator")
        name = type(model).__name__ if name is None else name
        return cls.from_history(model.history_, name=name, ax=ax, logy=logy)

    @classmethod
    def from_history(cls, history, *, name=None, ax=None, logy=False):
        """Plot a skorch ``History`` (or a list of per-epoch dicts).

        Parameters
        ----------
        history : skorch.History or list of dict
            Per-epoch records with ``"train_loss"``, and ``"valid_loss"`` /
            ``"valid_loss_best"`` when there was a held-out split. The best
            epoch is the last flagged ``"valid_loss_best"``, else that of the
            lowest finite ``"valid_loss"``; none when no held-out loss is
            finite.
        name : str, default=None
        ax : matplotlib Axes, default=None
        logy : bool, default=False

        Returns
        -------
        display : TrainingHistoryDisplay
        """
        _check_matplotlib(f"{cls.__name__}.from_history")
        records = list(history)
        if not records or any("train_loss" not in r for r in records):
            raise ValueError("history must hold a 'train_loss' for every epoch.")
        train = np.array([r["train_loss"] for r in records], dtype=float)
        valid = best = None
        if all("valid_loss" in r for r in records):
            valid = np.array([r["valid_loss"] for r in records], dtype=float)
            finite = np.isfinite(valid)
            if finite.any():  # else no epoch is best (a diverged run, say)
                best = int(np.argmin(np.where(finite, valid, np.inf))) + 1
            flagged = [i for i, r in enumerate(records, 1) if r.get("valid_loss_best")]
            if flagged:
                best = flagged[-1]
        disp = cls(train_loss=train, valid_loss=valid, best_epoch=best, name=name)
        return disp.plot(ax=ax, logy=logy)
