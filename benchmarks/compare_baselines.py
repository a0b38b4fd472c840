"""SiameseClassifier (defaults) against standard baselines, in one run.

For each of scikit-learn's bundled breast_cancer, wine and digits datasets: 5-fold
stratified cross-validation, balanced accuracy and mean fit time of each model, and
the fit time as a ratio of RandomForestClassifier(n_estimators=300)'s from the same
run (the machine may be shared; ratios survive that better than seconds).

Run: ``python benchmarks/compare_baselines.py [--folds 5] [--seed 0]``
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiameseClassifier

DATASETS = {
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "digits": load_digits,
}


def models(seed):
    return {
        "SiameseClassifier": SiameseClassifier(random_state=seed),
        "LogisticRegression": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000)
        ),
        "RandomForest(300)": RandomForestClassifier(
            n_estimators=300, random_state=seed
        ),
        "NCA+KNN": make_pipeline(
            StandardScaler(),
            NeighborhoodComponentsAnalysis(random_state=seed),
            KNeighborsClassifier(),
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows = []
    start = time.perf_counter()
    for data_name, load in DATASETS.items():
        X, y = load(return_X_y=True)
        cv = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
        results = {}
        for name, model in models(args.seed).items():
            res = cross_validate(model, X, y, cv=cv, scoring="balanced_accuracy")
            results[name] = res
        rf_time = results["RandomForest(300)"]["fit_time"].mean()
        for name, res in results.items():
            rows.append(
                (
                    data_name,
                    name,
                    res["test_score"].mean(),
                    res["test_score"].std(),
                    res["fit_time"].mean(),
                    res["fit_time"].mean() / rf_time,
                )
            )

    header = (
        f"{'dataset':<14} {'model':<20} {'balanced acc':>16} "
        f"{'fit time (s)':>13} {'x RF(300)':>10}"
    )
    print(header)
    print("-" * len(header))
    for data_name, name, mean, std, fit, ratio in rows:
        print(
            f"{data_name:<14} {name:<20} {mean:>9.4f} ± {std:.3f} "
            f"{fit:>13.3f} {ratio:>10.2f}"
        )
    siamese = [r for r in rows if r[1] == "SiameseClassifier"]
    print()
    print(
        "SiameseClassifier: min balanced accuracy "
        f"{min(r[2] for r in siamese):.4f} (bar 0.95); max fit-time ratio to "
        f"RF(300) {max(r[5] for r in siamese):.2f} (bar 3.0); "
        f"total {time.perf_counter() - start:.0f} s, {args.folds} folds, "
        f"seed {args.seed}"
    )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
