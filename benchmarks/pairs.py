"""SiamesePairClassifier against baselines on pairs of pre-encoded vectors.

The data are pairs of digit images from scikit-learn's bundled ``load_digits``,
each image encoded beforehand, as users' pre-computed embeddings are: by PCA
codes (``--dim`` components, fitted on the training images only; the digits
have 64 pixels, so at most 64) and, for the MNIST-like figure, by the raw
pixels. A pair is "same" when both images show the same digit. Training and
test pairs are built from disjoint halves of the images, so every test pair
holds two images never seen in training; about half the pairs of each set are
same pairs.

Models: SiamesePairClassifier with each loss family (defaults otherwise), and
LogisticRegression (standardised) and RandomForestClassifier(300 trees) on the
usual symmetric pair features ``[|a - b|, a * b]``. For each: accuracy of
``predict`` and ROC AUC of ``predict_proba`` on the test pairs, fit time in
seconds and as a ratio to the random forest's in the same run. With several
seeds (new pairs, new split, new model seeds), means and standard deviations.

Run: ``python benchmarks/pairs.py [--pairs 2000] [--dim 40] [--seeds 1]``
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiamesePairClassifier


def make_pairs(codes, digits, n_pairs, rng):
    """``n_pairs`` pairs of distinct images, half of them of one digit."""
    a = rng.randint(len(codes), size=n_pairs)
    same = rng.permutation(np.arange(n_pairs) < n_pairs // 2)
    b = np.empty(n_pairs, dtype=int)
    for i in range(n_pairs):
        match = digits == digits[a[i]]
        pool = np.flatnonzero(match if same[i] else ~match)
        b[i] = rng.choice(pool[pool != a[i]])
    return np.stack([codes[a], codes[b]], axis=1), same.astype(int)


def pair_features(X):
    """The symmetric features baselines get: ``[|a - b|, a * b]``."""
    a, b = X[:, 0], X[:, 1]
    return np.hstack([np.abs(a - b), a * b])


def models(seed):
    return {
        "SiamesePair (contrastive)": (
            SiamesePairClassifier(loss="contrastive", random_state=seed),
            None,
        ),
        "SiamesePair (bce)": (
            SiamesePairClassifier(loss="bce", random_state=seed),
            None,
        ),
        "LogisticRegression": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
            pair_features,
        ),
        "RandomForest(300)": (
            RandomForestClassifier(n_estimators=300, random_state=seed),
            pair_features,
        ),
    }


def run(encoding, n_pairs, dim, seed):
    """Scores of every model on one draw of pairs; ``encoding`` is "pca" or
    "pixels"."""
    images, digits = load_digits(return_X_y=True)
    img_train, img_test, dig_train, dig_test = train_test_split(
        images, digits, test_size=0.5, stratify=digits, random_state=seed
    )
    if encoding == "pca":
        pca = PCA(n_components=dim, random_state=seed).fit(img_train)
        img_train, img_test = pca.transform(img_train), pca.transform(img_test)
    rng = np.random.RandomState(seed)
    X_train, y_train = make_pairs(img_train, dig_train, n_pairs, rng)
    X_test, y_test = make_pairs(img_test, dig_test, n_pairs, rng)
    results = {}
    for name, (model, features) in models(seed).items():
        prepare = features or (lambda X: X)
        start = time.perf_counter()
        model.fit(prepare(X_train), y_train)
        fit_time = time.perf_counter() - start
        Xt = prepare(X_test)
        results[name] = (
            accuracy_score(y_test, model.predict(Xt)),
            roc_auc_score(y_test, model.predict_proba(Xt)[:, 1]),
            fit_time,
            getattr(model, "n_epochs_", None),
        )
    return results


def _mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std():.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per set")
    parser.add_argument("--dim", type=int, default=40, help="PCA components")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    encodings = {"pca": f"PCA-{args.dim} codes", "pixels": "pixels (64)"}
    table = {}
    for encoding in encodings:
        runs = [run(encoding, args.pairs, args.dim, s) for s in range(args.seeds)]
        for name in runs[0]:
            values = np.array([[r[name][k] for r in runs] for k in range(3)])
            epochs = [r[name][3] for r in runs]
            rf = np.mean([r["RandomForest(300)"][2] for r in runs])
            table[encoding, name] = (values, values[2].mean() / rf, epochs)

    header = (
        f"{'input':<16} {'model':<26} {'accuracy':>15} {'ROC AUC':>15} "
        f"{'fit (s)':>8} {'x RF':>6} {'epochs':>7}"
    )
    print(
        f"{args.pairs} training and {args.pairs} test pairs of load_digits "
        "images (disjoint images), about half same; "
        f"{args.seeds} seed(s)"
    )
    print(header)
    print("-" * len(header))
    for (encoding, name), (values, ratio, epochs) in table.items():
        acc, auc, fit = values
        ep = "" if epochs[0] is None else f"{np.mean(epochs):.0f}"
        print(
            f"{encodings[encoding]:<16} {name:<26} {_mean_std(acc):>15} "
            f"{_mean_std(auc):>15} {fit.mean():>8.1f} {ratio:>6.2f} {ep:>7}"
        )
    print()
    for encoding, label in encodings.items():
        siamese = {n: v for (e, n), v in table.items() if e == encoding and "Siam" in n}
        others = {
            n: v for (e, n), v in table.items() if e == encoding and n not in siamese
        }
        best_acc = max(v[0][0].mean() for v in others.values())
        best_auc = max(v[0][1].mean() for v in others.values())
        for name, (values, _, _) in siamese.items():
            acc, auc = values[0].mean(), values[1].mean()
            met = acc > best_acc and auc > best_auc
            print(
                f"{label}: {name} accuracy {acc:.4f} vs best baseline {best_acc:.4f}, "
                f"ROC AUC {auc:.4f} vs {best_auc:.4f}: target "
                f"{'met' if met else 'NOT met'}"
            )
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
