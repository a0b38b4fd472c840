"""Choosing a binary decision threshold from held-out scores (numpy only)."""

import numbers

import numpy as np

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
    """Validate the arguments of ``calibrate_threshold``."""
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}.")
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not beta > 0:
        raise ValueError(f"beta must be a positive number; got {beta!r}.")
    for name, value in (("min_tnr", min_tnr), ("min_tpr", min_tpr)):
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not 0 <= value <= 1
        ):
            raise ValueError(f"{name} must be in [0, 1]; got {value!r}.")
