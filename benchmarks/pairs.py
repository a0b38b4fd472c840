"""SiamesePairClassifier against baselines on pairs of pre-encoded vectors.

Users' pre-computed embeddings are stood in for by codes of images, each image
encoded beforehand by PCA (fitted on the training images only). A pair is
"same" when both images show the same digit or character; about half the pairs
of each set are same pairs, and a vector may occur in several pairs (drawn at
random, as pairs are labelled in practice). Two sets of pairs:

- ``digits``: scikit-learn's bundled ``load_digits`` (10 classes), PCA codes
  (``--dim`` components, at most 64) and the raw pixels; training and test
  pairs from disjoint halves of the images;
- ``omniglot`` (with ``--omniglot PATH``, the folder of the Omniglot zip
  files; skipped without it): handwritten characters of the two minimal
  background splits at 28 x 28 pixels, 200 PCA components; training and test
  pairs from disjoint halves of the 242 characters, so every test pair shows
  characters never seen in training (verification of new classes, the hard
  case: the untrained distances and the forest are far weaker here).

Models: SiamesePairClassifier with each loss family (defaults otherwise); the
untrained euclidean and cosine distances of the input vectors (accuracy at the
threshold best on the training pairs); LogisticRegression (standardised) and
RandomForestClassifier(300 trees) on the usual symmetric pair features
``[|a - b|, a * b]``. For each: accuracy of ``predict`` and ROC AUC of
``predict_proba`` on the test pairs, fit time in seconds and as a ratio to the
random forest's in the same run. With several seeds (new pairs, new split, new
model seeds), means and standard deviations.

Run: ``python benchmarks/pairs.py [--pairs 2000] [--dim 40] [--seeds 1]
[--omniglot PATH]``
"""

import argparse
import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksiamese import SiamesePairClassifier
from sksiamese._calibration import select_distance_threshold
from sksiamese.datasets import load_omniglot_background


def make_pairs(codes, labels, n_pairs, rng):
    """``n_pairs`` pairs of distinct images, half of them of one class."""
    a = rng.randint(len(codes), size=n_pairs)
    same = rng.permutation(np.arange(n_pairs) < n_pairs // 2)
    b = np.empty(n_pairs, dtype=int)
    for i in range(n_pairs):
        match = labels == labels[a[i]]
        pool = np.flatnonzero(match if same[i] else ~match)
        b[i] = rng.choice(pool[pool != a[i]])
    return np.stack([codes[a], codes[b]], axis=1), same.astype(int)


def pair_features(X):
    """The symmetric features baselines get: ``[|a - b|, a * b]``."""
    a, b = X[:, 0], X[:, 1]
    return np.hstack([np.abs(a - b), a * b])


class UntrainedDistance(ClassifierMixin, BaseEstimator):
    """The euclidean or cosine distance of a pair's two vectors, untrained:
    "same" below the threshold that is most accurate on the training pairs."""

    def __init__(self, metric="euclidean"):
        self.metric = metric

    def _distance(self, X):
        a, b = X[:, 0], X[:, 1]
        if self.metric == "euclidean":
            return np.linalg.norm(a - b, axis=1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return 1.0 - (a * b).sum(1) / norms

    def fit(self, X, y):
        d = self._distance(X)
        self.classes_ = np.array([0, 1])
        self.threshold_ = select_distance_threshold(d, y == 1, "accuracy")
        self.scale_ = np.median(d)
        return self

    def predict(self, X):
        return (self._distance(X) < self.threshold_).astype(int)

    def predict_proba(self, X):
        # Any decreasing function of the distance ranks pairs the same way.
        p_same = 1.0 / (1.0 + self._distance(X) / self.scale_)
        return np.column_stack([1.0 - p_same, p_same])


DEFAULT = "SiamesePair (contrastive)"


def models(seed):
    return {
        DEFAULT: (SiamesePairClassifier(loss="contrastive", random_state=seed), None),
        "SiamesePair (bce)": (
            SiamesePairClassifier(loss="bce", random_state=seed),
            None,
        ),
        "euclidean (untrained)": (UntrainedDistance("euclidean"), None),
        "cosine (untrained)": (UntrainedDistance("cosine"), None),
        "LogisticRegression": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
            pair_features,
        ),
        "RandomForest(300)": (
            RandomForestClassifier(n_estimators=300, random_state=seed),
            pair_features,
        ),
    }


_OMNIGLOT = {}


def load_images(encoding, omniglot):
    """Images (one row each) and their class, for ``encoding``."""
    if encoding != "omniglot":
        return load_digits(return_X_y=True)
    if omniglot not in _OMNIGLOT:
        images, target = load_omniglot_background(
            omniglot, image_size=28, return_X_y=True
        )
        _OMNIGLOT[omniglot] = images.reshape(len(images), -1), target
    return _OMNIGLOT[omniglot]


def run(encoding, n_pairs, dim, seed, omniglot=None):
    """Scores of every model on one draw of pairs; ``encoding`` is "pca" or
    "pixels" (digits) or "omniglot"."""
    images, labels = load_images(encoding, omniglot)
    if encoding == "omniglot":
        # Characters, not images, are split: test pairs show new characters.
        chars = np.random.RandomState(seed).permutation(labels.max() + 1)
        train = np.isin(labels, chars[: len(chars) // 2])
        img_train, img_test = images[train], images[~train]
        lab_train, lab_test = labels[train], labels[~train]
        dim = 200
    else:
        img_train, img_test, lab_train, lab_test = train_test_split(
            images, labels, test_size=0.5, stratify=labels, random_state=seed
        )
    if encoding != "pixels":
        pca = PCA(n_components=dim, random_state=seed).fit(img_train)
        img_train, img_test = pca.transform(img_train), pca.transform(img_test)
    rng = np.random.RandomState(seed)
    X_train, y_train = make_pairs(img_train, lab_train, n_pairs, rng)
    X_test, y_test = make_pairs(img_test, lab_test, n_pairs, rng)
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
    parser.add_argument(
        "--omniglot", default=None, help="folder of the Omniglot zip files"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    encodings = {
        "pca": f"digits, PCA-{args.dim}",
        "pixels": "digits, pixels",
        "omniglot": "Omniglot, PCA-200",
    }
    if args.omniglot is None:
        print("omniglot: skipped (pass --omniglot PATH, the folder of its zip files)")
        del encodings["omniglot"]
    table = {}
    for encoding in encodings:
        runs = [
            run(encoding, args.pairs, args.dim, s, args.omniglot)
            for s in range(args.seeds)
        ]
        for name in runs[0]:
            values = np.array([[r[name][k] for r in runs] for k in range(3)])
            epochs = [r[name][3] for r in runs]
            rf = np.mean([r["RandomForest(300)"][2] for r in runs])
            table[encoding, name] = (values, values[2].mean() / rf, epochs)

    header = (
        f"{'input':<18} {'model':<26} {'accuracy':>15} {'ROC AUC':>15} "
        f"{'fit (s)':>8} {'x RF':>6} {'epochs':>7}"
    )
    print(
        f"{args.pairs} training and {args.pairs} test pairs (test pairs from "
        f"images never seen in training), about half same; {args.seeds} seed(s)"
    )
    print(header)
    print("-" * len(header))
    for (encoding, name), (values, ratio, epochs) in table.items():
        acc, auc, fit = values
        ep = "" if epochs[0] is None else f"{np.mean(epochs):.0f}"
        print(
            f"{encodings[encoding]:<18} {name:<26} {_mean_std(acc):>15} "
            f"{_mean_std(auc):>15} {fit.mean():>8.1f} {ratio:>6.2f} {ep:>7}"
        )
    print()
    for encoding, label in encodings.items():
        rows = {n: v[0] for (e, n), v in table.items() if e == encoding}
        base = {n: v for n, v in rows.items() if not n.startswith("SiamesePair")}
        best_acc = max(base, key=lambda n: base[n][0].mean())
        best_auc = max(base, key=lambda n: base[n][1].mean())
        acc, auc = rows[DEFAULT][0].mean(), rows[DEFAULT][1].mean()
        print(
            f"{label}: the default model's accuracy {acc:.4f}, "
            f"{acc - base[best_acc][0].mean():+.4f} to the best baseline "
            f"({best_acc}); ROC AUC {auc:.4f}, "
            f"{auc - base[best_auc][1].mean():+.4f} to the best ({best_auc})"
        )
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
