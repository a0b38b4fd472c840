"""Probabilities on small balanced sets: SiameseClassifier against a logistic
regression and a random forest.

Datasets (scikit-learn's bundled sets; nothing is downloaded):

- ``breast_cancer``: 569 rows, 30 features, 2 classes;
- ``wine``: 178 rows, 13 features, 3 classes;
- ``iris_blanks``: iris (150 rows, 4 features, 3 classes) with 20 of its 600
  cells blanked (NaN), at the positions
  ``np.random.default_rng(0).choice(600, 20, replace=False)`` of the table
  flattened row by row (``--blank-seed`` changes the 0, ``--blanks`` the 20).
  The same cells are blank for every seed.

Models: those of ``sksiamese compare`` (``sksiamese._cli.make_models``):
SiameseClassifier (defaults), StandardScaler + LogisticRegression(max_iter=1000)
after a median SimpleImputer on the set with blanks, and RandomForestClassifier
(defaults: 100 trees; it takes blanks as they are). No class weights: the
classes are near balanced.

For each seed, stratified k-fold cross-validation with its folds and the
models seeded by the seed, as ``sksiamese compare --scoring log_loss,accuracy
--models siamese,logistic,forest --random-state SEED`` runs it. The table gives
the log loss of the predicted probabilities and the accuracy, mean and standard
deviation over the folds of all seeds, and the mean fit time.

Every model gets ``--threads`` threads (default 1); ``--jobs`` runs that many
sets at once, in processes.

Run: ``python benchmarks/small_sets.py [--seeds 0,1,2] [--folds 5] [--threads 1]
[--jobs 1] [--datasets breast_cancer,wine,iris_blanks]``
"""

import sys
import time

import numpy as np
from imbalanced import limit_threads  # this folder's rare-case benchmark
from joblib import Parallel, delayed
from scaling import parse_args, print_total  # this folder's KEEL benchmarks
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

from sksiamese._cli import Progress, cross_validate_models, make_models

MODELS = ("siamese", "logistic", "forest")
SCORING = ("log_loss", "accuracy")


def load_iris_blanks(n_blanks, seed):
    """Iris with ``n_blanks`` cells set to NaN at seeded positions."""
    X, y = load_iris(return_X_y=True)
    cells = np.random.default_rng(seed).choice(X.size, n_blanks, replace=False)
    X = X.copy()
    X.flat[cells] = np.nan
    return X, y


DATASETS = {
    "breast_cancer": lambda args: load_breast_cancer(return_X_y=True),
    "wine": lambda args: load_wine(return_X_y=True),
    "iris_blanks": lambda args: load_iris_blanks(args.blanks, args.blank_seed),
}


def set_scores(name, args, seeds):
    """``(X, y, {model: {score or "fit s": per-fold values over all seeds}})``
    of one set, computed in a process of its own."""
    limit_threads(args.threads)
    X, y = DATASETS[name](args)
    classes = np.unique(y)
    out = {}
    for seed in seeds:
        models = make_models(
            MODELS,
            random_state=seed,
            max_epochs=None,
            has_blanks=bool(np.isnan(X).any()),
        )
        results = cross_validate_models(
            models,
            X,
            y,
            classes,
            folds=args.folds,
            random_state=seed,
            scoring=SCORING,
            progress=Progress(sys.stderr, enabled=False),
        )
        for result in results:
            if result["error"] is not None:
                raise RuntimeError(f"{name}, {result['model']}: {result['error']}")
            values = out.setdefault(result["model"], {})
            folds = {**result["scores"], "fit s": result["fit_time"]}
            for score, per_fold in folds.items():
                values.setdefault(score, []).extend(per_fold)
    return X, y, out


def main(argv=None):
    def extra(parser):
        parser.add_argument("--blanks", type=int, default=20)
        parser.add_argument("--blank-seed", type=int, default=0)

    args, seeds = parse_args(
        argv, __doc__.splitlines()[0], DATASETS, "0,1,2", extra=extra
    )
    start = time.perf_counter()
    names = args.datasets.split(",")
    results = Parallel(n_jobs=args.jobs)(
        delayed(set_scores)(name, args, seeds) for name in names
    )
    header = (
        f"{'dataset':<14} {'model':<24} {'log loss':>15} {'accuracy':>15} {'fit s':>7}"
    )
    print(f"mean ± standard deviation over {args.folds} folds x seeds {args.seeds}")
    print(header)
    print("-" * len(header))
    for name, (X, y, rows) in zip(names, results, strict=True):
        print(
            f"{name}: {X.shape[0]} rows, {X.shape[1]} features, "
            f"{len(np.unique(y))} classes, {int(np.isnan(X).sum())} blank cells"
        )
        for model, values in rows.items():
            loss, acc = np.array(values["log_loss"]), np.array(values["accuracy"])
            print(
                f"{'':<14} {model:<24} {loss.mean():>7.3f} ± {loss.std():.3f} "
                f"{acc.mean():>7.3f} ± {acc.std():.3f} "
                f"{np.mean(values['fit s']):>7.2f}"
            )
    print_total(args, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
