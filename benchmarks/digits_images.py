"""Digit images (scikit-learn's 8x8 ``load_digits``) with the CNN encoder.

In one run, for each training loss of :class:`~sksiamese.SiameseClassifier`
(``encoder="cnn"``, the same epochs for all; the prototype loss also with
``augment=True``) and for pixel-space references:

- *held-out*: accuracy on a stratified 30% test split, trained on the other 70%;
- *one-shot*: trained on the digits 0-4 only, then 5-way one-shot trials on the
  digits 5-9, never seen in training: one reference drawing of each (from the
  training split, via ``fit_references``), one query of each (from the test
  split); mean accuracy over the trials (chance 20%);
- *pair*: on the same unseen digits, pairs of test drawings (half same digit,
  half different): accuracy of ``pair_score > 0.5`` and ROC AUC of
  ``-pair_distance``.

The references are a 1-nearest-neighbour classifier on the raw pixels (held-out
and one-shot) and the pixel distance (pair AUC; its accuracy uses the threshold
that is best on pairs of the training digits 0-4).

Run: ``python benchmarks/digits_images.py [--epochs 30] [--trials 500] [--seed 0]``
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from sksiamese import SiameseClassifier

LOSSES = ("prototype", "nca", "contrastive", "triplet", "bce")


def make_pairs(y, n_pairs, rng):
    """Indices of ``n_pairs`` pairs, half of the same class, half different."""
    first, second, same = [], [], []
    for i in range(n_pairs):
        a = rng.randint(len(y))
        want_same = i % 2 == 0
        pool = np.flatnonzero((y == y[a]) == want_same)
        pool = pool[pool != a]
        first.append(a)
        second.append(rng.choice(pool))
        same.append(want_same)
    return np.array(first), np.array(second), np.array(same)


def one_shot_trials(y_ref, y_query, classes, n_trials, rng):
    """Per trial: one reference index and one query index of each class."""
    refs = np.array(
        [
            [rng.choice(np.flatnonzero(y_ref == c)) for c in classes]
            for _ in range(n_trials)
        ]
    )
    queries = np.array(
        [
            [rng.choice(np.flatnonzero(y_query == c)) for c in classes]
            for _ in range(n_trials)
        ]
    )
    return refs, queries


def pixel_pair_threshold(X, y, rng):
    """Pixel-distance threshold with the best accuracy on pairs of ``X``."""
    a, b, same = make_pairs(y, 2000, rng)
    d = np.linalg.norm(X[a] - X[b], axis=1)
    candidates = np.unique(d)
    acc = [((d <= t) == same).mean() for t in candidates]
    return candidates[int(np.argmax(acc))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.RandomState(args.seed)

    X, y = load_digits(return_X_y=True)
    images = (X / 16.0).reshape(-1, 8, 8)
    tr, te = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=args.seed
    )
    old_tr, new_tr = tr[y[tr] < 5], tr[y[tr] >= 5]
    new_te = te[y[te] >= 5]
    new = np.arange(5, 10)
    refs, queries = one_shot_trials(y[new_tr], y[new_te], new, args.trials, rng)
    pa, pb, same = make_pairs(y[new_te], 2000, rng)
    pa, pb = new_te[pa], new_te[pb]
    print(
        f"digits: {len(tr)} training / {len(te)} test images of 8x8; one-shot: "
        f"{args.trials} 5-way trials on digits 5-9 after training on "
        f"{len(old_tr)} images of 0-4; pairs: {len(same)} of test images of 5-9\n"
    )

    rows = []
    flat = X / 16.0
    knn = KNeighborsClassifier(1).fit(flat[tr], y[tr])
    held = knn.score(flat[te], y[te])
    correct = 0
    for r, q in zip(refs, queries, strict=True):
        knn1 = KNeighborsClassifier(1).fit(flat[new_tr][r], new)
        correct += (knn1.predict(flat[new_te][q]) == new).sum()
    d = np.linalg.norm(flat[pa] - flat[pb], axis=1)
    t = pixel_pair_threshold(flat[old_tr], y[old_tr], rng)
    rows.append(
        (
            "pixel 1-NN / distance",
            held,
            correct / refs.size,
            ((d <= t) == same).mean(),
            roc_auc_score(same, -d),
            None,
        )
    )

    configs = [(f"cnn {loss}", dict(loss=loss)) for loss in LOSSES]
    configs.append(("cnn prototype augment", dict(loss="prototype", augment=True)))
    for name, config in configs:
        params = dict(
            encoder="cnn",
            max_epochs=args.epochs,
            early_stopping=False,
            random_state=args.seed,
            **config,
        )
        start = time.perf_counter()
        clf = SiameseClassifier(**params).fit(images[tr], y[tr])
        held = clf.score(images[te], y[te])
        clf = SiameseClassifier(**params).fit(images[old_tr], y[old_tr])
        elapsed = time.perf_counter() - start
        correct = 0
        for r, q in zip(refs, queries, strict=True):
            clf.fit_references(images[new_tr][r], new)
            correct += (clf.predict(images[new_te][q]) == new).sum()
        score = clf.pair_score(images[pa], images[pb])
        d = clf.pair_distance(images[pa], images[pb])
        rows.append(
            (
                name,
                held,
                correct / refs.size,
                ((score > 0.5) == same).mean(),
                roc_auc_score(same, -d),
                elapsed,
            )
        )

    print(
        f"{'model':<24} {'held-out':>9} {'one-shot':>9} {'pair acc':>9} "
        f"{'pair AUC':>9} {'fit s':>6}"
    )
    for name, held, one_shot, pair_acc, auc, elapsed in rows:
        fit_s = "-" if elapsed is None else f"{elapsed:.0f}"
        print(
            f"{name:<24} {held:>9.1%} {one_shot:>9.1%} {pair_acc:>9.1%} "
            f"{auc:>9.3f} {fit_s:>6}"
        )
    print(
        f"\n(chance: held-out 10%, one-shot 20%, pair accuracy 50%; "
        f"{args.epochs} epochs per model, fit s = both fits)"
    )


if __name__ == "__main__":
    main()
