"""Calibration: probabilities and thresholds from held-out scores.

- The classifier's probabilities: ``softmax(-S / T + a * log(prior))`` of its
  class dissimilarities ``S`` (:mod:`sksiamese._references`), with the
  temperature ``T`` and prior weight ``a`` fitted on samples scored against
  references they were not among (held out; out of bag, by the ensemble
  member that left each out of its training; or cross-fitted on two halves
  of the training data), and the class weights and priors that shift them.
- The probability that a pair is alike, a logistic function of its
  dissimilarity (both estimators).
- Decision thresholds chosen on held-out scores, one selector for both
  estimators.

Plain functions on numpy arrays, apart from the two that embed and compare
with a trained skorch net (:func:`calibration_scores`, :func:`calibration_pairs`).
"""

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit, logit, softmax

from ._references import (
    References,
    _MemberColumns,
    class_dissimilarity,
    member_references,
    select_references,
)

STRATEGIES = ("balanced_accuracy", "accuracy", "f_beta", "max_tpr", "max_tnr")

# Rates computed from counts; a bound such as 0.9 must accept 9 of 10.
_EPS = 1e-12


def select_threshold(
    scores,
    positive,
    strategy="balanced_accuracy",
    *,
    beta=1.0,
    min_tnr=0.9,
    min_tpr=0.9,
):
    """The threshold on ``scores`` that is best for ``strategy`` on this data.

    A sample is predicted positive when its score is strictly greater than the
    threshold. The threshold is halfway between the two distinct scores that
    the best cut falls between (above the highest score when nothing should
    be positive, below the lowest when everything should), so it does not sit
    on a given score. Below, TPR is the recall of the positive class and TNR
    that of the negative class (specificity).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Higher means more likely positive.
    positive : array-like of shape (n_samples,)
        Boolean, True for the positive class. Both classes must occur.
    strategy : {"balanced_accuracy", "accuracy", "f_beta", "max_tpr", \
"max_tnr"}, default="balanced_accuracy"
        ``"balanced_accuracy"``: the highest mean of TPR and TNR.
        ``"accuracy"``: the most samples right (depends on the class mix).
        ``"f_beta"``: the highest F-beta score of the positive class.
        ``"max_tpr"``: the highest TPR with TNR >= ``min_tnr``; among equal
        TPR, the highest TNR. ``"max_tnr"``: the highest TNR with TPR >=
        ``min_tpr``; among equal TNR, the highest TPR. Ties of the other
        strategies go to the highest threshold (the fewest positives).
    beta : float, default=1.0
        Weight of recall relative to precision for ``"f_beta"``.
    min_tnr : float, default=0.9
        Lowest acceptable TNR for ``"max_tpr"``.
    min_tpr : float, default=0.9
        Lowest acceptable TPR for ``"max_tnr"``.

    Returns
    -------
    threshold : float

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.1, 0.2, 0.3, 0.6, 0.8])
    >>> positive = np.array([False, False, True, False, True])
    >>> select_threshold(scores, positive)
    0.25
    >>> select_threshold(scores, positive, "f_beta", beta=0.5)
    0.7
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "Choosing a threshold needs samples of both classes; got only "
            f"{'negatives' if n_pos == 0 else 'positives'}."
        )
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]
    # Cut k predicts the k highest distinct scores positive (cut 0: none);
    # only cuts between distinct scores can be realised by a threshold.
    ends = np.r_[np.flatnonzero(np.diff(s) != 0) + 1, len(s)]
    tp = np.r_[0, np.cumsum(pos)[ends - 1]]
    fp = np.r_[0, np.cumsum(~pos)[ends - 1]]
    tpr, tnr = tp / n_pos, 1.0 - fp / n_neg
    if strategy == "balanced_accuracy":
        best = np.argmax(tpr + tnr)
    elif strategy == "accuracy":
        best = np.argmax(tp - fp)  # right: tp + n_neg - fp
    elif strategy == "f_beta":
        b2 = beta**2
        denom = (1 + b2) * tp + b2 * (n_pos - tp) + fp
        best = np.argmax(np.where(denom > 0, (1 + b2) * tp / np.maximum(denom, 1), 0))
    elif strategy == "max_tpr":
        # TPR grows and TNR shrinks with k; cut 0 (nothing positive) is feasible.
        top = tpr[np.flatnonzero(tnr >= min_tnr - _EPS)[-1]]
        best = np.flatnonzero(tpr == top)[0]
    elif strategy == "max_tnr":
        top = tnr[np.flatnonzero(tpr >= min_tpr - _EPS)[0]]
        best = np.flatnonzero(tnr == top)[-1]
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    if best == 0:
        return float(s[0] + max(1.0, abs(s[0])))
    if best == len(ends):
        return float(s[-1] - max(1.0, abs(s[-1])))
    return float((s[ends[best - 1] - 1] + s[ends[best - 1]]) / 2.0)


def check_strategy(strategy, beta, min_tnr, min_tpr):
    """Validate the arguments of either estimator's ``calibrate_threshold``."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    if (
        not isinstance(beta, numbers.Real)
        or isinstance(beta, bool)
        or not 0 < beta < np.inf  # F-beta of infinite beta: nan for every cut
    ):
        raise ValueError(f"beta must be a positive number; got {beta!r}.")
    for name, value in (("min_tnr", min_tnr), ("min_tpr", min_tpr)):
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not 0 <= value <= 1
        ):
            raise ValueError(f"{name} must be in [0, 1]; got {value!r}.")


def select_distance_threshold(
    d, same, strategy="accuracy", *, beta=1.0, min_tnr=0.9, min_tpr=0.9
):
    """The dissimilarity below which pairs are called same, best for ``strategy``.

    The threshold lies halfway between the two distinct dissimilarities that
    the best cut falls between (below the lowest one when no pair should be
    called same, above the highest when all should), so it does not sit on a
    given pair. See :meth:`SiamesePairClassifier.calibrate_threshold` for the
    strategies.

    Parameters
    ----------
    d : ndarray of shape (n_pairs,)
        Dissimilarities, lower = more alike.
    same : ndarray of shape (n_pairs,)
        True for same pairs; both kinds must occur.
    strategy : {"accuracy", "balanced_accuracy", "f_beta", "max_tpr", "max_tnr"}, \
            default="accuracy"
    beta, min_tnr, min_tpr : float
        As in :func:`select_threshold`.

    Returns
    -------
    threshold : float

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([0.1, 0.2, 0.3, 0.6, 0.8])
    >>> same = np.array([True, True, False, True, False])
    >>> float(select_distance_threshold(d, same))
    0.25
    >>> float(select_distance_threshold(d, same, "max_tpr", min_tnr=0.5))
    0.7
    """
    d = np.asarray(d, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError(
            "Choosing a threshold needs both same (1) and different (0) pairs; "
            f"got only {'same' if same.any() else 'different'} pairs."
        )
    # "same" when d < threshold is "positive" when -d > -threshold.
    return -select_threshold(
        -d, same, strategy, beta=beta, min_tnr=min_tnr, min_tpr=min_tpr
    )


def fit_logistic_1d(d, same, C=1e4):
    """Slope and intercept of ``P(same) = sigmoid(intercept + slope * d)``,
    the slope per standard deviation of ``d`` penalised as by
    ``LogisticRegression(C=C)`` (:func:`_logistic_newton`)."""
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
    z = (unit - centre) / spread
    w, b = _logistic_newton(z, (same == np.max(same)).astype(np.float64), C=C)
    return float(w / (spread * size)), float(b - w * centre / spread)


def _logistic_newton(z, y, C=1e4, max_iter=100):
    """Slope and intercept minimising the log loss of ``sigmoid(b + w * z)``
    plus ``w ** 2 / (2 * C)``: scikit-learn's ``LogisticRegression(C=C)`` of
    one feature, by Newton's method on the two numbers with a backtracking
    line search.

    Written out (a few passes over ``z`` per step, on one thread) rather than
    calling ``LogisticRegression``, whose OpenMP and BLAS threads start right
    after PyTorch's at the end of ``fit``: on 2 CPU cores the two thread pools
    competed and the same fit of 16,000 pairs took 80-100 ms instead of 8.
    """

    def objective(w, b):
        t = b + w * z
        return np.sum(np.logaddexp(0.0, t) - y * t) + w * w / (2 * C)

    w = b = 0.0
    f = objective(w, b)
    for _ in range(max_iter):
        p = expit(b + w * z)
        r, h = p - y, p * (1 - p)
        g_w, g_b = np.sum(r * z) + w / C, np.sum(r)
        h_ww, h_wb, h_bb = np.sum(h * z * z) + 1 / C, np.sum(h * z), np.sum(h)
        det = h_ww * h_bb - h_wb * h_wb
        if not (np.isfinite(det) and det > 0):
            break
        d_w = (h_bb * g_w - h_wb * g_b) / det
        d_b = (h_ww * g_b - h_wb * g_w) / det
        slope = g_w * d_w + g_b * d_b  # the decrease Newton's step expects
        if not slope > 1e-14 * max(1.0, abs(f)):
            break
        step = 1.0
        while step > 1e-10:
            new = objective(w - step * d_w, b - step * d_b)
            if new <= f - 1e-4 * step * slope:
                break
            step /= 2
        else:
            break
        w, b, f = w - step * d_w, b - step * d_b, new
    return w, b


# Calibration fits one or two numbers: a few thousand samples of each class
# determine them as well as hundreds of thousands, at a fraction of the cost.
_CALIBRATION_PER_CLASS = 2000
# With many classes, fewer of each: at most this many in all (each is scored
# against every class's references), but never fewer than
# _CALIBRATION_MIN_PER_CLASS of a class. Both bound each scored part: the
# held-out samples, or each of the two halves (twice as many in all; out of
# bag, as many in all as the two halves).
_CALIBRATION_SAMPLES = 20_000
_CALIBRATION_MIN_PER_CLASS = 50


def calibration_cap(n_classes):
    """Calibration samples kept at most per class in each scored part (see
    :func:`calibration_scores`), for ``n_classes`` classes:
    :data:`_CALIBRATION_PER_CLASS` up to 10 classes, fewer beyond."""
    share = _CALIBRATION_SAMPLES // max(n_classes, 1)
    return min(_CALIBRATION_PER_CLASS, max(_CALIBRATION_MIN_PER_CLASS, share))


def cap_per_class(codes, cap, rng):
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


def log_class_prior(prior):
    """``log(prior)``, 0 for a class of prior 0: a class not seen yet
    (``partial_fit``) has no references, and its scores are infinite anyway."""
    return np.log(np.where(prior > 0, prior, 1.0))


def fit_temperature(S, codes, log_prior, weights=None):
    """Temperature ``T`` and prior scale ``a`` of ``softmax(-S / T + a *
    log_prior)`` that minimise its log loss on ``(S, codes)`` (``log_prior``
    finite, as :func:`log_class_prior` gives it).

    The class scores ``S`` compare densities as if the classes were equally
    frequent (balanced batches, share-of-class neighbourhoods); Bayes' rule
    turns them into probabilities at the training frequencies with ``a = 1``,
    which the fit may correct. ``weights`` (one per sample) restore the class
    frequencies of a calibration set that was subsampled per class. The
    targets are Platt's (1999) smoothed ones, ``(n_c + 1) / (n_c + 2)`` for
    the true class: a perfectly separated calibration set would otherwise
    drive the temperature to zero and the probabilities to 0 and 1.
    """
    n, n_classes = S.shape
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    log_prior = np.asarray(log_prior, dtype=np.float64)
    counts = np.bincount(codes, minlength=n_classes)
    on = (counts[codes] + 1.0) / (counts[codes] + 2.0)
    # Classes without references (S = inf) get no target mass; the others
    # share what the true class leaves.
    finite = np.isfinite(S)
    n_finite = finite.sum(1)
    off = (1.0 - on) / np.maximum(n_finite - 1, 1)
    rows = np.arange(n)
    true_finite = finite[rows, codes]
    on = np.where(true_finite, on, 0.0)
    S0 = np.where(finite, S, 0.0)
    # The log loss of sample i is sum_j t_ij (z_ij - lse_i), with z = -S / T
    # + a * log_prior and lse_i the log-sum-exp of its row: it needs from
    # the targets t only their mass and their weighted sums of S and of
    # log_prior, made here once.
    mass = on + off * (n_finite - true_finite)
    t_S = on * S0[rows, codes] + off * (S0.sum(1) - S0[rows, codes])
    t_prior = on * log_prior[codes] + off * (
        finite @ log_prior - np.where(true_finite, log_prior[codes], 0.0)
    )
    # Samples without a finite score add nothing to the loss.
    scored = n_finite > 0
    if not scored.all():
        S, S0, finite, weights, mass, t_S, t_prior = (
            v[scored] for v in (S, S0, finite, weights, mass, t_S, t_prior)
        )
    w = weights / weights.sum()
    # The logits -S u + a log_prior are linear in u = 1 / T and a, so the log
    # loss is convex in (u, a): Newton's method, from Bayes' rule (a = 1) at
    # T = the spread of the scores, within bounds around it (T within e^10
    # of it, a in [0, 2]). Each loss is one pass of log-sum-exp over S; its
    # gradient and Hessian, the moments of S and log_prior under each row's
    # softmax, a few products more. For 968 classes of 20 samples: 6 passes
    # and 5 steps, 1.2 s within a fit on 2 threads, where a bounded scalar
    # search of T then L-BFGS-B took 16 passes and 2.2-2.3 s.
    spread = np.std(S[finite])
    centre = np.log(spread if spread > 0 else 1.0)
    lower = np.array([np.exp(-centre - 10.0), 0.0])
    upper = np.array([np.exp(-centre + 10.0), 2.0])
    e, eS = np.empty_like(S0), np.empty_like(S0)
    prior_sq = log_prior**2

    def loss(x):
        """The weighted log loss at ``x = (u, a)``; ``e`` then holds each
        row's exp(z - its largest z), and the row sums are returned too."""
        u, a = x
        np.multiply(S, -u, out=e)
        np.add(e, a * log_prior, out=e)
        top = e.max(1)
        np.subtract(e, top[:, None], out=e)
        np.exp(e, out=e)
        total = e.sum(1)
        return w @ (u * t_S - a * t_prior + mass * (top + np.log(total))), total

    def derivatives(total):
        """Gradient and Hessian of the loss where :func:`loss` was last
        called, and the second moments of S and log_prior."""
        np.multiply(e, S0, out=eS)
        m_S = eS.sum(1) / total
        m_SS = np.einsum("ij,ij->i", eS, S0) / total
        m_Sp = (eS @ log_prior) / total
        m_p = (e @ log_prior) / total
        m_pp = (e @ prior_sq) / total
        gradient = np.array([w @ (t_S - mass * m_S), w @ (mass * m_p - t_prior)])
        wm = w * mass
        cov = wm @ (m_Sp - m_S * m_p)
        var_S, var_p = wm @ (m_SS - m_S**2), wm @ (m_pp - m_p**2)
        return gradient, np.array([[var_S, -cov], [-cov, var_p]]), wm @ m_SS, wm @ m_pp

    x = np.clip([1.0 / np.exp(centre), 1.0], lower, upper)
    value, total = loss(x)
    gradient, hessian, *moments = derivatives(total)
    # A variable whose values are the same over each row's classes (log_prior
    # of equally frequent classes; scores all equal) changes nothing: it
    # stays where it starts. Its variance is then only rounding.
    varies = np.diag(hessian) > 1e-12 * np.array(moments)
    for _ in range(100):
        # A variable at a bound that the gradient pushes against stays there.
        free = varies & ~(
            ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
        )
        step = np.zeros(2)
        if free.any():
            block = hessian[np.ix_(free, free)]
            step[free] = np.linalg.lstsq(block, -gradient[free], rcond=None)[0]
        # What the step would gain (half the Newton decrement): done when
        # that is below the loss's rounding.
        gain = -(step @ gradient) / 2
        if not (np.isfinite(gain) and gain > 1e-15 * max(1.0, abs(value))):
            break
        # Backtracking from the whole step, kept within the bounds.
        t = 1.0
        while t > 1e-10:
            trial = np.clip(x + t * step, lower, upper)
            trial_value, total = loss(trial)
            if trial_value <= value + 1e-4 * gradient @ (trial - x):
                break
            t /= 2
        else:
            break
        x, value = trial, trial_value
        gradient, hessian, *_ = derivatives(total)
    u, a = x
    return float(1.0 / u), float(a)


# -- calibration data: samples scored against references they were not among ----


@dataclass
class CalibrationData:
    """Class dissimilarities ``S`` of calibration samples of class ``codes``
    (``weights`` restore the class frequencies when classes were capped), and
    pair dissimilarities ``d`` with whether each pair is ``same``."""

    S: np.ndarray
    codes: np.ndarray
    weights: np.ndarray
    d: np.ndarray
    same: np.ndarray


def calibration_scores(
    net,
    E,
    codes,
    n_classes,
    references,
    n_neighbors,
    rng,
    train=None,
    held=None,
    class_counts=None,
    left_out=None,
):
    """:class:`CalibrationData` from the embedded training data ``E``.

    With a held-out split (indices ``train`` and ``held``), the held-out
    samples are scored against references chosen from the training ones.
    With ``left_out`` (the ensemble member that left each row of ``E`` out
    of its training, see :func:`~sksiamese._losses.prototype_loss`), out of
    bag: the rows each member left out are scored by that member alone
    against references chosen from the rows it trained on. Otherwise two
    stratified halves are each scored against the references of the other;
    samples of a class seen only once (possible after ``partial_fit``) are
    left out. ``references`` and ``n_neighbors`` are the estimator's
    parameters. ``class_counts``: the samples of each class that ``E``
    stands for, when it holds only some of them (``partial_fit``'s kept
    samples); the weights then restore those frequencies.
    """
    if left_out is not None:
        return _out_of_bag(
            net, E, codes, n_classes, references, n_neighbors, rng, left_out
        )
    cal = _calibration_data(
        net, E, codes, n_classes, references, n_neighbors, rng, train, held
    )
    if class_counts is not None:
        kept = np.bincount(codes, minlength=n_classes)
        cal.weights = cal.weights * (class_counts / np.maximum(kept, 1))[cal.codes]
    return cal


def _calibration_data(
    net, E, codes, n_classes, references, n_neighbors, rng, train, held
):
    """:func:`calibration_scores` at the frequencies of ``codes``."""
    module, device = net.module_, net.device
    if held is not None:
        return _scored(
            module,
            device,
            E,
            codes,
            held,
            train,
            n_classes,
            references,
            n_neighbors,
            rng,
        )
    # Indices of the samples kept, not a copy of their embeddings.
    kept = np.flatnonzero(np.bincount(codes, minlength=n_classes)[codes] >= 2)
    kept_codes = codes[kept]
    half = np.zeros(len(kept), dtype=bool)
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(kept_codes == c))
        half[idx[: len(idx) // 2]] = True
    parts = [
        _scored(
            module,
            device,
            E,
            codes,
            kept[q],
            kept[~q],
            n_classes,
            references,
            n_neighbors,
            rng,
        )
        for q in (half, ~half)
    ]
    return _concatenated(parts)


def _concatenated(parts):
    """The :class:`CalibrationData` of ``parts``, one after the other."""
    return CalibrationData(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("S", "codes", "weights", "d", "same")
        )
    )


def _out_of_bag(net, E, codes, n_classes, references, n_neighbors, rng, left_out):
    """:func:`calibration_scores` of the rows of ``E`` each scored by the
    ensemble member that left it out (``left_out``), against references
    from the rows that member trained on
    (:func:`~sksiamese._references.member_references`: a class is clustered
    once for all members).

    A member compares its own embeddings (its columns of ``E``) as the
    ensemble compares whole ones (:meth:`SiameseModule.one_member`). Each
    member's rows are at most ``2 / n_members`` of :func:`calibration_cap`
    per class, so that all of them together are as many as the two halves
    would be.
    """
    module = net.module_
    n_members = module.n_members
    one = module.one_member()
    cap = max(1, -(-2 * calibration_cap(n_classes) // n_members))
    refs = member_references(
        E, codes, left_out, n_members, references, rng, device=net.device
    )
    parts = []
    for m in range(n_members):
        rows = np.flatnonzero(left_out == m)
        if not len(rows):
            continue
        parts.append(
            _scored(
                one,
                net.device,
                _MemberColumns(E, m, n_members),
                codes,
                rows,
                np.flatnonzero(left_out != m),
                n_classes,
                refs[m],
                n_neighbors,
                rng,
                cap,
            )
        )
    return _concatenated(parts)


def _scored(
    module, device, E, codes, q, r, n_classes, references, n_neighbors, rng, cap=None
):
    """The samples ``q`` (at most ``cap``, by default :func:`calibration_cap`,
    per class) scored by ``module`` against references chosen from the
    samples ``r`` (``references``: the estimator's parameter, or the
    :class:`~sksiamese._references.References` already chosen)."""
    # The rows ``r`` are most of ``E`` (a half, or all but the held-out
    # share): they are indexed where needed, never copied as a whole.
    refs = references
    if not isinstance(refs, References):
        refs = select_references(E, codes, references, rng, rows=r, device=device)
    if cap is None:
        cap = calibration_cap(n_classes)
    keep, weights = cap_per_class(codes[q], cap, rng)
    q = q[keep]
    Q = E[q]
    S = class_dissimilarity(
        module,
        Q,
        refs.embeddings,
        refs.codes,
        n_classes,
        n_neighbors,
        refs.weights,
        device=device,
    )
    d, same = calibration_pairs(module, device, Q, codes[q], E, codes[r], rng, rows=r)
    return CalibrationData(S, codes[q], weights, d, same)


@torch.inference_mode()
def _rowwise(module, device, A, B):
    """``module.rowwise`` of the embedding rows ``A`` and ``B``, on ``device``."""
    a = torch.as_tensor(A, device=device)
    b = torch.as_tensor(B, device=device)
    return module.rowwise(a, b).cpu().numpy()


def calibration_pairs(
    module, device, Q, q_codes, R, r_codes, rng, max_queries=10_000, rows=None
):
    """Dissimilarities by ``module`` (on ``device``) of one same-class and
    one other-class pair per query (at most ``max_queries`` of them), and
    whether each pair is same. With ``rows``, the references are those rows
    of ``R`` (``r_codes`` theirs)."""
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
    if rows is not None:
        same_pick, other_pick = rows[same_pick], rows[other_pick]
    d_same = _rowwise(module, device, Q, R[same_pick])
    d_other = _rowwise(module, device, Q, R[other_pick])
    d = np.concatenate([d_same, d_other])
    same = np.r_[np.ones(len(Q)), np.zeros(len(Q))]
    return d, same


# -- class weights and priors ----------------------------------------------------


def class_weight_vector(class_weight, classes, strict=True):
    """The ``class_weight`` parameter as one weight per class of ``classes``,
    or None (None and "balanced" weigh every class alike).

    A label that ``classes`` lacks is an error when ``strict``, else skipped
    (classes replaced by fit_references); unnamed classes weigh 1.
    """
    if class_weight is None or isinstance(class_weight, str):
        return None
    position = {label: i for i, label in enumerate(classes.tolist())}
    weights = np.ones(len(classes))
    for label, weight in class_weight.items():
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


def prior_term(class_prior, prior_scale, class_weight, classes):
    """The prior term of the classifier's logits, one value per class.

    The class scores are balanced (as if every class were equally frequent);
    ``prior_scale * log(class_prior)`` turns them into probabilities at the
    training frequencies (fitted with the temperature). ``class_weight=
    "balanced"`` removes the training frequencies again (Bayes' rule); a
    dict multiplies each class's odds by its weight, as if its training
    frequency had been so much larger, as scikit-learn's class weights do:
    ``{c: 1, ...}`` is None, and the weights of
    :func:`~sklearn.utils.class_weight.compute_class_weight` are
    ``"balanced"``. ``class_prior`` None (model files written before priors
    were kept): balanced scores.
    """
    if class_prior is None:
        log_prior, prior_scale = np.zeros(len(classes)), 0.0
    else:
        log_prior = log_class_prior(class_prior)
    if isinstance(class_weight, str):  # "balanced"
        return (prior_scale - 1.0) * log_prior
    weights = class_weight_vector(class_weight, classes, strict=False)
    term = prior_scale * log_prior
    return term if weights is None else term + np.log(weights)


def softmax_rows(logits):
    """``scipy.special.softmax(logits, axis=1)``, faster for few classes.

    numpy reduces over a short last axis one row at a time: for 400,000
    rows of 2 classes the row maxima alone took 14 ms and scipy's softmax
    24 ms, about as long as scoring those rows against the references on a
    GPU (23 ms on an H200). With fewer than 8 classes the columns are made
    rows first, so that the maxima and sums are elementwise work over whole
    rows (6 ms); the sums then add in the same order, so the values are
    scipy's bit for bit.
    """
    if logits.shape[1] >= 8:  # then numpy's row sums add pairwise
        return softmax(logits, axis=1)
    columns = np.ascontiguousarray(logits.T)
    exp = np.exp(columns - columns.max(axis=0))
    exp /= exp.sum(axis=0)
    return np.ascontiguousarray(exp.T)


# -- pairs -------------------------------------------------------------------------


#: The ``C`` of :func:`pair_logistic`: a prior on the slope of the pair
#: estimator's calibration, per standard deviation of the dissimilarities.
#: Its calibration pairs are the held-out ones, 10% of the pairs by default:
#: few where the pairs are few, and a handful that happen to be separated gave
#: an almost unbounded slope (``C=1e4``), probabilities of 0 and 1 and a log
#: loss far above a constant 0.5's. Test log loss of the default estimator,
#: mean over 5 seeds, for 20 / 60 / 200 / 600 / 2,000 training pairs of
#: digits: 1.72 / 0.89 / 1.20 / 0.21 / 0.037 with ``C=1e4``, 0.71 / 0.40 /
#: 0.35 / 0.17 / 0.039 with 10; of a generated 10-class set: 3.85 / 0.81 /
#: 0.68 / 0.62 / 0.49 against 1.41 / 0.77 / 0.67 / 0.62 / 0.49. (3 did
#: better on the fewest pairs, worse on the most; 30 the reverse.)
PAIR_SLOPE_C = 10.0


def pair_logistic(d, same):
    """``(slope, intercept)`` of the probability that a pair is same, from the
    dissimilarities ``d`` of calibration pairs: :func:`fit_logistic_1d` with
    a prior on the slope (:data:`PAIR_SLOPE_C`), or, where closer pairs are
    no more often the same, a probability (almost) flat at the fraction of
    same pairs, still decreasing so that it ranks pairs as the dissimilarity
    does."""
    slope, intercept = fit_logistic_1d(d, same, C=PAIR_SLOPE_C)
    if not slope < 0:
        rate = np.clip(same.mean(), 1e-3, 1 - 1e-3)
        slope, intercept = -1e-6, float(logit(rate)) + 1e-6 * float(np.mean(d))
    return slope, intercept
