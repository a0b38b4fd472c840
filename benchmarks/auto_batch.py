"""Batches of 128 against ``batch_size="auto"`` on large generated tables.

For each row of the table: one table of ``n + 100,000`` rows with 33 columns and
1% cases (``scale.py``'s data, with 20% blanks, or ``make_classification``'s),
the first ``n`` rows for training, the rest held out; ``SiameseClassifier``
with its defaults and ``max_epochs`` as listed, once with ``batch_size=128``
(``lr=1e-3``) and once with ``"auto"`` (the batch it chose, and ``lr`` scaled
by ``(batch / 128) ** 0.75``); average precision, ROC AUC and log loss on the
held-out rows, and the fit's seconds (their ratio is what to compare: the
machine's speed varies).

``--repeats R`` repeats each row with R seeds (the row's, plus 100, 200, ...)
and prints the means, and the ratio of the summed fit times.

Run: ``python benchmarks/auto_batch.py [--rows 0 1 2 3] [--repeats 1]``: about
8 minutes per repeat of all four rows on 2 CPU cores.
"""

import argparse
import time

import numpy as np
from scale import make_data
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from sksiamese import SiameseClassifier

#: (training rows, data, epochs, seed)
ROWS = [
    (60_000, "classif", 30, 3),
    (100_000, "scale", 30, 2),
    (400_000, "scale", 5, 0),
    (400_000, "classif", 5, 1),
]
N_HELD = 100_000


def load(n, data, seed):
    if data == "scale":
        X, y = make_data(n + N_HELD, seed=seed)
    else:
        X, y = make_classification(
            n + N_HELD, 33, n_informative=10, weights=[0.99], random_state=seed
        )
        X = X.astype(np.float32)
    return X[:n], y[:n], X[n:], y[n:]


def score(batch_size, epochs, seed, X, y, X_held, y_held):
    clf = SiameseClassifier(batch_size=batch_size, max_epochs=epochs, random_state=seed)
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    p = clf.predict_proba(X_held)[:, 1]
    return (
        clf.batch_size_,
        average_precision_score(y_held, p),
        roc_auc_score(y_held, p),
        log_loss(y_held, p),
        seconds,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=range(len(ROWS)))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"{'rows':>8} {'data':>8} {'epochs':>6}   {'batch':>5} {'AP':>6} {'AUC':>6} "
        f"{'logloss':>7} {'fit (s)':>7}   {'auto: batch':>11} {'AP':>6} {'AUC':>6} "
        f"{'logloss':>7} {'fit (s)':>7} {'time ratio':>10}"
    )
    for i in args.rows:
        n, data, epochs, first_seed = ROWS[i]
        runs = []
        for seed in range(first_seed, first_seed + 100 * args.repeats, 100):
            Xy = load(n, data, seed)
            runs.append(
                [score(128, epochs, seed, *Xy), score("auto", epochs, seed, *Xy)]
            )
        # Means over the seeds; the time columns are means too, so their
        # ratio is that of the summed times.
        fixed, auto = np.mean(runs, axis=0)
        cells = [
            f"{b:>5.0f} {ap:>6.3f} {auc:>6.3f} {ll:>7.4f} {t:>7.1f}"
            for b, ap, auc, ll, t in (fixed, auto)
        ]
        print(
            f"{n:>8} {data:>8} {epochs:>6}   {cells[0]}   {cells[1]:>40} "
            f"{auto[-1] / fixed[-1]:>10.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
