"""Imbalanced records with blanks: the survey generator, decision thresholds,
samplers, reference sets and the encoding of blanks."""

import copy
import re

import numpy as np
import pytest
from imblearn.datasets import make_imbalance
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from imblearn.under_sampling import RandomUnderSampler
from scipy.special import logit
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from sksiamese import SiameseClassifier
from sksiamese.datasets import make_survey

SMALL = dict(hidden_layer_sizes=(32,), embedding_dim=8, max_epochs=15, random_state=0)


@pytest.fixture(scope="module")
def survey():
    """Survey records, 10% cases, split into train, held-out and test thirds."""
    X, y = make_survey(n_samples=900, positive_fraction=0.1, random_state=0)
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, test_size=2 / 3, stratify=y, random_state=0
    )
    X_held, X_test, y_held, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    return X_train, y_train, X_held, y_held, X_test, y_test


@pytest.fixture(scope="module")
def fitted(survey):
    """One binary model shared by the tests that only read it."""
    X_train, y_train, *_ = survey
    return SiameseClassifier(**SMALL).fit(X_train, y_train)


# -- make_survey ----------------------------------------------------------------


def test_make_survey_layout():
    X, y = make_survey(n_samples=2000, n_questions=10, random_state=0)
    # 10 questions: 6 ordinal, 2 yes/no, 2 one-hot groups of 3 to 5 options.
    assert X.dtype == np.float64 and y.dtype.kind == "i"
    assert y.sum() == 100 and set(np.unique(y)) == {0, 1}
    ordinal, binary, groups = X[:, :6], X[:, 6:8], X[:, 8:]
    assert set(np.unique(ordinal[~np.isnan(ordinal)])) == {1, 2, 3, 4, 5}
    assert set(np.unique(binary[~np.isnan(binary)])) == {0, 1}
    assert 6 <= groups.shape[1] <= 10
    # Each answered group has exactly one option; a blank group is blank whole.
    blank = np.isnan(groups)
    sums = np.nansum(groups, axis=1)
    answered = ~blank.any(axis=1)
    assert (sums[answered] >= 1).all()
    frame, _ = make_survey(
        n_samples=2000, n_questions=10, random_state=0, as_frame=True
    )
    names = frame.columns.tolist()
    assert names[:8] == [f"q{i:02d}" for i in range(1, 9)]
    for name in names[8:]:
        assert re.fullmatch(r"q(09|10)=[a-e]", name)
    for q in ("q09", "q10"):
        cols = frame.filter(like=q).to_numpy()
        rows_blank = np.isnan(cols)
        assert (rows_blank.all(1) | ~rows_blank.any(1)).all()
        assert (np.nansum(cols, 1)[~rows_blank.any(1)] == 1).all()


def test_make_survey_is_seeded_and_scales():
    a = make_survey(n_samples=300, random_state=3)
    b = make_survey(n_samples=300, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = make_survey(n_samples=300, random_state=4)
    assert not np.array_equal(a[0], c[0], equal_nan=True)
    X, y = make_survey(n_samples=50_000, n_questions=5, positive_fraction=0.01)
    assert X.shape[0] == 50_000 and y.sum() == 500


def test_make_survey_blanks_carry_signal_only_when_asked():
    X, y = make_survey(n_samples=20_000, blank_rate=0.1, random_state=0)
    blank = np.isnan(X)
    assert abs(blank[y == 0].mean() - 0.1) < 0.01
    # Cases leave the sensitive half of the questions blank far more often.
    per_question_ratio = blank[y == 1].mean(0) / blank[y == 0].mean(0)
    assert (per_question_ratio > 2).sum() >= 5
    X, y = make_survey(
        n_samples=20_000, blank_rate=0.1, informative_blanks=False, random_state=0
    )
    blank = np.isnan(X)
    assert abs(blank[y == 1].mean() - blank[y == 0].mean()) < 0.02
    X, _ = make_survey(n_samples=500, blank_rate=0.0, random_state=0)
    assert not np.isnan(X).any()


def test_make_survey_class_sep_controls_signal():
    X, y = make_survey(
        n_samples=4000, positive_fraction=0.2, blank_rate=0.0, random_state=0
    )
    X0, y0 = make_survey(
        n_samples=4000,
        positive_fraction=0.2,
        class_sep=0.0,
        blank_rate=0.0,
        random_state=0,
    )
    # Mean answers differ between cases and controls only with class_sep > 0.
    gap = np.abs(X[y == 1].mean(0) - X[y == 0].mean(0)).max()
    gap0 = np.abs(X0[y0 == 1].mean(0) - X0[y0 == 0].mean(0)).max()
    assert gap > 3 * gap0


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"n_samples": 1}, ValueError, "n_samples must be at least 2; got 1."),
        ({"n_samples": 2.5}, TypeError, "n_samples must be an int; got 2.5."),
        ({"n_questions": 0}, ValueError, "n_questions must be at least 1; got 0."),
        (
            {"positive_fraction": 1.0},
            ValueError,
            "positive_fraction must be in (0, 1); got 1.0.",
        ),
        ({"class_sep": -1}, ValueError, "class_sep must be at least 0; got -1."),
        ({"blank_rate": 1}, ValueError, "blank_rate must be in [0, 1); got 1."),
        ({"blank_rate": "x"}, TypeError, "blank_rate must be a number; got 'x'."),
        ({"as_frame": 1}, TypeError, "as_frame must be a bool; got 1."),
        (
            {"informative_blanks": "no"},
            TypeError,
            "informative_blanks must be a bool; got 'no'.",
        ),
    ],
)
def test_make_survey_errors(params, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_survey(**params)


# -- decision threshold ---------------------------------------------------------


def test_calibrate_threshold_keeps_the_surface_consistent(fitted, survey):
    X_train, y_train, X_held, y_held, X_test, y_test = survey
    clf = copy.deepcopy(fitted)
    assert clf.threshold_ == 0.5
    proba_before = clf.predict_proba(X_test)
    assert clf.calibrate_threshold(X_held, y_held, "max_tnr", min_tpr=1.0) is clf
    assert 0 < clf.threshold_ < 1
    # predict_proba does not move; predict and decision_function follow the
    # threshold and agree with each other.
    np.testing.assert_array_equal(clf.predict_proba(X_test), proba_before)
    pred, decision = clf.predict(X_test), clf.decision_function(X_test)
    np.testing.assert_array_equal(pred, (decision > 0).astype(int))
    np.testing.assert_array_equal(pred, (proba_before[:, 1] > clf.threshold_))
    assert recall_score(y_held, clf.predict(X_held)) == 1.0
    # New references, or a new fit, start from 0.5 again.
    clf.fit_references(X_train, y_train)
    assert clf.threshold_ == 0.5
    clf.calibrate_threshold(X_held, y_held, "max_tnr", min_tpr=1.0)
    clf.set_params(max_epochs=1).fit(X_train, y_train)
    assert clf.threshold_ == 0.5


def test_calibrate_threshold_above_every_score_of_a_confident_model(fitted, survey):
    # A confident model (here its temperature cut: small digits gave log-odds
    # of 20): with no false alarm allowed and a negative scored highest,
    # nothing is positive and the threshold lies above the highest held-out
    # score, at twice its log-odds. Its probability rounds to 1, whose
    # log-odds were taken for the threshold's: infinite, and decision_function
    # was -inf for every sample (roc_auc_score refused it).
    _, _, X_held, y_held, X_test, y_test = survey
    clf = copy.deepcopy(fitted)
    clf.temperature_ /= 20
    log_odds = clf.decision_function(X_test)
    held_log_odds = clf.decision_function(X_held)
    assert held_log_odds.max() > 20
    y_noisy = y_held.copy()
    y_noisy[np.argmax(held_log_odds)] = 0
    clf.calibrate_threshold(X_held, y_noisy, "max_tpr", min_tnr=1.0)
    assert not clf.predict(X_held).any()
    # The scores only move by the threshold's log-odds, a finite number.
    shift = clf.decision_function(X_test) - log_odds
    assert np.isfinite(shift).all()
    np.testing.assert_allclose(shift, shift[0])
    assert shift[0] < -2 * held_log_odds.max() + 1e-9
    # A threshold set by hand is followed as before.
    clf.threshold_ = 0.25
    np.testing.assert_allclose(
        clf.decision_function(X_test), log_odds - logit(0.25), rtol=1e-12
    )


@pytest.mark.parametrize("strategy", ["balanced_accuracy", "f_beta"])
def test_calibrate_threshold_is_best_on_its_data(fitted, survey, strategy):
    _, _, X_held, y_held, _, _ = survey
    clf = copy.deepcopy(fitted).calibrate_threshold(X_held, y_held, strategy)
    score = {"balanced_accuracy": balanced_accuracy_score, "f_beta": f1_score}[strategy]
    chosen = score(y_held, clf.predict(X_held))
    # Every other cut of the held-out probabilities does no better.
    proba = clf.predict_proba(X_held)[:, 1]
    cuts = proba[None, :] > np.unique(proba)[:, None]
    tp = (cuts & (y_held == 1)).sum(1)
    fp = (cuts & (y_held == 0)).sum(1)
    n_pos, n_neg = (y_held == 1).sum(), (y_held == 0).sum()
    if strategy == "balanced_accuracy":
        others = (tp / n_pos + 1 - fp / n_neg) / 2
    else:
        others = 2 * tp / (tp + n_pos + fp)
    assert chosen >= others.max() - 1e-12
    assert chosen > score(y_held, fitted.predict(X_held)) - 1e-12


def test_calibrate_threshold_errors(fitted, survey, iris):
    _, _, X_held, y_held, _, _ = survey
    with pytest.raises(NotFittedError):
        SiameseClassifier().calibrate_threshold(X_held, y_held)
    with pytest.raises(ValueError, match="strategy must be one of"):
        fitted.calibrate_threshold(X_held, y_held, "recall")
    with pytest.raises(ValueError, match=re.escape("min_tpr must be in [0, 1]")):
        fitted.calibrate_threshold(X_held, y_held, "max_tnr", min_tpr=2)
    with pytest.raises(ValueError, match=re.escape("min_tnr must be in [0, 1]")):
        fitted.calibrate_threshold(X_held, y_held, "max_tpr", min_tnr=-0.1)
    with pytest.raises(ValueError, match="beta must be a positive number"):
        fitted.calibrate_threshold(X_held, y_held, "f_beta", beta=-1)
    # Not infinite: its F-beta is nan at every cut, and the cut chosen anyway.
    with pytest.raises(ValueError, match=re.escape("beta must be a positive number")):
        fitted.calibrate_threshold(X_held, y_held, "f_beta", beta=np.inf)
    with pytest.raises(ValueError, match="different numbers of samples"):
        fitted.calibrate_threshold(X_held, y_held[:-1])
    with pytest.raises(ValueError, match=re.escape("labels not in classes_: [7]")):
        fitted.calibrate_threshold(X_held, np.where(y_held == 1, 7, 0))
    with pytest.raises(ValueError, match="both classes"):
        fitted.calibrate_threshold(X_held, np.zeros_like(y_held))
    assert fitted.threshold_ == 0.5  # failed calls change nothing
    X, y = iris
    multi = SiameseClassifier(**SMALL).fit(X, y)
    assert multi.threshold_ is None
    with pytest.raises(ValueError, match="binary problems; this classifier has 3"):
        multi.calibrate_threshold(X, y)


def test_calibrate_threshold_helps_balanced_accuracy(fitted, survey):
    # On rare cases, a threshold chosen for balanced accuracy on held-out data
    # does better on new data than the default one, which is at the training
    # frequencies (seeds 0-3: 0.69-0.77 before, 0.86-0.87 after).
    _, _, X_held, y_held, X_test, y_test = survey
    clf = copy.deepcopy(fitted)
    default = balanced_accuracy_score(y_test, clf.predict(X_test))
    clf.calibrate_threshold(X_held, y_held, "balanced_accuracy")
    assert balanced_accuracy_score(y_test, clf.predict(X_test)) > default + 0.05


# -- samplers and reference sets ------------------------------------------------


def test_imblearn_pipeline_with_undersampler_and_blanks(survey):
    X_train, y_train, _, _, X_test, y_test = survey
    pipe = make_imb_pipeline(
        RandomUnderSampler(random_state=0), SiameseClassifier(**SMALL)
    )
    pipe.fit(X_train, y_train)
    # The sampler passes blanks through; the classifier sees balanced classes.
    clf = pipe[-1]
    assert clf.n_features_in_ == X_train.shape[1]
    counts = np.bincount(np.searchsorted(clf.classes_, clf.reference_labels_))
    assert counts[0] == counts[1]
    assert roc_auc_score(y_test, pipe.predict_proba(X_test)[:, 1]) > 0.75


@pytest.mark.parametrize("references", ["all", "prototypes", 1, 10])
def test_reference_sets_on_rare_cases(fitted, survey, references):
    X_train, y_train, _, _, X_test, y_test = survey
    clf = copy.deepcopy(fitted).set_params(references=references)
    clf.fit_references(X_train, y_train)
    counts = np.bincount(clf.reference_labels_, minlength=2)
    expected = {
        "all": np.bincount(y_train),
        "prototypes": [1, 1],
        1: [1, 1],
        10: [10, 10],
    }[references]
    np.testing.assert_array_equal(counts, expected)
    # Every choice still ranks the rare cases and predicts some of them.
    assert roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1]) > 0.75
    assert 0 < clf.predict(X_test).mean() < 0.5


# -- neighbourhoods of classes of different sizes ------------------------------


@pytest.mark.parametrize("references", ["all", "prototypes", 10])
def test_reference_weights_count_training_samples(fitted, survey, references):
    X_train, y_train, *_ = survey
    # Repeated rows (as an oversampler makes) are kept once but counted.
    rare = np.flatnonzero(y_train == 1)
    X = np.vstack([X_train, X_train[rare], X_train[rare]])
    y = np.concatenate([y_train, y_train[rare], y_train[rare]])
    clf = copy.deepcopy(fitted).set_params(references=references)
    clf.fit_references(X, y)
    weights = clf._reference_weights
    assert weights.shape == (len(clf.references_),) and (weights > 0).all()
    sums = np.bincount(clf._reference_codes, weights=weights)
    np.testing.assert_allclose(sums, np.bincount(y))


def test_reference_weights_of_a_subsampled_class_count_every_sample(fitted):
    # k-means runs on at most 20 * k rows of a class; its centres still stand
    # for all of the class's samples.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(700, fitted.n_features_in_))
    y = np.repeat([0, 1], [600, 100])
    clf = copy.deepcopy(fitted).set_params(references=5).fit_references(X, y)
    sums = np.bincount(clf._reference_codes, weights=clf._reference_weights)
    np.testing.assert_allclose(sums, [600, 100])
    assert np.bincount(clf._reference_codes).tolist() == [5, 5]


def test_references_without_weights_count_once(fitted, survey):
    # Model files saved before references had weights predict as if each
    # reference stood for one sample.
    X_test = survey[4]
    old = copy.deepcopy(fitted).set_params(references="all")
    old.fit_references(*survey[:2])
    expected = old.predict_proba(X_test)
    del old._reference_weights
    np.testing.assert_array_equal(old.predict_proba(X_test), expected)


# -- blanks ---------------------------------------------------------------------


def test_blank_indicator_beats_minus_one_and_median_imputation():
    # Cases answer informative questions differently AND leave sensitive ones
    # blank more often. The default encoding (0 plus a "was blank" column)
    # keeps both signals; -1 puts a blank at the low end of every answer scale,
    # and the median makes it look like a typical answer.
    X, y = make_survey(n_samples=900, positive_fraction=0.1, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    median = SimpleImputer(strategy="median").fit(X_train)
    encodings = {
        "indicator": lambda A: A,
        "minus one": lambda A: np.where(np.isnan(A), -1.0, A),
        "median": median.transform,
    }
    ap, auc = {}, {}
    for name, encode in encodings.items():
        clf = SiameseClassifier(**SMALL).fit(encode(X_train), y_train)
        proba = clf.predict_proba(encode(X_test))[:, 1]
        ap[name] = average_precision_score(y_test, proba)
        auc[name] = roc_auc_score(y_test, proba)
    # Average precision, the measure of the benchmark's blanks table.
    assert ap["indicator"] > ap["minus one"] + 0.03, ap
    assert ap["indicator"] > ap["median"] + 0.03, ap
    assert auc["indicator"] > max(auc["minus one"], auc["median"]), auc


# -- class weights ----------------------------------------------------------------


def test_class_weight_balanced_is_what_balanced_batches_already_do(survey):
    X_train, y_train, *_ = survey
    plain = SiameseClassifier(**SMALL).fit(X_train, y_train)
    balanced = SiameseClassifier(class_weight="balanced", **SMALL).fit(X_train, y_train)
    np.testing.assert_array_equal(plain.transform(X_train), balanced.transform(X_train))


def test_class_weight_dict_shapes_the_embedding(survey):
    X_train, y_train, _, _, X_test, y_test = survey
    plain = SiameseClassifier(**SMALL).fit(X_train, y_train)
    weighted = SiameseClassifier(class_weight={1: 5.0}, **SMALL).fit(X_train, y_train)
    assert not np.allclose(plain.transform(X_test), weighted.transform(X_test))
    # Still a working classifier of the rare cases.
    proba = weighted.predict_proba(X_test)[:, 1]
    assert roc_auc_score(y_test, proba) > 0.75
    assert balanced_accuracy_score(y_test, weighted.predict(X_test)) > 0.6


@pytest.mark.parametrize(
    "class_weight, message",
    [
        ({2: 1.0}, "class_weight names the class 2"),
        ({1: 0.0}, "positive finite numbers"),
        ({1: np.inf}, "positive finite numbers"),
        ({1: "high"}, "positive finite numbers"),
    ],
)
def test_class_weight_errors(survey, class_weight, message):
    X_train, y_train, *_ = survey
    clf = SiameseClassifier(class_weight=class_weight, **SMALL)
    with pytest.raises(ValueError, match=re.escape(message)):
        clf.fit(X_train, y_train)


@pytest.mark.parametrize("class_weight", ["Balanced", [1, 5], 5.0])
def test_class_weight_set_after_fit_is_checked_where_it_is_read(
    fitted, survey, class_weight
):
    # Prediction reads class_weight (the prior term): a value that fit
    # refuses was taken for "balanced" (any string) or for None.
    *_, X_test, _ = survey
    clf = copy.deepcopy(fitted).set_params(class_weight=class_weight)
    for method in ("predict_proba", "predict", "decision_function"):
        with pytest.raises(ValueError, match="'class_weight' parameter of Siamese"):
            getattr(clf, method)(X_test)


def test_class_weight_acts_as_a_prior_on_the_decision(fitted, survey):
    *_, X_test, y_test = survey
    balanced = copy.deepcopy(fitted).set_params(class_weight="balanced")
    weighted = copy.deepcopy(fitted).set_params(class_weight={1: 5.0})
    # Same encoder and references: the weights move the log-odds at the
    # training frequencies by exactly log(5), as if the class had been five
    # times as frequent (scikit-learn's meaning of class weights).
    shift = weighted.decision_function(X_test) - fitted.decision_function(X_test)
    np.testing.assert_allclose(shift, np.log(5.0), rtol=1e-6)
    # So weights of 1 are None, and scikit-learn's balanced weights are
    # "balanced".
    ones = copy.deepcopy(fitted).set_params(class_weight={0: 1.0, 1: 1.0})
    np.testing.assert_allclose(ones.predict_proba(X_test), fitted.predict_proba(X_test))
    y_train = survey[1]
    weights = compute_class_weight("balanced", classes=np.unique(y_train), y=y_train)
    as_dict = copy.deepcopy(fitted).set_params(class_weight=dict(enumerate(weights)))
    np.testing.assert_allclose(
        as_dict.predict_proba(X_test), balanced.predict_proba(X_test), atol=1e-12
    )
    # Without class_weight the odds are those at the training frequencies:
    # the balanced odds times the prior odds (Bayes' rule).
    prior = fitted.class_prior_
    shift = fitted.decision_function(X_test) - balanced.decision_function(X_test)
    np.testing.assert_allclose(shift, np.log(prior[1] / prior[0]), rtol=1e-6)
    proba = weighted.predict_proba(X_test)
    np.testing.assert_array_equal(
        weighted.predict(X_test), weighted.classes_[proba.argmax(1)]
    )
    # More of the rare cases are found, at the cost of more false alarms.
    assert recall_score(y_test, weighted.predict(X_test)) >= recall_score(
        y_test, fitted.predict(X_test)
    )
    assert weighted.predict(X_test).mean() > fitted.predict(X_test).mean()


# -- ensembles --------------------------------------------------------------------


def test_bagging_over_seeds_with_blanks(survey):
    # The User Guide's recipe for small data: several seeds, probabilities averaged.
    from sklearn.ensemble import BaggingClassifier

    X_train, y_train, _, _, X_test, y_test = survey
    bag = BaggingClassifier(
        SiameseClassifier(**SMALL), n_estimators=3, bootstrap=False, random_state=0
    )
    proba = bag.fit(X_train, y_train).predict_proba(X_test)[:, 1]
    members = bag.estimators_
    # Blanks reach every member; each trained with its own seed on all the rows.
    assert all(m.n_features_in_ == X_train.shape[1] for m in members)
    assert len({m.random_state for m in members}) == 3
    member_proba = [m.predict_proba(X_test)[:, 1] for m in members]
    np.testing.assert_allclose(proba, np.mean(member_proba, axis=0), rtol=1e-6)
    assert len({round(float(p[0]), 6) for p in member_proba}) == 3
    # Same random_state, same ensemble.
    again = clone(bag).fit(X_train, y_train).predict_proba(X_test)[:, 1]
    np.testing.assert_array_equal(proba, again)
    aucs = [roc_auc_score(y_test, p) for p in member_proba]
    assert roc_auc_score(y_test, proba) >= np.mean(aucs) - 0.01
    assert roc_auc_score(y_test, proba) > 0.75


def test_probabilities_follow_the_class_frequencies_on_rare_digits():
    # Real data: scikit-learn's digits, "is it an 8?", with 60 eights among
    # 1,624 other digits. Without class_weight the probabilities are at the
    # training frequencies (Bayes' rule on the balanced scores, with a fitted
    # temperature); class_weight="balanced" gives those of equal classes.
    X, y = load_digits(return_X_y=True)
    y = (y == 8).astype(int)
    X, y = make_imbalance(
        X, y, sampling_strategy={0: int((y == 0).sum()), 1: 60}, random_state=0
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    plain = SiameseClassifier(**SMALL).fit(X_train, y_train)
    balanced = copy.deepcopy(plain).set_params(class_weight="balanced")
    p, p_balanced = (
        plain.predict_proba(X_test)[:, 1],
        balanced.predict_proba(X_test)[:, 1],
    )
    np.testing.assert_allclose(plain.class_prior_, np.bincount(y_train) / len(y_train))
    # On average about as often as the eights occur (the calibration set
    # holds 3 of them); balanced: far more often.
    assert 0.5 < p.mean() / y_test.mean() < 2
    assert p_balanced.mean() / y_test.mean() > 2
    # Exactly: the balanced odds are the odds without the prior odds.
    prior = plain.class_prior_
    np.testing.assert_allclose(
        balanced.decision_function(X_test) - plain.decision_function(X_test),
        np.log(prior[0] / prior[1]),
        rtol=1e-6,
    )
    rate = np.full(len(y_test), y_train.mean())
    assert log_loss(y_test, p) < log_loss(y_test, p_balanced)
    assert log_loss(y_test, p) < 0.5 * log_loss(y_test, rate)
    # The order of the samples is the same: ranking metrics do not change.
    assert roc_auc_score(y_test, p) == roc_auc_score(y_test, p_balanced)
