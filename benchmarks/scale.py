"""How fit and predict_proba cost grows with the number of rows.

Generated data in the shape of a large survey: 33 columns, about 20% of the answers
blank, 1% cases. For each size, in a fresh process (so that peak memory is that
size's own): ``SiameseClassifier`` with defaults but a fixed budget of 5 epochs (no
early stopping), then ``predict_proba`` on all rows. Prints seconds, peak resident
memory, and the cost per row, which stays flat when cost grows linearly.

The last column is what the all-pairs approach (every pair of rows materialised as
a training example, as in a typical twin-network notebook) would need for the same
data: the number of pairs, the memory to hold them as two float32 rows each, and
one epoch's time at this run's measured training speed. Computed, not run.

``--n-members 1`` runs the single network instead of the default ensemble;
``--compile`` trains with ``compile=True`` (``torch.compile``), ``--compile
MODE`` with ``compile={"mode": MODE}`` (e.g. ``reduce-overhead``: CUDA graphs
on a GPU): the first epoch includes the compilation, the later ones show what
compiling saves per epoch.

Run: ``python benchmarks/scale.py [--sizes 50000 100000 200000 400000]
[--n-members 8] [--compile [MODE]]``
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

N_FEATURES = 33


def make_data(n, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n,
        N_FEATURES,
        n_informative=12,
        n_redundant=6,
        weights=[0.99],
        flip_y=0.0,
        class_sep=0.8,
        random_state=seed,
    )
    rng = np.random.RandomState(seed)
    X[rng.random_sample(X.shape) < 0.2] = np.nan
    return X.astype(np.float32), y


def run_one(n, n_members=None, compile=False):
    import torch

    from sksiamese import SiameseClassifier

    X, y = make_data(n)
    if compile not in (False, True):
        compile = {"mode": compile}
    clf = SiameseClassifier(
        max_epochs=5, early_stopping=False, random_state=0, compile=compile
    )
    if n_members is not None:
        clf.set_params(n_members=n_members)
    start = time.perf_counter()
    clf.fit(X, y)
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    proba = clf.predict_proba(X)
    t_proba = time.perf_counter() - start
    assert proba.shape == (n, 2) and np.isfinite(proba).all()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_train = n  # no early stopping: nothing is held out
    print(
        json.dumps(
            {
                "n": n,
                "fit": t_fit,
                "first_epoch": clf.history_[0, "dur"],
                "later_epochs": float(np.mean(clf.history_[1:, "dur"])),
                "proba": t_proba,
                "peak_mb": peak_mb,
                "samples_per_s": 5 * n_train / t_fit,
                "threads": torch.get_num_threads(),
                "n_references": len(clf.references_),
                "n_members": clf.n_members,
            }
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000, 400_000]
    )
    parser.add_argument(
        "--n-members", type=int, default=None, help="default: the estimator's"
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        metavar="MODE",
        help="train with compile=True, or compile={'mode': MODE}",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        run_one(args.one, args.n_members, args.compile)
        return

    print(
        f"{'rows':>8} {'fit (s)':>8} {'epoch 1, later (s)':>18} {'us/row':>7} "
        f"{'proba (s)':>9} "
        f"{'us/row':>7} {'peak RSS (MB)':>13}   all pairs: pairs, memory, epoch"
    )
    for n in args.sizes:
        options = [] if args.n_members is None else ["--n-members", str(args.n_members)]
        if args.compile:
            options += ["--compile"] + ([] if args.compile is True else [args.compile])
        # The child's stderr is not captured, so that its error, if any, shows.
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n), *options],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        pairs = n * (n - 1) / 2
        pair_bytes = pairs * 2 * N_FEATURES * 4
        # One in-batch pair loss step embeds each sample once, so pairs are
        # "free"; a notebook training on materialised pairs embeds 2 rows per
        # pair, at best at our measured samples/s.
        epoch_s = 2 * pairs / r["samples_per_s"]
        print(
            f"{n:>8} {r['fit']:>8.1f} {r['first_epoch']:>9.1f} "
            f"{r['later_epochs']:>8.2f} {1e6 * r['fit'] / n:>7.1f} "
            f"{r['proba']:>9.2f} {1e6 * r['proba'] / n:>7.2f} {r['peak_mb']:>13.0f}"
            f"   {pairs:.1e}, {pair_bytes / 1e12:.1f} TB, "
            f"{epoch_s / 86400:.0f} days"
        )
    print(
        f"(5 epochs; torch threads {r['threads']}; {r['n_references']} references "
        f"kept; n_members={r['n_members']}"
        f"{f'; compile={args.compile!r}' if args.compile else ''})"
    )


if __name__ == "__main__":
    main()
