"""The ``sksiamese`` command line.

``sksiamese compare [DATA.csv --target COLUMN]`` cross-validates
:class:`~sksiamese.SiameseClassifier` next to LogisticRegression,
RandomForestClassifier and HistGradientBoostingClassifier and prints one table:
the mean and standard deviation over folds of each score, and the mean fit time.
Without a file it runs on scikit-learn's bundled breast-cancer data.

Exit status: 0 on success, 1 when a model failed on some fold (the others are
still reported), 2 on bad usage (argparse's usage summary, then the error) or
bad input (a one-line error), or when the ``--plot`` chart could not be saved;
errors go to stderr.
"""

import argparse
import csv
import functools
import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout

import numpy as np

from . import __version__

EXIT_OK, EXIT_MODEL_FAILED, EXIT_USAGE = 0, 1, 2

# Cell values read as blanks (NaN) in a CSV file, besides an empty cell.
BLANKS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?")

MODELS = {
    "siamese": "SiameseClassifier",
    "logistic": "LogisticRegression",
    "forest": "RandomForestClassifier",
    "boosting": "HistGradientBoostingClassifier",
}

# The scores of this command; any scikit-learn classification scorer name
# (``neg_log_loss``, ``roc_auc_ovr``, ``f1``, ...) is accepted too.
SCORES = {
    "roc_auc": "ROC AUC (one-vs-rest, macro-averaged for more than 2 classes)",
    "average_precision": "average precision (macro over classes when more than 2)",
    "balanced_accuracy": "balanced accuracy (mean of per-class recall) at each "
    "model's default threshold",
    "tuned_balanced_accuracy": "two classes: balanced accuracy at the threshold "
    "tuned on the training fold by TunedThresholdClassifierCV(scoring="
    "'balanced_accuracy', cv=3), the same protocol for every model",
    "geometric_mean": "geometric mean of the per-class recalls (imbalanced-learn's "
    "geometric_mean_score)",
    "accuracy": "fraction of correct predictions",
    "f1_macro": "F1 score averaged over classes",
    "log_loss": "log loss of the predicted probabilities (lower is better)",
}
# Default scores: ranking first; then decisions at the default threshold and,
# for two classes, at a tuned one; G-mean when one class is rare.
DEFAULT_SCORING = "roc_auc,average_precision,balanced_accuracy"
TUNED = "tuned_balanced_accuracy"
BINARY_SCORING = TUNED
RARE_SCORING = "geometric_mean"
RARE_SHARE = 0.2
# Prefixes of scikit-learn's scorer names that apply to classifiers.
_SKLEARN_CLASSIFIER_SCORERS = (
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "d2_brier_score",
    "d2_log_loss_score",
    "f1",
    "jaccard",
    "matthews_corrcoef",
    "neg_brier_score",
    "neg_log_loss",
    "neg_negative_likelihood_ratio",
    "positive_likelihood_ratio",
    "precision",
    "recall",
    "roc_auc",
    "top_k_accuracy",
)


class InputError(Exception):
    """Bad usage or bad input: reported in one line, exit status 2."""


# -- data ---------------------------------------------------------------------


def _builtin_data():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data, data.target, "breast_cancer (bundled with scikit-learn)"


def read_csv(path, target, delimiter=","):
    """Features and labels from a CSV file with a header row.

    Every column except ``target`` must be numeric; the cells listed in
    ``BLANKS`` are blanks (NaN). Read with the standard library's :mod:`csv`
    module, so quoted fields may hold the delimiter.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Integer labels when every label is an integer, else strings.
    feature_names : list of str
    """
    if not os.path.isfile(path):
        raise InputError(f"no such file: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                raise InputError(
                    f"{path} is empty; expected a header row of column names"
                )
            header = [h.strip() for h in header]
            _check_header(path, header, target, delimiter)
            cells = [[] for _ in header]
            lines = []  # the line of the file each data row ends on
            for row in reader:
                if not row:
                    continue
                lines.append(reader.line_num)
                if len(row) != len(header):
                    raise InputError(
                        f"line {reader.line_num} of {path} has {len(row)} fields; "
                        f"the header has {len(header)}"
                    )
                for values, cell in zip(cells, row, strict=True):
                    values.append(cell)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    columns = {
        name: _parse_cells(values, numeric=name != target)
        for name, values in zip(header, cells, strict=True)
    }
    labels = columns.pop(target)
    if not labels:
        raise InputError(f"{path} has a header but no data rows")
    blank = [i for i, v in enumerate(labels) if v is None]
    if blank:
        raise InputError(
            f"the target column {target!r} has {len(blank)} blank cell(s), the first "
            f"in data row {blank[0] + 1}; remove those rows"
        )
    for name, values in columns.items():
        if isinstance(values, list):  # not parsed as numbers
            raise InputError(_not_numeric(path, name, values, lines))
        if np.isnan(values).all():
            raise InputError(
                f"column {name!r} is blank in every row; drop it (no model can "
                "learn from it)"
            )
        if np.isinf(values).any():
            raise InputError(f"column {name!r} holds infinite values")
    names = list(columns)
    X = np.column_stack([columns[n] for n in names])
    return X, _parse_labels(labels, target), names


def _check_header(path, header, target, delimiter):
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise InputError(f"{path} has duplicate column names: {duplicated}")
    unnamed = [i + 1 for i, h in enumerate(header) if not h]
    if unnamed:
        raise InputError(
            f"column {unnamed[0]} of {path} has no name; a row index written by "
            "pandas (DataFrame.to_csv without index=False) looks like this, and "
            "would be read as a feature: drop the column or name it"
        )
    if target not in header:
        shown = ", ".join(repr(h) for h in header[:10])
        more = f" and {len(header) - 10} more" if len(header) > 10 else ""
        hint = ""
        others = [d for d in (";", "\t", "|", ",") if d != delimiter]
        found = [d for d in others if len(header) == 1 and d in header[0]]
        if found:
            shown_d = "tab" if found[0] == "\t" else repr(found[0])
            hint = (
                f"; the header is one column holding {shown_d}: if that separates "
                f"the fields, pass --delimiter {shown_d}"
            )
        raise InputError(
            f"no column {target!r} in {path}; the columns are {shown}{more}{hint}"
        )
    if len(header) < 2:
        raise InputError(f"{path} has no feature columns besides {target!r}")


def _parse_cells(values, numeric):
    """Text cells of one column: blanks as None (labels) or NaN (numbers); a
    list of str/None when ``numeric`` is False or a cell is not a number."""
    blanks = set(BLANKS)
    values = [v.strip() for v in values]
    if numeric:
        try:
            return np.array(
                [np.nan if v in blanks else float(v) for v in values], dtype=float
            )
        except ValueError:
            pass
    return [None if v in blanks else v for v in values]


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _not_numeric(path, name, values, lines):
    """The message for a feature column whose ``values`` (str, or None for
    blanks) are not all numbers: it names the first cell that is not."""
    bad = [i for i, v in enumerate(values) if v is not None and not _is_number(v)]
    filled = sum(v is not None for v in values)
    where = (
        f"column {name!r} is not numeric: line {lines[bad[0]]} of {path} holds "
        f"{values[bad[0]]!r}"
    )
    if 2 * len(bad) < filled:  # mostly numbers: stray cells, not a text column
        return (
            f"{where}, the first of {len(bad)} cell(s) that are neither numbers nor "
            "blanks (an empty cell, NA, ...); fix those cells, or drop the column"
        )
    return f"{where}; encode it as numbers, or drop it"


def _parse_labels(labels, target):
    labels = [v.strip() for v in labels]
    try:
        ints = np.array([int(v) for v in labels])
    except ValueError:
        pass
    else:
        # Beyond int64 numpy keeps Python ints as objects: labels, as text.
        return ints if ints.dtype != object else np.array(labels)
    try:
        values = np.array([float(v) for v in labels])
    except ValueError:
        return np.array(labels)
    if not np.isfinite(values).all():
        return np.array(labels)
    fractional = np.flatnonzero(values != np.round(values))
    if len(fractional) == 0:  # "1.0", "2.0": integer labels written as floats
        if np.abs(values).max() < 2**63:
            return values.astype(np.int64)
        return np.array(labels)  # "1e20": beyond int64, as text
    raise InputError(
        f"the target column {target!r} holds non-integer numbers (e.g. "
        f"{labels[fractional[0]]!r}); compare needs class labels"
    )


def _check_classes(y, folds):
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise InputError(
            f"the target has only one class ({classes[0].item()!r}); a classifier "
            "needs at least two"
        )
    for label, count in zip(classes, counts, strict=True):
        # StratifiedKFold puts ceil(count / folds) samples of the class in the
        # largest test fold; the rest train, and a twin network needs 2 of each.
        if count < folds or count - math.ceil(count / folds) < 2:
            raise InputError(
                f"class {label.item()!r} has only {count} sample(s): too few for "
                f"{folds}-fold cross-validation (every test fold needs one and every "
                "training fold two); lower --folds or drop the class"
            )
    return classes


# -- models and scores --------------------------------------------------------


def make_models(names, *, random_state, max_epochs, has_blanks):
    """The estimators to compare, by display name."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Imported here, not at the top: torch takes seconds to import, and the
    # command's --help and its input checks need none of it.
    from ._classifier import SiameseClassifier

    siamese = {} if max_epochs is None else {"max_epochs": max_epochs}
    # SiameseClassifier scales its inputs and encodes blanks itself, and the
    # tree ensembles split on blanks natively; only the linear model needs them
    # imputed.
    logistic = [StandardScaler(), LogisticRegression(max_iter=1000)]
    if has_blanks:
        logistic.insert(0, SimpleImputer(strategy="median"))
    factories = {
        "siamese": lambda: SiameseClassifier(random_state=random_state, **siamese),
        "logistic": lambda: make_pipeline(*logistic),
        "forest": lambda: RandomForestClassifier(random_state=random_state),
        "boosting": lambda: HistGradientBoostingClassifier(random_state=random_state),
    }
    return {MODELS[n]: factories[n]() for n in names}


def _is_classifier_scorer(name):
    from sklearn.metrics import get_scorer_names

    return (
        name in get_scorer_names()
        and name.startswith(_SKLEARN_CLASSIFIER_SCORERS)
        and not name.endswith("_samples")  # multilabel only
    )


class Predictions:
    """``predict`` and ``predict_proba`` of a fitted ``model`` on ``X``, each
    computed at most once however many scores read them."""

    def __init__(self, model, X):
        self.model, self.X = model, X

    @functools.cached_property
    def proba(self):
        return self.model.predict_proba(self.X)

    @functools.cached_property
    def labels(self):
        return self.model.predict(self.X)


def score(name, predictions, y, classes):
    """One score of a fitted model's ``predictions`` (:class:`Predictions`)
    against the labels ``y``: a score of :data:`SCORES` (those that read
    probabilities use ``predict_proba``, the others ``predict``), or a
    scikit-learn scorer by name."""
    from sklearn import metrics

    binary = len(classes) == 2
    if name in ("roc_auc", "average_precision", "log_loss"):
        proba = predictions.proba
        if name == "log_loss":
            return metrics.log_loss(y, proba, labels=classes)
        if binary:
            fn = getattr(metrics, f"{name}_score")
            return fn(y == classes[1], proba[:, 1])
        if name == "roc_auc":
            return metrics.roc_auc_score(
                y, proba, multi_class="ovr", average="macro", labels=classes
            )
        from sklearn.preprocessing import label_binarize

        onehot = label_binarize(y, classes=classes)
        return metrics.average_precision_score(onehot, proba, average="macro")
    if name == "geometric_mean":
        from imblearn.metrics import geometric_mean_score

        return geometric_mean_score(y, predictions.labels, average="multiclass")
    if name == "f1_macro":
        return metrics.f1_score(y, predictions.labels, average="macro")
    if name in ("balanced_accuracy", "accuracy"):
        return getattr(metrics, f"{name}_score")(y, predictions.labels)
    return metrics.get_scorer(name)(predictions.model, predictions.X, y)


def check_scoring(scoring, X, y, classes):
    """Refuse, before any model is trained, a score that cannot be computed on
    this target (a binary score on several classes, for instance)."""
    from sklearn.dummy import DummyClassifier

    if TUNED in scoring and len(classes) != 2:
        raise InputError(
            f"{TUNED} tunes the threshold of two classes; the target has {len(classes)}"
        )
    dummy = DummyClassifier(strategy="stratified", random_state=0).fit(X, y)
    predictions = Predictions(dummy, X)
    for name in scoring:
        if name == TUNED:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score(name, predictions, y, classes)
        except (ValueError, TypeError) as exc:
            message = str(exc).strip().splitlines()
            raise InputError(
                f"score {name!r} cannot be computed on this target: "
                f"{message[0] if message else type(exc).__name__}"
            ) from None


def default_scoring(y, classes):
    """The default scores for the target ``y``."""
    names = DEFAULT_SCORING.split(",")
    if len(classes) == 2:
        names.append(BINARY_SCORING)
    if np.unique(y, return_counts=True)[1].min() < RARE_SHARE * len(y):
        names.append(RARE_SCORING)
    return names


class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line
    per step otherwise (logs, CI)."""

    def __init__(self, stream, enabled=True):
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self._width = 0

    def update(self, text):
        if not self.enabled:
            return
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


@contextmanager
def _recorded(texts):
    """Add the distinct warnings (UserWarning and subclasses) raised in the
    block to the set ``texts``, one line each however they were wrapped.

    Nothing a model prints or warns may mix with the table or JSON on stdout:
    its output goes to stderr, and its warnings are counted and reported once.
    """
    with (
        warnings.catch_warnings(record=True) as caught,
        redirect_stdout(sys.stderr),
    ):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            texts |= {
                f"{w.category.__name__}: {' '.join(str(w.message).split())}"
                for w in caught
                if issubclass(w.category, UserWarning)
            }


def _fit(model, X, y, tune, random_state):
    """Fit ``model`` (inside ``TunedThresholdClassifierCV`` when ``tune``).

    Returns the fitted model, the tuned one (or None), the time of one fit,
    and the distinct warnings (UserWarning and subclasses) raised.
    """
    from sklearn.model_selection import StratifiedKFold, TunedThresholdClassifierCV

    texts = set()
    with _recorded(texts):
        tic = time.perf_counter()
        tuned = None
        if tune:
            inner = StratifiedKFold(3, shuffle=True, random_state=random_state)
            try:
                tuned = TunedThresholdClassifierCV(
                    model,
                    scoring="balanced_accuracy",
                    cv=inner,
                    random_state=random_state,
                ).fit(X, y)
            except ValueError as exc:  # e.g. constant probabilities on a fold
                message = str(exc).strip().splitlines()[0]
                texts.add(f"{TUNED}: the threshold could not be tuned ({message})")
                tic = time.perf_counter()
            else:
                fit_time = (time.perf_counter() - tic) / (inner.get_n_splits() + 1)
        if tuned is None:
            fitted = model.fit(X, y)
            fit_time = time.perf_counter() - tic
        else:
            fitted = tuned.estimator_
    return fitted, tuned, fit_time, texts


def _score_fold(scoring, fitted, tuned, X, y, classes):
    """The scores of one fold's ``fitted`` model (and ``tuned``, or None) on
    its test samples ``(X, y)``, by name."""
    from sklearn.metrics import balanced_accuracy_score

    predictions = Predictions(fitted, X)
    values = {}
    for s in scoring:
        if s != TUNED:
            values[s] = float(score(s, predictions, y, classes))
        elif tuned is None:
            values[s] = np.nan
        else:
            values[s] = float(balanced_accuracy_score(y, tuned.predict(X)))
    return values


def cross_validate_models(
    models, X, y, classes, *, folds, random_state, scoring, progress
):
    """Fit and score every model on every fold, one at a time.

    With ``"tuned_balanced_accuracy"`` among the scores, every model is fitted
    inside ``TunedThresholdClassifierCV(scoring="balanced_accuracy", cv=3)``:
    that score is at the tuned threshold, the others are of the model refitted
    on the whole training fold (the same model as without tuning), and the
    fit time is that of one of its 4 fits.

    Returns a list of dicts (one per model) with per-fold ``scores`` and
    ``fit_time`` (of the folds before the failure, if any), ``error`` (None,
    or the message of the first failure) and
    ``warnings`` (``{message: number of folds}`` of the warnings of fit and
    scoring).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    splits = list(cv.split(X, y))
    tune = TUNED in scoring
    n_fits, done, start = len(models) * folds, 0, time.perf_counter()
    results = []
    for name, model in models.items():
        result = {"model": name, "scores": {s: [] for s in scoring}, "fit_time": []}
        result["error"], result["warnings"] = None, {}
        for k, (train, test) in enumerate(splits, start=1):
            elapsed = time.perf_counter() - start
            progress.update(
                f"sksiamese compare: {name} fold {k}/{folds} "
                f"[{done + 1}/{n_fits} fits, {elapsed:.0f} s]"
            )
            try:
                fitted, tuned, fit_time, texts = _fit(
                    clone(model), X[train], y[train], tune, random_state
                )
                try:
                    with _recorded(texts):
                        values = _score_fold(
                            scoring, fitted, tuned, X[test], y[test], classes
                        )
                finally:  # a warning of fit and of scoring counts once a fold
                    for text in texts:
                        result["warnings"][text] = result["warnings"].get(text, 0) + 1
                # Only whole folds count: a fold's values once it is scored.
                result["fit_time"].append(fit_time)
                for s, value in values.items():
                    result["scores"][s].append(value)
            except Exception as exc:  # report, keep going with the other models
                message = str(exc).strip().splitlines()
                result["error"] = (
                    f"fold {k}: {type(exc).__name__}: {message[0] if message else ''}"
                )
                done += folds - k + 1
                break
            done += 1
        results.append(result)
    progress.close()
    return results


# -- output -------------------------------------------------------------------


def _mean_std(values):
    """Mean and standard deviation over the folds where a score could be
    computed; NaN for both when it could be on none."""
    valid = [v for v in values if not np.isnan(v)]
    if not valid:
        return np.nan, np.nan
    return float(np.mean(valid)), float(np.std(valid))


def _summary(values, folds, failed):
    """Mean and standard deviation over the folds where a score could be
    computed (NaN: it could not; None in JSON), and the value of each of the
    ``folds``. A model that ``failed`` has the values of the folds before the
    failure, then None, and no mean or standard deviation (as in the table)."""
    mean, std = _mean_std(values)
    if failed or np.isnan(mean):
        mean = std = None
    per_fold = [None if np.isnan(v) else float(v) for v in values]
    return {
        "mean": mean,
        "std": std,
        "folds": per_fold + [None] * (folds - len(per_fold)),
    }


def to_json(results, dataset, args, scoring):
    return {
        "dataset": dataset,
        "cv": {
            "folds": args.folds,
            "shuffle": True,
            "stratified": True,
            "random_state": args.random_state,
        },
        "threads": args.threads,
        "scoring": scoring,
        "results": [
            {
                "model": r["model"],
                "scores": {
                    s: _summary(v, args.folds, r["error"] is not None)
                    for s, v in r["scores"].items()
                },
                "fit_time": _summary(r["fit_time"], args.folds, r["error"] is not None),
                "error": r["error"],
                "warnings": r["warnings"],
            }
            for r in results
        ],
    }


def format_table(results, scoring, stream):
    pm = "±"
    try:
        pm.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        pm = "+/-"
    cells = []
    for r in results:
        row = [r["model"]]
        for s in scoring:
            v = [x for x in r["scores"][s] if not np.isnan(x)]
            if r["error"] is not None or not v:
                row.append("-")
            else:
                row.append(f"{np.mean(v):.3f} {pm} {np.std(v):.3f}")
        ft = r["fit_time"]
        row.append("-" if r["error"] is not None or not ft else f"{np.mean(ft):.2f}")
        cells.append(row)
    header = ["model", *scoring, "fit time (s)"]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]

    def line(row):
        first = row[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    for r in results:
        if r["error"] is not None:
            out.append(f"{r['model']} failed on {r['error']}")
    return "\n".join(out)


def format_warnings(results, folds):
    """One line per distinct warning of each model's fits and scores."""
    return [
        f"{r['model']}: {text} (in {count} of {folds} folds)"
        for r in results
        for text, count in r["warnings"].items()
    ]


def plot_comparison(results, scoring, path):
    """Save a chart: one panel per score (mean and standard deviation over
    folds; "n/a" for a model whose score could be computed on no fold) and
    one for the mean fit time (log scale)."""
    from matplotlib.figure import Figure

    ok = [r for r in results if r["error"] is None]
    names = [r["model"] for r in ok]
    pos = np.arange(len(names))
    colors = [f"C{i}" for i in range(len(names))]
    n_panels = len(scoring) + 1
    fig = Figure(
        figsize=(2.6 * n_panels + 2.2, 0.45 * len(names) + 1.4), layout="constrained"
    )
    axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, scoring, strict=False):
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        means, stds = np.array([_mean_std(r["scores"][name]) for r in ok]).T
        shown = np.isfinite(means) & np.isfinite(stds)
        for p, m, s, c, drawn in zip(pos, means, stds, colors, shown, strict=True):
            if not drawn:  # not computed on any fold (e.g. constant predictions)
                ax.text(
                    0.5,
                    p,
                    "n/a",
                    transform=ax.get_yaxis_transform(),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=c,
                )
                continue
            ax.errorbar(m, p, xerr=s, fmt="o", color=c, capsize=3)
            ax.annotate(
                f"{m:.3f}",
                (m, p),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        if not shown.any():
            ax.set_xticks([])
            ax.set_xlabel("not computed on any fold", fontsize=8)
            continue
        lo = np.min((means - stds)[shown])
        hi = np.max((means + stds)[shown])
        values = np.array([v for r in ok for v in r["scores"][name]])
        if name != "log_loss" and np.all(values[np.isfinite(values)] <= 1):
            # A score bounded by 1 (accuracy, AUC, ...): no bar past the best.
            # Others, such as positive_likelihood_ratio, may exceed 1.
            hi = min(hi, 1.0)
        pad = max(0.1 * (hi - lo), 0.002)
        ax.set_xlim(lo - pad, hi + pad)
        better = "lower" if name == "log_loss" else "higher"
        ax.set_xlabel(f"mean ± std over folds ({better} is better)", fontsize=8)
    ax = axes[-1]
    times = np.array([np.mean(r["fit_time"]) for r in ok])
    ax.barh(pos, times, color=colors, height=0.5)
    for p, t in zip(pos, times, strict=True):
        ax.annotate(
            f"{t:.2g} s",
            (t, p),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlim(times.min() / 2, times.max() * 8)
    ax.set_title("time of one fit", fontsize=10)
    ax.set_xlabel("seconds (log scale)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(pos, names)
    axes[0].set_ylim(len(names) - 0.5, -0.7)
    fig.savefig(path, dpi=120)
    return fig


# -- command line -------------------------------------------------------------


def _positive_int(minimum, maximum=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}; got {value}")
        return value

    return parse


def _names(choices, what, also=None):
    """A comma-separated list of names from ``choices`` (or for which
    ``also(name)`` is true)."""

    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices and not (also and also(n))]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown or text!r}; choose from {', '.join(choices)}"
            )
        return list(dict.fromkeys(names))

    return parse


def _delimiter(text):
    if text in ("tab", "TAB", "\\t"):
        return "\t"
    if len(text) != 1:
        raise argparse.ArgumentTypeError(
            f"must be one character, or tab (also written \\t); got {text!r}"
        )
    return text


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sksiamese",
        description="Siamese network classifiers for scikit-learn.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="cross-validate SiameseClassifier against standard baselines",
        description=(
            "Cross-validate SiameseClassifier next to LogisticRegression, "
            "RandomForestClassifier and HistGradientBoostingClassifier (stratified "
            "k-fold) and print the mean and standard deviation over folds of each "
            "score and the mean fit time. Without DATA, uses scikit-learn's "
            "bundled breast_cancer data."
        ),
        epilog=(
            "scores: "
            + "; ".join(f"{k}: {v}" for k, v in SCORES.items())
            + ". models: "
            + ", ".join(f"{k} ({v})" for k, v in MODELS.items())
            + ". Exit status: 0 ok, 1 a model failed, 2 bad usage or input."
        ),
    )
    compare.add_argument(
        "data",
        nargs="?",
        metavar="DATA",
        help="CSV file with a header row; every column but --target must be numeric "
        f"(blank cells and {', '.join(b for b in BLANKS if b)} are missing values)",
    )
    compare.add_argument("--target", metavar="COLUMN", help="name of the label column")
    compare.add_argument(
        "--delimiter",
        type=_delimiter,
        default=",",
        help="field separator of DATA: one character, or tab (also written \\t) "
        "(default: ',')",
    )
    compare.add_argument(
        "--scoring",
        type=_names(list(SCORES), "score", also=_is_classifier_scorer),
        default=None,
        metavar="NAMES",
        help=f"comma-separated scores of this list or scikit-learn scorer names "
        f"such as neg_log_loss, roc_auc_ovr or f1 (default: {DEFAULT_SCORING}, "
        f"then {BINARY_SCORING} for two classes and {RARE_SCORING} when a class "
        f"holds under {RARE_SHARE * 100:.0f}%% of the rows)",
    )
    compare.add_argument(
        "--models",
        type=_names(list(MODELS), "model"),
        default=list(MODELS),
        metavar="NAMES",
        help=f"comma-separated models (default: {','.join(MODELS)})",
    )
    compare.add_argument(
        "--folds", type=_positive_int(2), default=5, help="number of folds (default: 5)"
    )
    compare.add_argument(
        "--random-state",
        # numpy's seeds are 32-bit.
        type=_positive_int(0, maximum=2**32 - 1),
        default=0,
        metavar="SEED",
        help="seed of the folds and of every model, 0 to 4294967295 (default: 0)",
    )
    compare.add_argument(
        "--max-epochs",
        type=_positive_int(1),
        default=None,
        metavar="N",
        help="max_epochs of SiameseClassifier (default: its own)",
    )
    compare.add_argument(
        "--threads",
        type=_positive_int(1),
        default=1,
        metavar="N",
        help="CPU threads of each model (torch, OpenMP, BLAS); default 1, so that "
        "every model gets the same share and fit times compare (raise it for "
        "large files)",
    )
    compare.add_argument(
        "--plot",
        metavar="PATH",
        help="also save a chart of the scores and fit times to PATH (.png, .svg, "
        ".pdf); needs matplotlib: pip install 'sksiamese[plot]'",
    )
    compare.add_argument(
        "--json", action="store_true", help="print the results as JSON on stdout"
    )
    compare.add_argument(
        "--quiet", action="store_true", help="no progress line on stderr"
    )
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status instead of exiting, so that it can be called from
    Python.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _compare(args)
    except InputError as exc:
        print(f"sksiamese {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


@contextmanager
def _threads(n):
    """Limit torch and the OpenMP / BLAS pools to ``n`` threads in the block."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _compare(args):
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError(
                "--plot needs matplotlib; install it with pip install 'sksiamese[plot]'"
            ) from None
        if os.path.isdir(args.plot):
            raise InputError(
                f"--plot: {args.plot} is a directory; name the chart's file, such as "
                f"{os.path.join(args.plot, 'compare.png')}"
            )
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            raise InputError(f"--plot: no such directory: {folder}")
        if not os.access(folder, os.W_OK) or (
            os.path.exists(args.plot) and not os.access(args.plot, os.W_OK)
        ):
            raise InputError(f"--plot: cannot write to {args.plot}: permission denied")
        from matplotlib.figure import Figure

        formats = sorted(Figure().canvas.get_supported_filetypes())
        extension = os.path.splitext(args.plot)[1].lstrip(".").lower()
        if extension not in formats:
            raise InputError(
                f"--plot: cannot write a chart to {args.plot!r}; name a file "
                f"ending in one of: {', '.join('.' + f for f in formats)}"
            )
    if args.data is None:
        if args.target is not None:
            raise InputError("--target needs a DATA file")
        X, y, name = _builtin_data()
        names = None
    else:
        if args.target is None:
            raise InputError("--target COLUMN is needed with a DATA file")
        X, y, names = read_csv(args.data, args.target, args.delimiter)
        name = os.path.basename(args.data)
    classes = _check_classes(y, args.folds)
    if args.scoring is None:
        args.scoring = default_scoring(y, classes)
    check_scoring(args.scoring, X, y, classes)
    has_blanks = bool(np.isnan(X).any())
    dataset = {
        "name": name,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_classes": len(classes),
        "classes": classes.tolist(),
        "blanks": int(np.isnan(X).sum()),
    }
    if names is not None:
        dataset["target"] = args.target
    models = make_models(
        args.models,
        random_state=args.random_state,
        max_epochs=args.max_epochs,
        has_blanks=has_blanks,
    )
    progress = Progress(sys.stderr, enabled=not args.quiet)
    with _threads(args.threads):
        results = cross_validate_models(
            models,
            X,
            y,
            classes,
            folds=args.folds,
            random_state=args.random_state,
            scoring=args.scoring,
            progress=progress,
        )
    if args.json:
        json.dump(to_json(results, dataset, args, args.scoring), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        blanks = f", {dataset['blanks']} blank cells" if dataset["blanks"] else ""
        print(
            f"{name}: {dataset['n_samples']} samples, {dataset['n_features']} "
            f"features, {len(classes)} classes{blanks}"
        )
        threads = "1 thread" if args.threads == 1 else f"{args.threads} threads"
        tuned = (
            f"; {TUNED}: threshold tuned on each training fold (cv=3), 4 fits per fold"
            if TUNED in args.scoring
            else ""
        )
        print(
            f"{args.folds}-fold stratified cross-validation (random_state="
            f"{args.random_state}); mean and standard deviation over folds; mean "
            f"time of one fit on {threads}{tuned}\n"
        )
        print(format_table(results, args.scoring, sys.stdout))
    for line in format_warnings(results, args.folds):
        print(f"sksiamese compare: warning: {line}", file=sys.stderr)
    if args.plot is not None and all(r["error"] is not None for r in results):
        print(
            f"sksiamese compare: warning: --plot: no chart saved to {args.plot}: "
            "every model failed",
            file=sys.stderr,
        )
    elif args.plot is not None:
        try:
            plot_comparison(results, args.scoring, args.plot)
        except OSError as exc:  # checked up front, but the disk may still fill up
            print(
                f"sksiamese compare: error: --plot: cannot save the chart to "
                f"{args.plot}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if not args.quiet:
            print(f"sksiamese compare: saved the chart to {args.plot}", file=sys.stderr)
    failed = any(r["error"] is not None for r in results)
    return EXIT_MODEL_FAILED if failed else EXIT_OK
