"""Behaviour of SiamesePairClassifier on pairs of digit images."""

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import fbeta_score, log_loss, roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from skorch.callbacks import Callback

from sksiamese import SiamesePairClassifier
from sksiamese._pair_classifier import pair_items

SMALL = dict(
    hidden_layer_sizes=(32,), embedding_dim=8, max_epochs=15, lr=3e-3, random_state=0
)
TINY = dict(hidden_layer_sizes=(16,), embedding_dim=4, max_epochs=3, random_state=0)


def make_pairs(images, digits, n_pairs, same_fraction, rng):
    """Pairs of distinct images, ``same_fraction`` of them of one digit."""
    a = rng.randint(len(images), size=n_pairs)
    same = rng.random_sample(n_pairs) < same_fraction
    b = np.empty(n_pairs, dtype=int)
    for i in range(n_pairs):
        match = digits == digits[a[i]]
        pool = np.flatnonzero(match if same[i] else ~match)
        b[i] = rng.choice(pool[pool != a[i]])
    return np.stack([images[a], images[b]], axis=1), same.astype(int)


@pytest.fixture(scope="module")
def digit_pairs():
    """Training and test pairs built from disjoint sets of digit images."""
    images, digits = load_digits(return_X_y=True)
    img_train, img_test, dig_train, dig_test = train_test_split(
        images, digits, test_size=0.5, stratify=digits, random_state=0
    )
    rng = np.random.RandomState(0)
    X_train, y_train = make_pairs(img_train, dig_train, 600, 0.5, rng)
    X_test, y_test = make_pairs(img_test, dig_test, 600, 0.5, rng)
    return X_train, y_train, X_test, y_test, img_test


@pytest.fixture(scope="module")
def fitted(digit_pairs):
    """One fitted model shared by the tests that only read it."""
    X_train, y_train = digit_pairs[:2]
    return SiamesePairClassifier(**SMALL).fit(X_train, y_train)


def test_learns_digit_pairs_and_surface_is_consistent(fitted, digit_pairs):
    _, _, X_test, y_test, _ = digit_pairs
    assert fitted.classes_.tolist() == [0, 1]
    assert fitted.n_features_in_ == 128
    assert fitted.score(X_test, y_test) > 0.8
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert roc_auc_score(y_test, proba[:, 1]) > 0.85
    # Probabilities are calibrated, not pinned at 0 and 1.
    assert 0.6 < proba.max(1).mean() < 0.999
    y_pred = fitted.predict(X_test)
    assert set(y_pred.tolist()) == {0, 1}
    # The default threshold is where P(same) = 0.5.
    np.testing.assert_array_equal(y_pred, proba.argmax(1))
    decision = fitted.decision_function(X_test)
    np.testing.assert_array_equal(decision > 0, y_pred == 1)
    # Higher decision = more alike = smaller distance between the two sides.
    d = fitted.pair_distance(X_test[:, 0], X_test[:, 1])
    np.testing.assert_allclose(decision, fitted.threshold_ - d, rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(proba[np.argsort(decision), 1]) >= 0)


def test_pair_distance_takes_single_vectors_only(fitted, digit_pairs):
    # Pairs (either layout) would be embedded side by side and compared as
    # such: numbers without a meaning. They are refused.
    X_test = digit_pairs[2]
    side_by_side = X_test.reshape(len(X_test), -1)
    for X1 in (X_test, side_by_side):
        with pytest.raises(ValueError, match="X1 must hold single vectors of 64"):
            fitted.pair_distance(X1, X_test[:, 1])
    with pytest.raises(ValueError, match="X2 must hold single vectors"):
        fitted.pair_distance(X_test[:, 0], side_by_side)


def test_transform_embeds_single_vectors_and_pairs(fitted, digit_pairs):
    X_test, img_test = digit_pairs[2], digit_pairs[4]
    width = 8 * SMALL["embedding_dim"]  # 8 members, side by side
    single = fitted.transform(img_test[:5])
    assert single.shape == (5, width) and single.dtype == np.float64
    pairs = fitted.transform(X_test[:5])
    assert pairs.shape == (5, 2, width)
    np.testing.assert_allclose(pairs[:, 1], fitted.transform(X_test[:5, 1]))
    side_by_side = fitted.transform(X_test[:5].reshape(5, -1))
    np.testing.assert_allclose(side_by_side, pairs.reshape(5, 2 * width))


def test_layouts_and_bool_labels_give_the_same_model(digit_pairs):
    X, y = digit_pairs[0][:200], digit_pairs[1][:200]
    stacked = SiamesePairClassifier(**TINY).fit(X, y)
    flat = SiamesePairClassifier(**TINY).fit(X.reshape(len(X), -1), y.astype(bool))
    assert flat.n_features_in_ == stacked.n_features_in_ == 128
    X_test = digit_pairs[2][:50]
    for X_query in (X_test, X_test.reshape(len(X_test), -1)):
        np.testing.assert_array_equal(
            stacked.predict_proba(X_query), flat.predict_proba(X_query)
        )
    assert stacked.threshold_ == flat.threshold_


def test_auto_batch_size_on_few_pairs_is_the_default_128(digit_pairs):
    X, y = digit_pairs[0][:200], digit_pairs[1][:200]
    auto = SiamesePairClassifier(batch_size="auto", **TINY).fit(X, y)
    given = SiamesePairClassifier(**TINY).fit(X, y)
    assert auto.batch_size_ == given.batch_size_ == auto.net_.batch_size == 128
    np.testing.assert_array_equal(auto.predict_proba(X), given.predict_proba(X))


def test_auto_batch_size_grows_only_without_the_group_term():
    # The group term compares every vector of a batch with every other: its
    # cost grows with the square of the batch, so "auto" keeps 128 with it.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(51_200, 2, 3)).astype(np.float32)
    y = rng.randint(2, size=51_200)
    params = dict(TINY, n_members=1, max_epochs=1, early_stopping=False)
    params.update(batch_size="auto", validation_fraction=0.0)
    lean = SiamesePairClassifier(group_weight=0.0, **params).fit(X, y)
    assert lean.batch_size_ == lean.net_.batch_size == 256
    assert lean.net_.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-3 * 2**0.75)
    grouped = SiamesePairClassifier(**params).fit(X, y)
    assert grouped.batch_size_ == grouped.net_.batch_size == 128


def test_scaling_is_fitted_on_the_vectors_of_both_sides(digit_pairs):
    X, y = digit_pairs[0][:100], digit_pairs[1][:100]
    vectors = X.reshape(-1, X.shape[2])
    # The default keeps the geometry of the vectors: one mean and scale.
    clf = SiamesePairClassifier(**TINY, validation_fraction=0).fit(X, y)
    assert clf._scaler.scaling == "global"
    np.testing.assert_allclose(clf._scaler.center_, vectors.mean())
    np.testing.assert_allclose(clf._scaler.scale_, vectors.std())
    # Robust scaling centres each feature on its median.
    clf = SiamesePairClassifier(**TINY, validation_fraction=0, scaling="robust")
    clf.fit(X, y)
    np.testing.assert_allclose(clf._scaler.center_, np.median(vectors, axis=0))
    clf = SiamesePairClassifier(**TINY, validation_fraction=0, scaling="standard")
    clf.fit(X, y)
    np.testing.assert_allclose(clf._scaler.center_, vectors.mean(0))


class _BatchLabels(Callback):
    def initialize(self):
        self.counts = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            # Rows of the targets: same or not, then the two sides' groups.
            self.counts.append(np.bincount(batch[1][:, 0].cpu().numpy(), minlength=2))


def test_batches_are_balanced_when_same_pairs_are_rare(digit_pairs):
    images, digits = load_digits(return_X_y=True)
    X, y = make_pairs(images, digits, 400, 0.1, np.random.RandomState(1))
    recorder = _BatchLabels()
    clf = SiamesePairClassifier(
        **TINY, batch_size=32, validation_fraction=0, callbacks=[recorder]
    )
    clf.fit(X, y)
    (recorder,) = [cb for _, cb in clf.net_.callbacks_ if isinstance(cb, _BatchLabels)]
    counts = np.array(recorder.counts)
    assert len(counts) == clf.n_epochs_ * int(np.ceil(len(X) / 32))
    np.testing.assert_array_equal(counts, 16)


def test_blanks_are_accepted(digit_pairs):
    X, y = digit_pairs[0][:200].copy(), digit_pairs[1][:200]
    X[::7, 1, :5] = np.nan
    clf = SiamesePairClassifier(**TINY).fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()
    # A blank is flagged, so it is not read as the feature's mean value.
    np.testing.assert_array_equal(clf._scaler.blank_columns_, np.arange(5))
    vector = X[:1, 0].copy()
    vector[0, :5] = clf._scaler.center_
    blank = vector.copy()
    blank[0, :5] = np.nan
    assert not np.allclose(clf.transform(vector), clf.transform(blank))


# -- calibrate_threshold -------------------------------------------------------


def _rates(y, y_pred):
    same = y == 1
    return (y_pred[same] == 1).mean(), (y_pred[~same] == 0).mean()


def _f2(y, y_pred):
    tp = np.sum((y == 1) & (y_pred == 1))
    fn, fp = np.sum((y == 1) & (y_pred == 0)), np.sum((y == 0) & (y_pred == 1))
    return 5 * tp / (5 * tp + 4 * fn + fp)


def _all_predictions(d):
    """The predictions of every threshold between the distinct distances."""
    s = np.unique(d)
    cuts = np.r_[s[0] - 1, (s[:-1] + s[1:]) / 2, s[-1] + 1]
    return [(d < t).astype(int) for t in cuts]


@pytest.fixture(scope="module")
def calibration(fitted, digit_pairs):
    X_test, y_test = digit_pairs[2:4]
    d = fitted.pair_distance(X_test[:, 0], X_test[:, 1])
    return X_test, y_test, _all_predictions(d)


def test_calibrate_accuracy_and_f_beta_find_the_best_threshold(fitted, calibration):
    X, y, candidates = calibration
    clf = copy.deepcopy(fitted)
    proba = clf.predict_proba(X)
    assert clf.calibrate_threshold(X, y, strategy="accuracy") is clf
    best = max(np.mean(y == p) for p in candidates)
    assert clf.score(X, y) == best
    assert clf.score(X, y) >= fitted.score(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)

    clf.calibrate_threshold(X, y, strategy="f_beta", beta=2.0)
    best = max(_f2(y, p) for p in candidates)
    assert fbeta_score(y, clf.predict(X), beta=2.0) == pytest.approx(best)


@pytest.mark.parametrize("min_rate", [0.8, 0.99])
def test_calibrate_max_tpr_and_max_tnr_respect_their_bound(
    fitted, calibration, min_rate
):
    X, y, candidates = calibration
    rates = [_rates(y, p) for p in candidates]
    clf = copy.deepcopy(fitted)

    tpr, tnr = _rates(
        y, clf.calibrate_threshold(X, y, "max_tpr", min_tnr=min_rate).predict(X)
    )
    assert tnr >= min_rate
    assert tpr == max(r[0] for r in rates if r[1] >= min_rate)

    tpr, tnr = _rates(
        y, clf.calibrate_threshold(X, y, "max_tnr", min_tpr=min_rate).predict(X)
    )
    assert tpr >= min_rate
    assert tnr == max(r[1] for r in rates if r[0] >= min_rate)
    np.testing.assert_array_equal(clf.decision_function(X) > 0, clf.predict(X) == 1)


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, msg",
    [
        (
            np.zeros((6, 3, 4)),
            [0, 1] * 3,
            "X of shape (6, 3, 4) is not a set of pairs: its second axis must "
            "have length 2, the two sides of each pair, as in "
            "(n_pairs, 2, n_features).",
        ),
        (
            np.zeros((6, 5)),
            [0, 1] * 3,
            "X has 5 feature(s) per row, an odd number: a row must hold the two "
            "vectors of a pair side by side",
        ),
        (
            np.zeros((6, 4)),
            [1, 2] * 3,
            "y must be 1 (or True) for pairs of the same kind and 0 (or False) "
            "for different pairs; got labels [1, 2].",
        ),
        (
            np.zeros((6, 4)),
            ["same", "different"] * 3,
            "got labels ['different', 'same'].",
        ),
        (
            np.zeros((6, 4)),
            [0, 1, 2] * 2,
            "Only binary classification is supported: y must be 1 (or True) for "
            "pairs of the same kind and 0 (or False) for different pairs; got a "
            "multiclass target with labels [0, 1, 2].",
        ),
        (
            np.zeros((6, 4)),
            [1] * 6,
            "SiamesePairClassifier.fit needs both same (1) and different (0) "
            "pairs in y; got only one class: [1].",
        ),
        (np.zeros((6, 4)), [0.5, 1.5] * 3, "Unknown label type: continuous"),
        (
            np.zeros((0, 2, 4)),
            [],
            "Found array with 0 sample(s) (shape=(0, 8)) while a minimum of 2 is "
            "required by SiamesePairClassifier.",
        ),
    ],
)
def test_bad_training_data_is_refused(X, y, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        SiamesePairClassifier(**TINY).fit(X, y)


def test_bad_inputs_after_fit_are_refused(fitted, digit_pairs):
    X, y = digit_pairs[2][:20], digit_pairs[3][:20]
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 64 features, but SiamesePairClassifier is expecting 128 "
            "features as input."
        ),
    ):
        fitted.predict(X[:, 0])
    with pytest.raises(ValueError, match=re.escape("its second axis must have")):
        fitted.predict_proba(np.concatenate([X, X[:, :1]], axis=1))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 10 features, but SiamesePairClassifier is expecting 128 "
            "features as input (pairs side by side), or 64 (single vectors)."
        ),
    ):
        fitted.transform(X[:, 0, :10])
    # No pairs, in either layout: scikit-learn's message for an empty X.
    msg = (
        "Found array with 0 sample(s) (shape=(0, 128)) while a minimum of 1 is "
        "required by SiamesePairClassifier."
    )
    for empty in (X[:0], X[:0].reshape(0, 128)):
        for method in ("predict", "predict_proba", "decision_function", "transform"):
            with pytest.raises(ValueError, match=re.escape(msg)):
                getattr(fitted, method)(empty)
    clf = copy.deepcopy(fitted)
    for kwargs, msg in [
        (
            dict(strategy="recall"),
            "strategy must be one of ('balanced_accuracy', 'accuracy', "
            "'f_beta', 'max_tpr', 'max_tnr'); got 'recall'.",
        ),
        (dict(beta=0), "beta must be a positive number; got 0."),
        (dict(min_tnr=1.5), "min_tnr must be in [0, 1]; got 1.5."),
        (dict(min_tpr=-0.1), "min_tpr must be in [0, 1]; got -0.1."),
    ]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            clf.calibrate_threshold(X, y, **kwargs)
    with pytest.raises(ValueError, match=re.escape("got labels [0, 2].")):
        clf.calibrate_threshold(X, y * 2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "SiamesePairClassifier.calibrate_threshold needs both same (1) and "
            "different (0) pairs in y"
        ),
    ):
        clf.calibrate_threshold(X, np.ones(len(X)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "SiamesePairClassifier.calibrate_threshold needs at least one pair; "
            "got y with 0 samples (shape=(0,))."
        ),
    ):
        clf.calibrate_threshold(X[:0], y[:0])
    with pytest.raises(
        ValueError,
        match=re.escape("X and y have different numbers of pairs: 20 and 19."),
    ):
        clf.calibrate_threshold(X, y[:-1])
    assert clf.threshold_ == fitted.threshold_


def test_transform_names_the_image_shape_of_fit(digit_pairs):
    # Single images of another shape than those of fit are no pairs either,
    # but what is wrong with them is their shape, as SiameseClassifier says.
    X, y = digit_pairs[0][:40], digit_pairs[1][:40]
    clf = SiamesePairClassifier(**{**TINY, "max_epochs": 1}, image_shape=(8, 8))
    clf.fit(X, y)
    np.testing.assert_array_equal(
        clf.transform(X[:3, 0].reshape(3, 8, 8)), clf.transform(X[:3, 0])
    )
    for images, shape in [
        (np.zeros((3, 5, 5)), (1, 5, 5)),
        (np.zeros((3, 3, 8, 8)), (3, 8, 8)),
    ]:
        msg = (
            f"X has images of shape {shape}, but SiamesePairClassifier was "
            "fitted on images of shape (1, 8, 8)."
        )
        with pytest.raises(ValueError, match=re.escape(msg)):
            clf.transform(images)


# -- scikit-learn tools, pickling ----------------------------------------------


def test_grid_search_over_loss_and_cross_val_score(digit_pairs):
    X, y = digit_pairs[0][:200], digit_pairs[1][:200]
    search = GridSearchCV(
        SiamesePairClassifier(**TINY),
        {"loss": ["contrastive", "bce"]},
        cv=2,
        scoring="roc_auc",
    ).fit(X, y)
    assert search.best_params_["loss"] in ("contrastive", "bce")
    # 0.854 and 0.857 ROC AUC when written (the encoder before training already
    # ranks pixel pairs at 0.84: this shows the search scores pairs the right
    # way round, not how much three epochs learn).
    assert (search.cv_results_["mean_test_score"] > 0.7).all()
    assert search.predict(digit_pairs[2][:10]).shape == (10,)
    scores = cross_val_score(
        SiamesePairClassifier(**TINY, loss="bce"), X.reshape(len(X), -1), y, cv=2
    )
    # Accuracy 0.74 and 0.81 when written; half the pairs are the same digit.
    assert scores.shape == (2,) and (scores > 0.65).all()


def test_pickle_round_trip(fitted, digit_pairs):
    X_test = digit_pairs[2]
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(
        restored.predict_proba(X_test), fitted.predict_proba(X_test)
    )
    np.testing.assert_array_equal(restored.predict(X_test), fitted.predict(X_test))
    assert restored.threshold_ == fitted.threshold_
    assert restored.get_params() == fitted.get_params()


# -- vectors shared by several pairs -------------------------------------------


def test_every_held_out_pair_has_a_vector_no_training_pair_holds(digit_pairs):
    X, y = digit_pairs[:2]
    items = pair_items(X)
    assert len(np.unique(items)) < 2 * len(X)  # vectors recur in these pairs
    clf = SiamesePairClassifier(validation_fraction=0.1)
    train, held = clf._holdout_split(y, items, np.random.RandomState(0))
    assert len(np.intersect1d(train, held)) == 0
    assert len(train) + len(held) == len(X)
    # Every held-out pair has a side that no training pair holds.
    seen = np.isin(items[held], items[train])
    assert not seen.all(axis=1).any()
    assert seen.any()  # the other side may have been seen
    assert len(held) >= 0.1 * len(X)
    assert 0.3 < y[held].mean() < 0.7
    # Vectors that recur leave whole pairs out of training: about twice the
    # held-out share here, not more.
    assert len(train) > 0.75 * len(X)


def test_without_shared_vectors_the_split_is_a_stratified_one():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 2, 3))
    y = (np.arange(200) % 4 == 0).astype(int)
    clf = SiamesePairClassifier(validation_fraction=0.2)
    train, held = clf._holdout_split(y, pair_items(X), rng)
    assert len(held) == 40
    assert y[held].sum() == 10


def test_a_held_out_loss_without_early_stopping_does_not_warn():
    # validation_fraction holds pairs out to calibrate on, with early stopping
    # or without; without it, their loss is a record, not a stopping rule, and
    # max_epochs a fixed budget that ends nothing early.
    rng = np.random.RandomState(0)
    A, y = rng.normal(size=(300, 4)), rng.randint(2, size=300)
    X = np.stack([A, np.where(y[:, None] == 1, A + 0.1, -A)], axis=1)
    params = dict(TINY, n_members=1, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = SiamesePairClassifier(early_stopping=False, **params).fit(X, y)
    assert clf.n_epochs_ == clf.max_epochs
    assert "valid_loss" in clf.history_[-1]
    with pytest.warns(ConvergenceWarning, match="stopped after max_epochs=3 epochs"):
        SiamesePairClassifier(early_stopping=True, **params).fit(X, y)


def test_groups_and_members_beat_the_untrained_distance_on_digit_pairs(digit_pairs):
    # Real data: pairs of scikit-learn's digit images (test pairs from images
    # never seen in training). The groups that the same pairs imply add
    # comparisons the pairs do not make; the trained model ranks the test
    # pairs better than the plain distance of the pixels, and better than
    # training on the pairs alone.
    X_train, y_train, X_test, y_test, _ = digit_pairs
    raw = roc_auc_score(y_test, -np.linalg.norm(X_test[:, 0] - X_test[:, 1], axis=1))
    auc = {}
    for weight in (0.0, 1.0):
        clf = SiamesePairClassifier(group_weight=weight, **SMALL)
        clf.fit(X_train, y_train)
        auc[weight] = roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1])
    assert auc[1.0] > auc[0.0], auc
    assert auc[1.0] > raw + 0.05, (auc, raw)


def test_few_training_pairs_give_probabilities_that_are_not_overconfident():
    # The probabilities are calibrated on the held-out pairs (10%): from 60
    # pairs, 6. Separated by chance, they gave a slope of -143 and a test
    # log loss of 4.6 (a constant 0.5 has 0.69); a prior on the slope keeps
    # it moderate.
    images, digits = load_digits(return_X_y=True)
    img_train, img_test, dig_train, dig_test = train_test_split(
        images / 16, digits, test_size=0.5, stratify=digits, random_state=0
    )
    losses = []
    for n_pairs in (60, 100, 200):
        for seed in range(4):
            rng = np.random.RandomState(seed)
            X_train, y_train = make_pairs(img_train, dig_train, n_pairs, 0.5, rng)
            X_test, y_test = make_pairs(img_test, dig_test, 500, 0.5, rng)
            clf = SiamesePairClassifier(
                hidden_layer_sizes=(32,), n_members=2, max_epochs=20, random_state=0
            ).fit(X_train, y_train)
            losses.append(log_loss(y_test, clf.predict_proba(X_test)[:, 1]))
    # (With C=1e4: a mean of 1.23 and a largest of 5.2; now 0.52 and 0.84.)
    assert max(losses) < 1.0
    assert np.mean(losses) < 0.6
