"""A generator of survey-like records: rare cases, mixed answers, blanks."""

import numbers

import numpy as np
from sklearn.utils import check_random_state

# Every ordinal question has five levels, coded 1 to 5 (a Likert scale).
_N_LEVELS = 5
# Options of a one-hot group question are drawn from this range (inclusive).
_GROUP_SIZES = (3, 5)
# Odds ratio of a case leaving a "sensitive" question blank, with
# ``informative_blanks=True``.
_BLANK_ODDS_RATIO = 5.0


def make_survey(
    n_samples=1000,
    n_questions=20,
    *,
    positive_fraction=0.05,
    class_sep=1.0,
    blank_rate=0.1,
    informative_blanks=True,
    random_state=None,
    as_frame=False,
):
    """Generate survey-like records of rare cases and many controls.

    Each record answers ``n_questions`` questions of three kinds, as in a
    clinical or social survey:

    - ordinal questions (the rest, a little over half): an answer from 1 to
      5, one column each;
    - yes/no questions (a third of those that are not groups, rounded down):
      1 for yes, 0 for no;
    - one-hot groups (one question in five, rounded down): a choice among 3
      to 5 options, one 0/1 column per option.

    Answers are driven by two latent traits shared by all questions plus
    noise, so questions are correlated. Half of the questions (rounded up)
    are informative: for cases, the latent score behind the answer moves up
    or down by ``class_sep`` standard deviations (for a group, the scores of
    its options move by about as much).

    Any answer may be left blank (NaN), with probability ``blank_rate``; a
    blank one-hot group question leaves all its columns blank. With
    ``informative_blanks=True``, cases leave a random half of the questions
    (the "sensitive" ones) blank with 5 times the odds of controls, so being
    blank carries signal of its own, independently of the answers.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of records.

    n_questions : int, default=20
        Number of questions. One-hot groups have several columns, so ``X`` has
        more columns than questions when ``n_questions >= 5``.

    positive_fraction : float, default=0.05
        Fraction of cases (label 1), in (0, 1). The number of cases is
        ``round(positive_fraction * n_samples)``, at least 1 and at most
        ``n_samples - 1`` (so that both classes occur).

    class_sep : float, default=1.0
        Shift of the informative answers of cases, in standard deviations of
        their latent score. 0 makes the answers uninformative (only blanks can
        then separate the classes).

    blank_rate : float, default=0.1
        Probability that an answer is left blank (by controls, when
        ``informative_blanks=True``), in [0, 1).

    informative_blanks : bool, default=True
        Whether cases leave the sensitive questions blank more often than
        controls (odds ratio 5). If False, blanks are missing completely at
        random.

    random_state : int, RandomState instance or None, default=None
        Seeds the question layout, the answers and the blanks.

    as_frame : bool, default=False
        If True, ``X`` is a pandas DataFrame with named columns (``q01``,
        ``q02``, ... and ``q19=a``, ``q19=b``, ... for one-hot groups) and ``y``
        a Series named ``"case"``. Requires pandas.

    Returns
    -------
    X : ndarray or DataFrame of shape (n_samples, n_features)
        Answers, float64, NaN for blanks. Ordinal questions first, then yes/no
        questions, then one-hot groups.

    y : ndarray or Series of shape (n_samples,)
        1 for a case, 0 for a control (int).

    See Also
    --------
    sklearn.datasets.make_classification : Gaussian clusters, no blanks.
    imblearn.datasets.make_imbalance : Make an existing dataset imbalanced.

    Examples
    --------
    >>> import numpy as np
    >>> from sksiamese.datasets import make_survey
    >>> X, y = make_survey(n_samples=200, n_questions=10, random_state=0)
    >>> X.shape, int(y.sum())
    ((200, 15), 10)
    >>> bool(np.isnan(X).any())
    True
    """
    _check_params(
        n_samples,
        n_questions,
        positive_fraction,
        class_sep,
        blank_rate,
        informative_blanks,
        as_frame,
    )
    rng = check_random_state(random_state)

    n_group = n_questions // 5
    n_binary = (n_questions - n_group) // 3
    n_ordinal = n_questions - n_group - n_binary
    kinds = ["ordinal"] * n_ordinal + ["binary"] * n_binary + ["group"] * n_group
    group_sizes = rng.randint(_GROUP_SIZES[0], _GROUP_SIZES[1] + 1, size=n_group)

    n_pos = min(n_samples - 1, max(1, round(positive_fraction * n_samples)))
    y = np.zeros(n_samples, dtype=int)
    y[rng.choice(n_samples, n_pos, replace=False)] = 1

    informative = np.zeros(n_questions, dtype=bool)
    informative[rng.choice(n_questions, (n_questions + 1) // 2, replace=False)] = True
    sensitive = np.zeros(n_questions, dtype=bool)
    if informative_blanks:
        sensitive[rng.choice(n_questions, (n_questions + 1) // 2, replace=False)] = True

    traits = rng.standard_normal((n_samples, 2))
    columns, names = [], []
    group_index = 0
    for q, kind in enumerate(kinds):
        name = f"q{q + 1:0{len(str(n_questions))}d}"
        # Direction of the case effect: some questions are answered higher by
        # cases, others lower.
        shift = class_sep * rng.choice([-1.0, 1.0]) * informative[q]
        if kind == "group":
            k = group_sizes[group_index]
            group_index += 1
            loadings = rng.normal(scale=0.7, size=(2, k))
            effect = shift * rng.standard_normal(k)
            scores = (
                traits @ loadings
                + y[:, None] * effect
                + rng.gumbel(size=(n_samples, k))
            )
            values = np.eye(k)[scores.argmax(1)]
            names += [f"{name}={chr(ord('a') + i)}" for i in range(k)]
        else:
            # A latent score of unit variance: 0.6 from the traits, the rest noise.
            loading = rng.standard_normal(2)
            loading *= 0.6 / np.linalg.norm(loading)
            latent = traits @ loading + 0.8 * rng.standard_normal(n_samples)
            latent += y * shift
            if kind == "ordinal":
                cuts = np.linspace(-1.5, 1.5, _N_LEVELS - 1) + rng.uniform(-0.5, 0.5)
                values = 1.0 + np.searchsorted(cuts, latent)
            else:
                values = (latent > rng.uniform(-1.0, 1.0)).astype(float)
            values = values[:, None]
            names.append(name)
        odds = blank_rate / (1.0 - blank_rate)
        odds = np.where(y & sensitive[q], odds * _BLANK_ODDS_RATIO, odds)
        blank = rng.random_sample(n_samples) < odds / (1.0 + odds)
        values = values.astype(float)
        values[blank] = np.nan
        columns.append(values)

    X = np.hstack(columns)
    if as_frame:
        import pandas as pd

        return pd.DataFrame(X, columns=names), pd.Series(y, name="case")
    return X, y


def _check_params(
    n_samples,
    n_questions,
    positive_fraction,
    class_sep,
    blank_rate,
    informative_blanks,
    as_frame,
):
    def integer(value, name, low):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int; got {value!r}.")
        if value < low:
            raise ValueError(f"{name} must be at least {low}; got {value}.")

    def real(value, name):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number; got {value!r}.")

    integer(n_samples, "n_samples", 2)
    integer(n_questions, "n_questions", 1)
    real(positive_fraction, "positive_fraction")
    if not 0 < positive_fraction < 1:
        raise ValueError(
            f"positive_fraction must be in (0, 1); got {positive_fraction}."
        )
    real(class_sep, "class_sep")
    if not class_sep >= 0:
        raise ValueError(f"class_sep must be at least 0; got {class_sep}.")
    real(blank_rate, "blank_rate")
    if not 0 <= blank_rate < 1:
        raise ValueError(f"blank_rate must be in [0, 1); got {blank_rate}.")
    for value, name in (
        (informative_blanks, "informative_blanks"),
        (as_frame, "as_frame"),
    ):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool; got {value!r}.")
