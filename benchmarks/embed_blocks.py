"""Prediction throughput and memory by the rows of each forward pass.

``transform``, ``predict_proba`` and ``predict`` embed their input in blocks
of a fixed number of rows (``sksiamese._training.EMBED_ROWS``: 2,048 on a
CPU, 65,536 on a GPU, or fewer for a module whose widest activation would
hold more than ``_EMBED_VALUES`` values; the last block padded, so that a
sample's embedding does not depend on the samples embedded with it). Larger
blocks mean fewer forward passes, fewer scaling passes and fewer copies,
each with its own launch overhead on a GPU, but more memory for the
encoder's activations: a CNN's grow with the image. This script measures,
for one network, the default 8-member ensemble and the CNN, at each block
size given (the bound on values lifted), then at the rows the library picks
(row ``auto``, with the number of rows):

- ``transform`` and ``predict_proba`` in rows per second (best of
  ``--repeat``, every timing waiting for the device), ``transform``'s ratio
  to a plain forward pass of the same module over the same rows already
  scaled and on the device, in blocks of 65,536 on a GPU (images: 1,024)
  and 4,096 on a CPU (images: 64), with the embeddings copied to the host
  at the end;
- ``predict_proba`` of one row, in milliseconds (best of ``--repeat``
  times 10 calls): the cost of the padding of a pass for a small input;
- the peak GPU memory of the prediction calls (on a GPU);
- the largest difference of the embeddings from those at the first block
  size (matrix products may round differently for other numbers of rows).

On a CPU the default image count is small (64), so the larger blocks there
mostly measure the padding of a small input to a whole block.

Run: ``python benchmarks/embed_blocks.py [--device cuda] [--rows 8192,65536]
[--encoders mlp1,mlp8,cnn]``
"""

import argparse
import time

import numpy as np
import torch

from sksiamese import SiameseClassifier, _training

# Rows of each pass of the plain forward pass of the MLPs (a CPU is faster
# with blocks that stay in its caches).
PLAIN_ROWS = {True: 65536, False: 4096}

ENCODERS = {
    "mlp1": dict(n_members=1),
    "mlp8": dict(),
    "cnn": dict(encoder="cnn", references="all"),
}


def timed(device, repeat, fn, *args):
    """Best time of ``repeat`` calls ``fn(*args)``, each waited for on ``device``."""
    best = np.inf
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def plain_forward(module, Z, rows):
    """Embeddings of the scaled rows ``Z`` (a tensor on ``device``), on the host."""
    module.eval()
    return torch.cat([module(Z[s : s + rows]) for s in range(0, len(Z), rows)]).cpu()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--rows",
        default=None,
        help="block sizes, comma-separated (default: 8192,16384,32768,65536 "
        "on a GPU, 256,1024,4096 on a CPU)",
    )
    parser.add_argument("--encoders", default="mlp1,mlp8,cnn")
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=33)
    parser.add_argument(
        "--n-images", type=int, default=None, help="(default: 4096 on a GPU, 64)"
    )
    parser.add_argument("--image-size", type=int, default=105)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if args.rows is None:
        args.rows = "8192,16384,32768,65536" if on_gpu else "256,1024,4096"
    sizes = [int(r) for r in args.rows.split(",")]
    n_images = args.n_images or (4096 if on_gpu else 64)
    if n_images < 40:
        # fit needs two images of each of the 20 classes below.
        parser.error("--n-images must be at least 40 (20 classes of 2 images)")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(args.n_samples, args.n_features)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=len(X)) > 1.0).astype(int)
    side = args.image_size
    images = rng.uniform(size=(n_images, side * side)).astype(np.float32)
    labels = np.arange(n_images) % 20

    print(
        f"{args.n_samples:,} rows x {args.n_features} features; {n_images:,} images "
        f"of {side}x{side}; device {device}; best of {args.repeat}"
    )
    print(
        f"{'encoder':8} {'rows':>9} {'transform/s':>13} {'ratio':>6} "
        f"{'predict_proba/s':>16} {'1 row ms':>9} {'peak MiB':>9} {'max diff':>9}"
    )
    default_rows = dict(_training.EMBED_ROWS)
    default_values = dict(_training._EMBED_VALUES)
    try:
        for name in args.encoders.split(","):
            params = ENCODERS[name]
            A, b = (images, labels) if name == "cnn" else (X, y)
            if name == "cnn":
                params = {**params, "image_shape": (side, side)}
            clf = SiameseClassifier(
                max_epochs=1,
                batch_size=64,
                random_state=0,
                device=args.device,
                **params,
            ).fit(A[:4000], b[:4000])
            Z = torch.as_tensor(clf._scaled(A), device=device)
            module = clf.net_.module_
            plain_rows = (
                (1024 if on_gpu else 64) if name == "cnn" else PLAIN_ROWS[on_gpu]
            )
            repeat = min(args.repeat, 3) if name == "cnn" else args.repeat
            t_plain = timed(device, repeat, plain_forward, module, Z, plain_rows)
            first = None
            picked = _training.pass_rows(
                module, device.type, tuple(Z.shape[1:]), lambda Z=Z: Z[:1]
            )
            for rows in [*sizes, None]:
                if rows is None:  # the library's own choice
                    _training.EMBED_ROWS.update(default_rows)
                    _training._EMBED_VALUES.update(default_values)
                else:
                    _training.EMBED_ROWS[device.type] = rows
                    _training._EMBED_VALUES[device.type] = 1 << 62
                label = f"{rows:d}" if rows else f"auto {picked}"
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    t_transform = timed(device, repeat, clf.transform, A)
                    t_proba = timed(device, repeat, clf.predict_proba, A)
                    t_one = timed(device, 10 * repeat, clf.predict_proba, A[:1])
                except torch.cuda.OutOfMemoryError:
                    print(f"{name:8} {label:>9} out of GPU memory")
                    torch.cuda.empty_cache()
                    continue
                peak = torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else 0
                E = clf.transform(A[:5000])
                first = E if first is None else first
                print(
                    f"{name:8} {label:>9} {len(A) / t_transform:13,.0f} "
                    f"{t_plain / t_transform:6.2f} {len(A) / t_proba:16,.0f} "
                    f"{1e3 * t_one:9.2f} {peak:9.0f} {np.abs(E - first).max():9.1e}",
                    flush=True,
                )
    finally:
        _training.EMBED_ROWS.update(default_rows)
        _training._EMBED_VALUES.update(default_values)


if __name__ == "__main__":
    main()
