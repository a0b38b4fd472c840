"""Displays of sksiamese.plotting, drawn with matplotlib's Agg backend."""

import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiameseClassifier, SiamesePairClassifier
from sksiamese.plotting import (
    EmbeddingDisplay,
    PairDistanceDisplay,
    TrainingHistoryDisplay,
    sample_pairs,
)

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMALL = dict(hidden_layer_sizes=(16,), embedding_dim=4, max_epochs=4, random_state=0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    return SiameseClassifier(**SMALL).fit(X, y)


# -- pairs ------------------------------------------------------------------------


def test_sample_pairs_are_same_and_different():
    y = np.array(["a"] * 5 + ["b"] * 2 + ["c"])  # "c" cannot form a same pair
    same, different = sample_pairs(y, 400, random_state=0)
    assert same.shape == different.shape == (400, 2)
    assert (y[same[:, 0]] == y[same[:, 1]]).all()
    assert (same[:, 0] != same[:, 1]).all()
    assert (y[different[:, 0]] != y[different[:, 1]]).all()
    assert "c" in set(y[different.ravel()])
    assert "c" not in set(y[same.ravel()])
    np.testing.assert_array_equal(sample_pairs(y, 400, random_state=0)[0], same)


def test_sample_pairs_needs_two_classes():
    with pytest.raises(ValueError, match=re.escape("got class counts [3]")):
        sample_pairs([1, 1, 1], 10)


@pytest.mark.parametrize("n_pairs", [2.0, -1, "10", None])
def test_sample_pairs_bad_n_pairs(n_pairs):
    message = "The 'n_pairs' parameter of sample_pairs must be an int in the range"
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        sample_pairs([0, 0, 1, 1], n_pairs)


def test_pair_distance_display_from_estimator(fitted, iris):
    X, y = iris
    disp = PairDistanceDisplay.from_estimator(fitted, X, y, n_pairs=200, random_state=0)
    assert len(disp.same_distances) == len(disp.different_distances) == 200
    # A trained encoder puts same-class pairs closer than different-class ones.
    assert np.median(disp.same_distances) < np.median(disp.different_distances)
    slope, intercept = fitted.pair_calibration_
    assert disp.threshold == pytest.approx(-intercept / slope)
    # At the threshold the calibrated pair score is one half.
    assert 1 / (1 + np.exp(-(intercept + slope * disp.threshold))) == pytest.approx(0.5)
    assert disp.threshold_line_.get_xdata()[0] == pytest.approx(disp.threshold)
    assert disp.ax_.get_title() == "SiameseClassifier"
    assert disp.figure_ is disp.ax_.figure
    labels = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert labels[0] == "same (200 pairs)"
    assert labels[1] == "different (200 pairs)"
    assert labels[2].startswith("threshold (")


def test_pair_distance_display_in_a_pipeline_on_given_axes(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), SiameseClassifier(**SMALL)).fit(X, y)
    _, ax = plt.subplots()
    disp = PairDistanceDisplay.from_estimator(
        pipe, X, y, n_pairs=50, threshold=None, random_state=0, name="pipe", ax=ax
    )
    assert disp.ax_ is ax
    assert disp.threshold_line_ is None
    assert disp.ax_.get_title() == "pipe"


def test_pair_distance_display_from_predictions_and_plot_again():
    y_same = np.array([1, 1, 1, 0, 0])
    d = np.array([0.1, 0.2, 0.3, 1.0, 2.0])
    disp = PairDistanceDisplay.from_predictions(y_same, d, threshold=0.5, bins=4)
    np.testing.assert_array_equal(disp.same_distances, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(disp.different_distances, [1.0, 2.0])
    assert len(disp.same_hist_) == len(disp.different_hist_) == 1  # stepfilled
    _, ax = plt.subplots()
    assert disp.plot(ax=ax, name="again").ax_ is ax
    assert ax.get_title() == "again"


@pytest.mark.parametrize(
    "y_same, d, message",
    [
        ([1, 2], [0.1, 0.2], "y_same must hold 1 (same) and 0 (different); got [1, 2]"),
        ([1, 0], [0.1], "y_same and distances have different lengths: 2 and 1"),
    ],
)
def test_pair_distance_display_bad_predictions(y_same, d, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PairDistanceDisplay.from_predictions(y_same, d)


@pytest.mark.parametrize(
    "threshold, error, message",
    [
        ("0.5", TypeError, "threshold must be a number or None; got '0.5' (str)."),
        (True, TypeError, "threshold must be a number or None; got True (bool)."),
        (float("nan"), ValueError, "threshold must be finite; got nan."),
    ],
)
def test_pair_distance_display_bad_threshold(threshold, error, message):
    with pytest.raises(error, match=re.escape(message)):
        PairDistanceDisplay.from_predictions([1, 0], [0.1, 0.9], threshold=threshold)
    display = PairDistanceDisplay(
        same_distances=[0.1], different_distances=[0.9], threshold=threshold
    )
    with pytest.raises(error, match=re.escape(message)):
        display.plot()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_pair_distance_display_refuses_distances_that_are_not_finite(bad):
    # numpy's histogram failed on them, naming an "autodetected range".
    with pytest.raises(ValueError, match="Input distances contains"):
        PairDistanceDisplay.from_predictions([1, 0, 1], [0.1, bad, 0.3])


def test_pair_distance_display_bad_estimator_input(fitted, iris):
    X, y = iris
    with pytest.raises(ValueError, match="different numbers of samples: 150 and 10"):
        PairDistanceDisplay.from_estimator(fitted, X, y[:10])
    with pytest.raises(ValueError, match="threshold must be 'auto'"):
        PairDistanceDisplay.from_estimator(fitted, X, y, threshold="best")
    with pytest.raises(TypeError, match="needs a SiameseClassifier or a Siamese"):
        PairDistanceDisplay.from_estimator(StandardScaler().fit(X), X, y)


@pytest.mark.parametrize(
    "display", [PairDistanceDisplay, EmbeddingDisplay, TrainingHistoryDisplay]
)
def test_displays_need_a_sksiamese_estimator(iris, display):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    data = () if display is TrainingHistoryDisplay else (X, y)
    message = (
        f"{display.__name__}.from_estimator needs a SiameseClassifier or a "
        "SiamesePairClassifier (or a Pipeline ending in one, or a fitted search of "
        "them); got LogisticRegression."
    )
    # Fitted or not, a model of another kind is refused by name.
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    for model in (LogisticRegression(), fitted):
        with pytest.raises(TypeError, match=re.escape(message)):
            display.from_estimator(model, *data)


def test_displays_draw_the_best_estimator_of_a_search(iris):
    from sklearn.model_selection import GridSearchCV

    X, y = iris
    search = GridSearchCV(
        make_pipeline(StandardScaler(), SiameseClassifier(**SMALL)),
        {"siameseclassifier__embedding_dim": [3, 4]},
        cv=2,
    ).fit(X, y)
    best = search.best_estimator_
    embedding = EmbeddingDisplay.from_estimator(search, X, y)
    np.testing.assert_allclose(
        embedding.embedding, EmbeddingDisplay.from_estimator(best, X, y).embedding
    )
    assert embedding.ax_.get_title() == "SiameseClassifier"
    pairs = PairDistanceDisplay.from_estimator(search, X, y, random_state=0)
    np.testing.assert_array_equal(
        pairs.same_distances,
        PairDistanceDisplay.from_estimator(best, X, y, random_state=0).same_distances,
    )
    history = TrainingHistoryDisplay.from_estimator(search)
    assert len(history.train_loss) == len(best[-1].history_)


def test_pair_distance_display_of_a_pair_classifier(iris):
    X, y = iris
    rng = np.random.RandomState(0)
    a, b = rng.randint(len(X), size=(2, 300))
    pairs, same = np.stack([X[a], X[b]], axis=1), (y[a] == y[b]).astype(int)
    clf = SiamesePairClassifier(**SMALL).fit(pairs, same)
    disp = PairDistanceDisplay.from_estimator(clf, pairs, same)
    assert len(disp.same_distances) == same.sum()
    assert len(disp.different_distances) == len(same) - same.sum()
    assert disp.threshold == clf.threshold_
    # Pairs below the threshold are exactly those predicted "same".
    predicted = clf.predict(pairs).astype(bool)
    d = np.empty(len(same))
    d[same == 1], d[same == 0] = disp.same_distances, disp.different_distances
    np.testing.assert_array_equal(d < clf.threshold_, predicted)
    assert disp.ax_.get_title() == "SiamesePairClassifier"
    # Its embeddings of single vectors, and its training history.
    embedding = EmbeddingDisplay.from_estimator(clf, X, y)
    assert embedding.embedding.shape == (150, 2)
    assert embedding.ax_.get_title() == "SiamesePairClassifier"
    history = TrainingHistoryDisplay.from_estimator(clf)
    assert len(history.train_loss) == clf.n_epochs_


# -- embedding ----------------------------------------------------------------------


def test_embedding_display_from_estimator(fitted, iris):
    X, y = iris
    disp = EmbeddingDisplay.from_estimator(fitted, X, y)
    assert disp.embedding.shape == (150, 2)
    assert len(disp.scatters_) == 3
    assert [len(s.get_offsets()) for s in disp.scatters_] == [50, 50, 50]
    legend = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert legend == ["0", "1", "2"]
    # The first axis is the first principal component of the embeddings, and
    # each axis's share of the variance that of its singular value.
    E = fitted.transform(X)
    E = E - E.mean(0)
    _, s, vt = np.linalg.svd(E, full_matrices=False)
    assert abs(np.corrcoef(E @ vt[0], disp.embedding[:, 0])[0, 1]) == pytest.approx(1)
    share = s[:2] ** 2 / (s**2).sum()
    np.testing.assert_allclose(disp.explained_variance_ratio, share, rtol=1e-6)
    assert (
        disp.ax_.get_xlabel() == f"principal component 1 ({share[0]:.0%} of variance)"
    )
    assert (
        disp.ax_.get_ylabel() == f"principal component 2 ({share[1]:.0%} of variance)"
    )


def test_embedding_display_from_embedding_shapes():
    rng = np.random.RandomState(0)
    two = EmbeddingDisplay.from_embedding(rng.rand(10, 2), ["a"] * 5 + ["b"] * 5)
    assert two.explained_variance_ratio is None
    assert two.ax_.get_xlabel() == "embedding 1"
    one = EmbeddingDisplay.from_embedding(rng.rand(10, 1))
    np.testing.assert_array_equal(one.embedding[:, 1], 0)
    assert len(one.scatters_) == 1 and one.ax_.get_legend() is None
    many = EmbeddingDisplay.from_embedding(rng.rand(60, 3), np.arange(60) % 30)
    assert len(many.scatters_) == 30 and many.ax_.get_legend() is None
    with pytest.raises(ValueError, match="different numbers of samples: 10 and 3"):
        EmbeddingDisplay.from_embedding(rng.rand(10, 3), [0, 1, 0])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X_embedded must be a 2-D array of at least two samples and one column; "
            "got shape (5, 0)."
        ),
    ):
        EmbeddingDisplay.from_embedding(np.zeros((5, 0)), [0, 0, 1, 1, 1])


def test_embedding_display_with_pandas_output(iris):
    pytest.importorskip("pandas")
    X, y = iris
    model = SiameseClassifier(**SMALL).set_output(transform="pandas").fit(X, y)
    disp = EmbeddingDisplay.from_estimator(model, X, y)
    assert disp.embedding.shape == (150, 2)


# -- history ------------------------------------------------------------------------


def test_training_history_display(iris):
    fitted = SiameseClassifier(early_stopping=True, **SMALL).fit(*iris)
    disp = TrainingHistoryDisplay.from_estimator(fitted)
    n = fitted.n_epochs_
    np.testing.assert_allclose(disp.train_loss, fitted.history_[:, "train_loss"])
    np.testing.assert_allclose(disp.valid_loss, fitted.history_[:, "valid_loss"])
    assert disp.best_epoch == int(np.argmin(disp.valid_loss)) + 1
    assert disp.best_line_.get_xdata()[0] == disp.best_epoch
    np.testing.assert_array_equal(disp.train_line_.get_xdata(), np.arange(1, n + 1))
    assert disp.ax_.get_xlabel() == "epoch"
    assert disp.ax_.get_yscale() == "linear"


def test_training_history_without_held_out_split(iris):
    X, y = iris
    model = SiameseClassifier(**SMALL).fit(X, y)  # no early stopping: no split
    pipe = make_pipeline(model)
    disp = TrainingHistoryDisplay.from_estimator(pipe, logy=True)
    assert disp.valid_loss is None and disp.valid_line_ is None
    assert disp.best_epoch is None and disp.best_line_ is None
    assert disp.ax_.get_yscale() == "log"


def test_training_history_from_a_list():
    history = [{"train_loss": 1.0}, {"train_loss": 0.5}]
    disp = TrainingHistoryDisplay.from_history(history, name="run")
    np.testing.assert_array_equal(disp.train_loss, [1.0, 0.5])
    with pytest.raises(ValueError, match="'train_loss' for every epoch"):
        TrainingHistoryDisplay.from_history([{"valid_loss": 1.0}])


def test_training_history_without_a_finite_held_out_loss():
    nan = float("nan")
    history = [
        {"train_loss": 1.0, "valid_loss": nan},
        {"train_loss": nan, "valid_loss": nan},
    ]
    disp = TrainingHistoryDisplay.from_history(history)
    assert disp.best_epoch is None and disp.best_line_ is None
    assert np.isnan(disp.valid_loss).all()
    # A NaN epoch is never the best one.
    history[0]["valid_loss"] = 0.5
    assert TrainingHistoryDisplay.from_history(history).best_epoch == 1


# -- without matplotlib ---------------------------------------------------------


def test_fitted_estimator_required():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TrainingHistoryDisplay.from_estimator(SiameseClassifier())


@pytest.mark.parametrize(
    "make",
    [
        lambda fitted, X, y: PairDistanceDisplay.from_estimator(fitted, X, y),
        lambda fitted, X, y: EmbeddingDisplay.from_estimator(fitted, X, y),
        lambda fitted, X, y: TrainingHistoryDisplay.from_estimator(fitted),
        lambda fitted, X, y: PairDistanceDisplay(
            same_distances=[0.1], different_distances=[1.0]
        ).plot(),
    ],
)
def test_clear_error_without_matplotlib(fitted, iris, monkeypatch, make):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'sksiamese[plot]'")):
        make(fitted, *iris)
