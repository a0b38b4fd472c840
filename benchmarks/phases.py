"""Where the time of ``fit`` and ``predict_proba`` goes, phase by phase.

``throughput.py`` compares the whole of ``fit`` and ``predict_proba`` with
plain PyTorch; this script splits them, to show which part a gap comes from.
It fits ``SiameseClassifier`` (its defaults, unless told otherwise) on
generated data (``make_classification``, ``--n-samples`` rows x 33 features;
for 2 classes 1% positives by default, as in the GPU speed figures), then predicts
probabilities for the same rows, and prints the time of each phase, nested as
the calls nest:

- ``fit``: the set-up (validation, scaling statistics, the network), the
  training (skorch's loop; its epochs alone are skorch's ``dur``), and what
  comes after the epochs: the calibration scores (embedding the rows they read,
  scoring them against references they were not among: out of bag, with
  each member's k-means on the rows it trained on), the references
  (embedding, k-means per class), the temperature and the pair calibration;
- ``predict_proba``: validation, then embedding and scoring in one pass (the
  embeddings meet the references on the device), of which scoring.

Times are inclusive (a phase's time holds that of the phases listed under it)
and in milliseconds, from the fastest of ``--repeat`` fits (and predictions);
``calls`` counts how often a phase ran. Each phase waits for the device when
it starts and ends, so that its time is its own: on a GPU that removes some
overlap of host and device work, and the phases may sum to a little more than
an untimed call.

Run: ``python benchmarks/phases.py [--device auto] [--n-samples 100000]
[--epochs 5] [--batch-size auto] [--n-members 8] [--n-classes 2]``
"""

import argparse
import contextlib
import functools
import time

import numpy as np
import torch
from sklearn.datasets import make_classification

import sksiamese._base
import sksiamese._classifier
import sksiamese._references
import sksiamese._training
from sksiamese import SiameseClassifier

# (owner, attribute, label): what is timed. Functions are replaced where the
# code that calls them looks them up.
PHASES = [
    (sksiamese._base._BaseSiamese, "_fit_setup", "set-up"),
    (sksiamese._base._BaseSiamese, "_train", "training"),
    (sksiamese._classifier.SiameseClassifier, "_fit_finish", "after the epochs"),
    (sksiamese._classifier, "calibration_scores", "calibration scores"),
    (sksiamese._classifier, "select_references", "references"),
    (sksiamese._references, "kmeans", "k-means"),
    (sksiamese._classifier, "fit_temperature", "temperature"),
    (sksiamese._classifier, "fit_logistic_1d", "pair calibration"),
    (sksiamese._base._BaseSiamese, "_validate_X", "validation"),
    (sksiamese._training.SiameseNet, "embed", "embedding"),
    (sksiamese._references, "class_dissimilarity", "scoring"),
    # The calibration's out-of-bag scores call it from there.
    (sksiamese._calibration, "class_dissimilarity", "scoring"),
]


class Phases:
    """Inclusive times of nested, labelled calls: ``{path: [seconds, calls]}``,
    a path being the labels of the timed calls it is made inside; ``extra``,
    rows measured otherwise, ``(path, depth, label, seconds)``, printed after
    the phase ``path``."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.times = {}
        self.extra = []
        self._stack = []

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def phase(self, label):
        self._stack.append(label)
        path = tuple(self._stack)
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            entry = self.times.setdefault(path, [0.0, 0])
            entry[0] += time.perf_counter() - start
            entry[1] += 1
            self._stack.pop()

    @contextlib.contextmanager
    def patched(self):
        """Every function of ``PHASES`` timed, while the context lasts."""
        saved = []
        try:
            for owner, name, label in PHASES:
                original = getattr(owner, name)
                saved.append((owner, name, original))
                setattr(owner, name, self._timed(original, label))
            yield self
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def _timed(self, fn, label):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self.phase(label):
                return fn(*args, **kwargs)

        return timed


def best_run(device, repeat, fn):
    """The :class:`Phases` of the fastest of ``repeat`` calls ``fn(phases)``."""
    best = None
    for _ in range(repeat):
        phases = Phases(device)
        with phases.patched():
            fn(phases)
        total = sum(t for path, (t, _) in phases.times.items() if len(path) == 1)
        if best is None or total < best[0]:
            best = (total, phases)
    return best[1]


def print_table(phases):
    """The phases, indented as they nest, with their share of the top-level
    call they are in, and the ``extra`` rows after their phases."""
    print(f"{'phase':40} {'ms':>10} {'share':>7} {'calls':>6}")
    # A call's path is recorded when it ends: siblings are in the order they
    # ran, children before their parent, so the table is walked from the top.
    rows = [(path, t, n) for path, (t, n) in phases.times.items()]
    ordered = []

    def children(prefix):
        return [r for r in rows if len(r[0]) == len(prefix) + 1 and r[0][:-1] == prefix]

    def walk(prefix):
        for row in children(prefix):
            ordered.append(row)
            walk(row[0])

    walk(())
    for path, t, n in ordered:
        top = phases.times[path[:1]][0]
        label = "  " * (len(path) - 1) + path[-1]
        print(f"{label:40} {1e3 * t:10.1f} {t / top:7.1%} {n:6d}")
        for after, depth, name, seconds in phases.extra:
            if after == path:
                label = "  " * depth + name
                print(f"{label:40} {1e3 * seconds:10.1f} {seconds / top:7.1%} {'':>6}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-classes", type=int, default=2)
    parser.add_argument(
        "--minority",
        type=float,
        default=None,
        help="share of each class but the first (default: 0.01 for 2 classes, "
        "else all classes of one size)",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument(
        "--n-members", type=int, default=None, help="(default: the estimator's)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    minority = args.minority
    if minority is None and args.n_classes == 2:
        minority = 0.01
    weights = None
    if minority is not None:
        if minority * (args.n_classes - 1) >= 1:
            parser.error("--minority times the classes but one must be below 1")
        weights = [1 - minority * (args.n_classes - 1)]
        weights += [minority] * (args.n_classes - 1)
    X, y = make_classification(
        args.n_samples,
        33,
        n_informative=10,
        n_classes=args.n_classes,
        n_clusters_per_class=1,
        weights=weights,
        random_state=0,
    )
    X = X.astype(np.float32)
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    params = dict(
        max_epochs=args.epochs,
        batch_size=batch_size,
        random_state=0,
        device=args.device,
    )
    if args.n_members is not None:
        params["n_members"] = args.n_members
    clf = SiameseClassifier(**params)
    print(
        f"{args.n_samples:,} rows x 33 features, {args.n_classes} classes; "
        f"{args.epochs} epochs, batch_size={batch_size}, "
        f"n_members={clf.n_members}; device {args.device}; "
        f"fastest of {args.repeat}\n"
    )

    def fit(phases):
        with phases.phase("fit"):
            clf.fit(X, y)
        epochs = float(sum(clf.history_[:, "dur"]))
        label = "its epochs (skorch's dur)"
        phases.extra.append((("fit", "training"), 2, label, epochs))

    print_table(best_run(args.device, args.repeat, fit))

    def predict(phases):
        with phases.phase("predict_proba"):
            clf.predict_proba(X)

    print()
    print_table(best_run(args.device, 3 * args.repeat, predict))


if __name__ == "__main__":
    main()
