"""Calibration: thresholds chosen on held-out scores, the pair logistic, the
temperature and prior weight of the class probabilities."""

import re

import numpy as np
import pytest
from scipy.optimize import approx_fprime, minimize
from scipy.special import expit, logsumexp, softmax

from sksiamese import SiameseClassifier, _calibration, _classifier
from sksiamese._calibration import (
    _logistic_newton,
    calibration_cap,
    cap_per_class,
    fit_logistic_1d,
    fit_temperature,
    log_class_prior,
    select_distance_threshold,
    select_threshold,
    softmax_rows,
)

# -- thresholds ------------------------------------------------------------------


def test_select_threshold_on_hand_built_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9])
    positive = np.array([0, 0, 1, 0, 1, 0, 1], dtype=bool)
    # Balanced accuracy: everything above 0.25 positive gives TPR 1 and TNR
    # 2/4 (0.75); above 0.5: TPR 2/3, TNR 3/4 (0.708).
    assert select_threshold(scores, positive) == pytest.approx(0.25)
    # Accuracy: 5 of 7 right above 0.85, 0.5 or 0.25; ties go to the highest.
    assert select_threshold(scores, positive, "accuracy") == pytest.approx(0.85)
    # F1 is best with all three positives: 2 * 3 / (2 * 3 + 2) = 0.75.
    assert select_threshold(scores, positive, "f_beta") == pytest.approx(0.25)
    # F0.5 favours precision: only 0.9 positive.
    assert select_threshold(scores, positive, "f_beta", beta=0.5) == pytest.approx(0.85)
    # At most one false positive (TNR >= 0.75): 0.6 and 0.9 found.
    assert select_threshold(scores, positive, "max_tpr", min_tnr=0.75) == pytest.approx(
        0.5
    )
    # A recall of 0.6 needs two positives; of 1.0, all three.
    assert select_threshold(scores, positive, "max_tnr", min_tpr=0.6) == pytest.approx(
        0.5
    )
    assert select_threshold(scores, positive, "max_tnr", min_tpr=1.0) == pytest.approx(
        0.25
    )
    # Ties: a threshold never splits equal scores.
    tied = select_threshold(np.array([1.0, 1.0, 2.0]), np.array([0, 1, 1], bool))
    assert 1.0 < tied < 2.0
    # Everything (or nothing) positive: below (above) every score.
    lowest_positive = np.array([True, False])
    assert select_threshold([1.0, 2.0], lowest_positive, "max_tnr") < 1.0
    assert select_threshold([1.0, 2.0], lowest_positive) > 2.0
    with pytest.raises(ValueError, match="both classes"):
        select_threshold(np.array([1.0, 2.0]), np.array([True, True]))


def test_select_distance_threshold_on_hand_built_pairs():
    d = np.array([0.1, 0.2, 0.3, 0.3, 0.6, 0.8])
    same = np.array([True, True, False, True, True, False])
    # Below 0.25: 4 of 6 pairs right; below 0.7: 5 of 6.
    assert select_distance_threshold(d, same, "accuracy") == pytest.approx(0.7)
    # F1 is 0.89 below 0.7; with a tiny beta, precision (1) wins, at the
    # higher recall of the two thresholds that reach it.
    assert select_distance_threshold(d, same, "f_beta") == pytest.approx(0.7)
    assert select_distance_threshold(d, same, "f_beta", beta=1e-3) == 0.25
    # TNR >= 0.5 lets one different pair in; TNR = 1 none.
    assert select_distance_threshold(d, same, "max_tpr", min_tnr=0.5) == 0.7
    assert select_distance_threshold(d, same, "max_tpr", min_tnr=1.0) == 0.25
    # With no bound, all same pairs are in; the last different one stays out.
    assert select_distance_threshold(d, same, "max_tpr", min_tnr=0.0) == 0.7
    assert select_distance_threshold(d, same, "max_tnr", min_tpr=0.5) == 0.25
    assert select_distance_threshold(d, same, "max_tnr", min_tpr=1.0) == 0.7
    # No pair same, or every pair: beyond the extremes, never on a pair.
    d, same = np.array([0.1, 0.2]), np.array([False, True])
    assert select_distance_threshold(d, same, "accuracy") == pytest.approx(-0.9)
    assert select_distance_threshold(d, same, "max_tpr", min_tnr=0) == 1.2
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Choosing a threshold needs both same (1) and different (0) pairs; "
            "got only different pairs."
        ),
    ):
        select_distance_threshold(d, [False, False])


# -- the probability that a pair is alike ----------------------------------------


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6, 1e250])
def test_fit_logistic_1d_is_unit_free(scale):
    """The pair calibration maps distances to the same probabilities in any
    unit, and matches scikit-learn's lbfgs fit of the raw distances."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    d = np.r_[rng.gamma(2.0, 0.3, 400), rng.gamma(6.0, 0.3, 400)]
    same = np.r_[np.ones(400), np.zeros(400)]
    slope, intercept = fit_logistic_1d(d * scale, same)
    reference = LogisticRegression(C=1e4).fit(d.reshape(-1, 1), same)
    np.testing.assert_allclose(slope * scale, reference.coef_[0, 0], rtol=1e-3)
    np.testing.assert_allclose(intercept, reference.intercept_[0], rtol=1e-3)


@pytest.mark.parametrize("gap", [0.5, 2.0, 20.0])
def test_logistic_newton_is_scikit_learns_logistic_regression(gap):
    """The written-out Newton fit of one feature reaches the optimum of
    LogisticRegression(C=1e4)'s objective: its gradient is zero, and it is
    scikit-learn's answer (or lower, where the classes barely overlap and
    scikit-learn stops earlier)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    y = (rng.uniform(size=5000) < 0.3).astype(float)
    z = rng.normal(size=5000) + gap * y
    z = (z - z.mean()) / z.std()
    w, b = _logistic_newton(z, y)

    def objective(w, b):
        t = b + w * z
        return np.sum(np.logaddexp(0, t) - y * t) + w * w / 2e4

    r = expit(b + w * z) - y
    np.testing.assert_allclose([np.sum(r * z) + w / 1e4, np.sum(r)], 0, atol=1e-6)
    reference = LogisticRegression(C=1e4, solver="newton-cholesky", tol=1e-10)
    reference.fit(z[:, None], y)
    ws, bs = reference.coef_[0, 0], reference.intercept_[0]
    assert objective(w, b) <= objective(ws, bs) + 1e-9
    np.testing.assert_allclose([w, b], [ws, bs], rtol=1e-6 if gap < 20 else 1e-3)


def test_fit_logistic_1d_of_equal_distances_gives_the_base_rate():
    slope, intercept = fit_logistic_1d(np.full(10, 0.5), np.r_[np.ones(3), np.zeros(7)])
    assert slope == 0.0
    np.testing.assert_allclose(1 / (1 + np.exp(-intercept)), 0.3)


def test_pairs_may_choose_the_balanced_accuracy_threshold():
    # 1 same pair among 6, behind a different one: calling both same gets
    # as many right as calling none (5 of 6), and accuracy's ties go to the
    # fewest pairs called same; balanced accuracy takes the same pair (TPR 1,
    # TNR 4/5).
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([False, True, False, False, False, False])
    assert select_distance_threshold(d, same, "accuracy") == pytest.approx(-0.9)
    assert select_distance_threshold(d, same, "balanced_accuracy") == pytest.approx(
        0.25
    )


# -- temperature and prior weight of the class probabilities ---------------------


def test_fit_temperature_recovers_the_model_that_drew_the_labels():
    """Labels drawn from softmax(-S / T + a * log(prior)) give back T and a."""
    rng = np.random.RandomState(0)
    prior = np.array([0.7, 0.2, 0.1])
    S = rng.gamma(2.0, 1.0, size=(20_000, 3))
    proba = softmax(-S / 0.5 + 0.8 * np.log(prior), axis=1)
    codes = (rng.random_sample((len(S), 1)) > proba.cumsum(1)).sum(1)
    temperature, scale = fit_temperature(S, codes, log_class_prior(prior))
    assert temperature == pytest.approx(0.5, rel=0.05)
    assert scale == pytest.approx(0.8, abs=0.1)


def test_fit_temperature_of_separable_scores_stays_finite():
    # Every sample nearest its own class: Platt's targets keep T above 0.
    S = np.array([[0.0, 5.0], [0.1, 4.0], [6.0, 0.2], [5.0, 0.0]])
    temperature, scale = fit_temperature(
        S, np.array([0, 0, 1, 1]), log_class_prior(np.array([0.5, 0.5]))
    )
    assert 0 < temperature < np.inf and 0 <= scale <= 2


def _platt_log_loss(S, codes, log_prior, weights, log_t, a):
    """fit_temperature's loss written out plainly: Platt's targets as a dense
    matrix, zero where a class has no references (S = inf)."""
    counts = np.bincount(codes, minlength=S.shape[1])
    on = (counts[codes] + 1.0) / (counts[codes] + 2.0)
    finite = np.isfinite(S)
    n_other = np.maximum(finite.sum(1) - 1, 1)
    targets = np.where(finite, ((1.0 - on) / n_other)[:, None], 0.0)
    targets[np.arange(len(codes)), codes] = np.where(
        finite[np.arange(len(codes)), codes], on, 0.0
    )
    z = -S / np.exp(log_t) + a * log_prior
    logp = z - logsumexp(z, axis=1, keepdims=True)
    ce = (targets * np.where(finite, logp, 0.0)).sum(1)
    return -(weights * ce).sum() / weights.sum()


def test_fit_temperature_minimises_platts_log_loss_with_weights_and_blanks():
    """The fitted (T, a) is where the plain dense loss is smallest, with
    classes missing from some rows' scores (inf) and per-sample weights;
    its gradient, written out, agrees with finite differences."""
    rng = np.random.RandomState(0)
    prior = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    S = rng.gamma(2.0, 1.0, size=(4000, 5))
    S[rng.random_sample(S.shape) < 0.05] = np.inf
    codes = rng.choice(5, len(S), p=prior)
    S[np.arange(len(S)), codes] = rng.gamma(1.0, 0.5, size=len(S))
    weights = rng.uniform(0.5, 2.0, len(S))
    log_prior = log_class_prior(prior)
    temperature, scale = fit_temperature(S, codes, log_prior, weights)
    assert 0.0 < scale < 2.0  # an inner optimum: the gradient is zero there

    def dense(p):
        return _platt_log_loss(S, codes, log_prior, weights, *p)

    best = np.array([np.log(temperature), scale])
    gradient = approx_fprime(best, dense, 1e-6)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-5)
    reference = minimize(
        dense,
        best + [0.3, -0.2],
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-14},
    )
    np.testing.assert_allclose(best, reference.x, atol=1e-4)


def test_cap_per_class_keeps_the_class_frequencies_by_weight():
    codes = np.repeat([0, 1, 2], [5000, 300, 10])
    keep, weights = cap_per_class(codes, 100, np.random.RandomState(0))
    assert np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(np.bincount(codes[keep]), [100, 100, 10])
    np.testing.assert_allclose(
        np.bincount(codes[keep], weights=weights), np.bincount(codes)
    )
    # Nothing over the cap: every sample, weight 1.
    keep, weights = cap_per_class(codes, 5000, np.random.RandomState(0))
    assert len(keep) == len(codes) and np.all(weights == 1)


def test_many_classes_calibrate_on_fewer_samples_of_each():
    # Each calibration sample is scored against every class's references:
    # up to 10 classes keep 2,000 of each, more classes fewer, down to 50.
    assert [calibration_cap(c) for c in (2, 10, 11, 100, 400, 1000)] == [
        2000,
        2000,
        1818,
        200,
        50,
        50,
    ]


def _record_fit_temperature(monkeypatch):
    """The list that each call of the classifier's ``fit_temperature`` adds
    its ``(codes, weights)`` to."""
    seen = []
    fit_temperature_ = _classifier.fit_temperature

    def recorded(S, codes, log_prior, weights):
        seen.append((codes, weights))
        return fit_temperature_(S, codes, log_prior, weights)

    monkeypatch.setattr(_classifier, "fit_temperature", recorded)
    return seen


@pytest.mark.parametrize("n_members, scored", [(8, 24), (1, 20)])
def test_a_fit_scores_the_capped_calibration_samples(monkeypatch, n_members, scored):
    monkeypatch.setattr(_calibration, "_CALIBRATION_SAMPLES", 300)
    monkeypatch.setattr(_calibration, "_CALIBRATION_MIN_PER_CLASS", 5)
    seen = _record_fit_temperature(monkeypatch)
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(30), 30)
    X = rng.normal(size=(len(y), 3)) + (y % 4)[:, None]
    SiameseClassifier(
        hidden_layer_sizes=(8,),
        embedding_dim=4,
        n_members=n_members,
        max_epochs=1,
        early_stopping=False,
        random_state=0,
    ).fit(X, y)
    ((codes, weights),) = seen
    # 300 / 30 classes: 10 of each class per part. One network: two halves of
    # 15, 10 of each scored. Out of bag, each of the 8 members scores 2 * 10 /
    # 8, rounded up to 3, of the 3 or 4 samples of each class it left out: 24
    # in all. Either way weighed back to 30.
    np.testing.assert_array_equal(np.bincount(codes), np.full(30, scored))
    np.testing.assert_allclose(np.bincount(codes, weights=weights), np.full(30, 30))


def test_partial_fit_calibrates_at_the_frequencies_of_all_samples_seen(monkeypatch):
    # partial_fit calibrates on the samples it kept, at most _RESERVOIR_SIZE
    # of each class: weighed back to all those seen (here 20 of each kept, of
    # 200 and 20 seen), as class_prior_ counts them. Unweighted, the kept
    # samples are as frequent as each other and the fitted prior weight
    # pulled the probabilities towards balanced ones (on 20,000 survey rows
    # with 3% cases, in chunks of 2,000: a mean probability of a case of
    # 0.080 against a rate of 0.034, and a log loss of 0.092 against 0.038
    # after fit).
    monkeypatch.setattr(_classifier, "_RESERVOIR_SIZE", 20)
    seen = _record_fit_temperature(monkeypatch)
    rng = np.random.RandomState(0)
    y = np.r_[np.zeros(200, dtype=int), np.ones(20, dtype=int)]
    X = rng.normal(size=(len(y), 3)) + y[:, None]
    order = rng.permutation(len(y))
    clf = SiameseClassifier(
        hidden_layer_sizes=(8,), embedding_dim=4, n_members=1, random_state=0
    )
    for chunk in np.array_split(order, 2):
        clf.partial_fit(X[chunk], y[chunk], classes=[0, 1])
    codes, weights = seen[-1]
    np.testing.assert_array_equal(np.bincount(codes), [20, 20])
    np.testing.assert_allclose(np.bincount(codes, weights=weights), [200, 20])
    np.testing.assert_allclose(clf.class_prior_, [200 / 220, 20 / 220])


def test_log_class_prior_of_an_unseen_class_is_zero():
    np.testing.assert_array_equal(
        log_class_prior(np.array([0.5, 0.0, 0.5])), [np.log(0.5), 0.0, np.log(0.5)]
    )


@pytest.mark.parametrize("n_classes", [1, 2, 3, 7, 8, 20])
def test_softmax_rows_is_scipys_bit_for_bit(n_classes):
    rng = np.random.RandomState(n_classes)
    logits = 40 * rng.standard_t(2, size=(1000, n_classes))
    out_of_reach = rng.rand(*logits.shape) < 0.1
    out_of_reach[:, 0] = False
    logits[out_of_reach] = -np.inf
    proba = softmax_rows(logits)
    np.testing.assert_array_equal(proba, softmax(logits, axis=1))
    assert proba.flags.c_contiguous
    np.testing.assert_array_equal(softmax_rows(logits[:1]), softmax(logits[:1], axis=1))


def test_fit_temperature_keeps_a_at_its_bound_or_where_it_changes_nothing():
    """Labels drawn with a = 3 leave a at its upper bound 2, T best for it;
    with equally frequent classes a changes nothing and stays at 1 (Bayes'
    rule); with scores all equal T changes nothing and a alone is fitted."""
    rng = np.random.RandomState(1)
    prior = np.array([0.6, 0.3, 0.1])
    S = rng.gamma(2.0, 1.0, size=(20_000, 3))
    proba = softmax(-S / 0.5 + 3.0 * log_class_prior(prior), axis=1)
    codes = (rng.random_sample((len(S), 1)) > proba.cumsum(1)).sum(1)

    def gradient(S, log_prior, temperature, scale):
        """Of the plain dense loss, in (log T, a)."""
        return approx_fprime(
            np.array([np.log(temperature), scale]),
            lambda p: _platt_log_loss(S, codes, log_prior, np.ones(len(S)), *p),
            1e-6,
        )

    log_prior = log_class_prior(prior)
    temperature, scale = fit_temperature(S, codes, log_prior)
    assert scale == 2.0
    d_log_t, d_scale = gradient(S, log_prior, temperature, scale)
    assert abs(d_log_t) < 1e-6 and d_scale < 0  # the loss would fall beyond 2

    # (10 classes: with 3, rounding happens to leave the variance of the
    # equal log priors exactly 0.)
    ten = rng.gamma(4.0, 1.0, size=(len(S), 10))
    ten[np.arange(len(S)), codes] *= 0.4
    equal = log_class_prior(np.full(10, 0.1))
    temperature, scale = fit_temperature(ten, codes, equal)
    assert scale == 1.0
    assert abs(gradient(ten, equal, temperature, scale)[0]) < 1e-6

    flat = np.ones_like(S)
    temperature, scale = fit_temperature(flat, codes, log_prior)
    assert temperature == 1.0  # the spread of the scores is 0: T = 1
    assert 0.0 < scale < 2.0
    assert abs(gradient(flat, log_prior, temperature, scale)[1]) < 1e-6


def test_pair_score_of_a_model_fitted_on_few_samples_is_not_overconfident():
    # pair_score's calibration pairs are one same and one other pair per
    # calibration sample: from 30 digits, a few dozen. Separated by chance,
    # they gave probabilities of 0 and 1 (log loss 1.19 at seed 0, above a
    # constant 0.5's 0.69); the pair estimator's prior on the slope bounds it.
    from sklearn.datasets import load_digits
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    losses = []
    for seed in range(3):
        X_train, X_test, y_train, y_test = train_test_split(
            X / 16, y, train_size=30, stratify=y, random_state=seed
        )
        clf = SiameseClassifier(random_state=seed, max_epochs=20).fit(X_train, y_train)
        rng = np.random.RandomState(seed)
        first = rng.randint(len(X_test), size=1000)
        mates = [rng.choice(np.flatnonzero(y_test == y_test[i])) for i in first[:500]]
        second = np.r_[mates, rng.randint(len(X_test), size=500)]
        same = y_test[first] == y_test[second]
        proba = clf.pair_score(X_test[first], X_test[second])
        losses.append(log_loss(same, proba, labels=[False, True]))
    # (With C=1e4: 1.19, 0.62, 0.52; now 0.61, 0.59, 0.51.)
    assert max(losses) < 0.8
    assert np.mean(losses) < 0.65


def test_members_leave_out_a_share_of_every_class():
    # Dealt in turn within each class, from a random first member: every
    # member leaves out 1/8 of each class (rounded either way), and a class
    # of 2 samples is left out by two members, never both by one.
    rng = np.random.RandomState(0)
    codes = np.repeat([0, 1, 2], [2, 17, 400])
    left_out = _classifier._left_out(codes, 8, rng)
    for c, n in enumerate([2, 17, 400]):
        per_member = np.bincount(left_out[codes == c], minlength=8)
        assert per_member.max() - per_member.min() <= 1
        assert per_member.sum() == n
    assert len(set(left_out[codes == 0])) == 2


@pytest.mark.parametrize(
    "params, out_of_bag",
    [
        ({}, True),
        ({"n_members": 4}, True),
        ({"n_members": 3}, False),
        ({"loss": "nca"}, False),
        ({"early_stopping": True}, False),
    ],
)
def test_which_fits_calibrate_out_of_bag(params, out_of_bag, monkeypatch):
    # Out of bag with the prototype loss and at least 4 members, nothing
    # held out: the calibration receives the member that left each row out,
    # one of the n_members, and the rows each member left out are scored.
    seen = []
    scores = _classifier.calibration_scores

    def recorded(*args):
        seen.append(args[-1])
        return scores(*args)

    monkeypatch.setattr(_classifier, "calibration_scores", recorded)
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 40)
    X = rng.normal(size=(80, 3)) + y[:, None]
    params = dict(hidden_layer_sizes=(8,), embedding_dim=4, max_epochs=1, **params)
    SiameseClassifier(random_state=0, **params).fit(X, y)
    (left_out,) = seen
    if not out_of_bag:
        assert left_out is None
        return
    members = params.get("n_members", 8)
    np.testing.assert_array_equal(np.unique(left_out), np.arange(members))
    assert len(left_out) == len(y)


def test_out_of_bag_calibration_is_not_fooled_by_learned_noise(monkeypatch):
    # Breast cancer with a fifth of the labels (training and test alike)
    # redrawn at random: the network learns its training rows' noise, so
    # training rows, even scored against the other half's references, look
    # cleaner than new rows and a temperature fitted on them is too small.
    # Scored out of bag, the probabilities are honest: a lower test log loss
    # than the two halves' (0.42 against 0.48 when written), and than the
    # logistic regression's (0.46).
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    noisy = rng.rand(len(y)) < 0.2
    y = np.where(noisy, rng.randint(2, size=len(y)), y)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=0, stratify=y
    )
    out_of_bag = SiameseClassifier(random_state=0).fit(X_train, y_train)
    monkeypatch.setattr(SiameseClassifier, "_out_of_bag", lambda self: False)
    halves = SiameseClassifier(random_state=0).fit(X_train, y_train)
    logistic = make_pipeline(StandardScaler(), LogisticRegression())
    logistic.fit(X_train, y_train)
    loss = {
        name: log_loss(y_test, model.predict_proba(X_test))
        for name, model in [("oob", out_of_bag), ("halves", halves), ("lr", logistic)]
    }
    assert loss["oob"] < loss["halves"] - 0.03
    assert loss["oob"] < loss["lr"]
    # The halves' temperature is the smaller: sharper probabilities.
    assert halves.temperature_ < 0.7 * out_of_bag.temperature_
