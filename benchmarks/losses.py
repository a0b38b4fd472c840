"""What each in-batch loss costs, against a plain MLP + cross-entropy step.

For each loss as the estimators build it (``"bce"`` with its learned head on
the absolute difference; the others on euclidean distances), each batch size
and each number of ensemble members, on generated data (33 scaled features,
two classes, 1% positives, drawn into batches of half of each class, as the
estimators draw them):

- *loss*: the loss's own forward and backward pass on given embeddings, in
  milliseconds (no encoder, no optimizer);
- *step*: a whole training step of a hand-written loop with the library's
  encoder (MLP 128-64-32 per member), the loss and AdamW: forward, loss,
  backward, optimizer step, in milliseconds;
- *x plain*: the plain step's time over this step's, the plain step being the
  same encoder (one network, 128-64-32) with a linear layer and
  cross-entropy at the same batch size: the floor for this encoder (higher is
  better; 1.0 would be a loss that costs nothing);
- *ops*: the operations the step's forward and backward passes run on the
  device (views of a tensor left out, the optimizer too), counted on any
  device. On a GPU at small batches each costs its launch more than its
  arithmetic, so their number sets the step's time there; it is the figure
  to bring down, and it can be measured without a GPU.

The pair estimator's losses are the same functions: its group term is
``nca`` over both vectors of each pair.

Every figure is the best of ``--repeat`` runs of as many steps as take about
``--seconds`` each (measured once beforehand); on a CUDA device every timing
waits for the device. Run alone: other work on the same cores changes the
figures several-fold.

``--gpu-paths`` runs the code paths a GPU takes (no value read back by the
host, sums added in a fixed order) on any device: on a CPU, the *ops* column
then counts what a GPU would launch (the CPU's own paths differ for
``"bce"``, whose head's distances a CPU computes from ``torch.cdist``). With
``--batch 16 --threads 1`` a CPU step is bound by the host's work per
operation (Python, dispatch, autograd), as a GPU's steps are at batch 128:
its *x plain* shows which way a change moves a GPU's, not the GPU's figure
(with an earlier version it read 0.72 for ``"contrastive"``, 0.51 for
``"bce"``, 0.63 for ``"triplet"``, 0.74 for ``"prototype"`` and
``"nca"``, where an H200 gave 0.55, 0.57, 0.61-0.67, 0.68-0.84 and
0.62-0.73 at batch 128).

``--profile`` also prints, for each row, the operations that took most of
the time of ten training steps (``torch.profiler``: device time on a GPU,
host time on a CPU), to see where a loss's time goes. The profiles run after
the whole table: on a GPU, a profiler once started slows every later kernel
launch, so profiling between the rows would inflate the later rows' times.

Run: ``python benchmarks/losses.py [--device cpu] [--threads 1]
[--batch 128,1024] [--members 1,8] [--losses contrastive,bce,triplet,prototype,nca]
[--gpu-paths] [--profile]``
"""

import argparse
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import make_classification
from throughput import sync
from torch.utils._python_dispatch import TorchDispatchMode

from sksiamese import _networks
from sksiamese._losses import LOSSES, InBatchLoss
from sksiamese._networks import EnsembleMLPEncoder, MLPEncoder, SiameseModule

N_FEATURES, HIDDEN, EMBEDDING = 33, (128, 64), 32


def best_time(run, device, seconds, repeat):
    """Best seconds per call of ``run`` over ``repeat`` timed runs."""
    for _ in range(3):  # warm up (allocator, kernels, first-call costs)
        run()
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    once = max(time.perf_counter() - start, 1e-6)
    n = max(3, int(seconds / once))
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        for _ in range(n):
            run()
        sync(device)
        best = min(best, (time.perf_counter() - start) / n)
    return best


class _Operations(TorchDispatchMode):
    """Counts the operations run, by name, views left out."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket.__name__ != "_unsafe_view":
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def siamese_module(loss, n_members, device):
    if n_members == 1:
        encoder = MLPEncoder(N_FEATURES, HIDDEN, EMBEDDING)
    else:
        encoder = EnsembleMLPEncoder(N_FEATURES, HIDDEN, EMBEDDING, n_members=n_members)
    return SiameseModule(
        encoder,
        "euclidean",
        head=loss == "bce",
        embedding_dim=EMBEDDING * n_members,
        n_members=n_members,
    ).to(device)


def batches(X, y, batch_size, device, gen):
    """An endless supply of class-balanced batches (half of each class, as the
    estimators draw them for two classes), drawn on the device. As in the
    estimators, every batch holds both classes in the same places, so all
    share one tensor of labels."""
    members = [torch.nonzero(y == c)[:, 0] for c in (0, 1)]
    half = batch_size // 2
    labels = torch.arange(2, device=device).repeat_interleave(half)
    while True:
        idx = torch.cat(
            [
                m[torch.randint(0, len(m), (half,), device=device, generator=gen)]
                for m in members
            ]
        )
        yield X[idx], labels


def profile_steps(step, device, label, steps=10, rows=8):
    """Print the operations that took most of ``steps`` calls of ``step``,
    under ``label``."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "device_time_total" if on_cuda else "cpu_time_total"
    print(f"-- {label}: {steps} steps")
    print(prof.key_averages().table(sort_by=key, row_limit=rows), flush=True)


def step_time(
    make_loss, params, X, y, batch_size, device, seconds, repeat, profile=None
):
    """Seconds per training step, and the operations of its forward and
    backward passes; with ``profile`` (a label and a list), the step is added
    to the list under that label, to be profiled after every timing."""
    gen = torch.Generator(device=device).manual_seed(0)
    supply = batches(X, y, batch_size, device, gen)
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step():
        xb, yb = next(supply)
        opt.zero_grad(set_to_none=True)
        make_loss(xb, yb).backward()
        opt.step()

    seconds = best_time(step, device, seconds, repeat)
    if profile:
        label, to_profile = profile
        to_profile.append((label, step))
    xb, yb = next(supply)
    with _Operations() as ops:
        make_loss(xb, yb).backward()
    return seconds, sum(ops.counts.values())


def plain_step_time(X, y, batch_size, timing):
    """The floor: one network, a linear layer and cross-entropy."""
    torch.manual_seed(0)
    device = timing["device"]
    encoder = MLPEncoder(N_FEATURES, HIDDEN, EMBEDDING).to(device)
    linear = torch.nn.Linear(EMBEDDING, 2).to(device)

    def loss(xb, yb):
        return F.cross_entropy(linear(encoder(xb)), yb)

    params = list(encoder.parameters()) + list(linear.parameters())
    return step_time(loss, params, X, y, batch_size, **timing)


def loss_times(name, n_members, X, y, batch_size, timing):
    """The loss alone on given embeddings, and a whole training step."""
    torch.manual_seed(0)
    device = timing["device"]
    module = siamese_module(name, n_members, device)
    criterion = InBatchLoss(name, n_classes=2)
    gen = torch.Generator(device=device).manual_seed(1)
    emb = torch.randn(
        batch_size, EMBEDDING * n_members, device=device, generator=gen
    ).requires_grad_()
    codes = (torch.arange(batch_size, device=device) >= batch_size // 2).long()

    def loss_only():
        criterion(emb, codes, module).backward()

    def loss(xb, yb):
        return criterion(module(xb), yb, module)

    return (
        best_time(loss_only, timing["device"], timing["seconds"], timing["repeat"]),
        step_time(loss, module.parameters(), X, y, batch_size, **timing),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", default="128,1024")
    parser.add_argument("--members", default="1,8")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gpu-paths",
        action="store_true",
        help="run the code paths a GPU takes, on any device",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print where each step's time goes"
    )
    args = parser.parse_args()
    if args.gpu_paths:
        _networks._host_reads_are_free = lambda device: False
        _networks._adds_in_order = lambda device: False
    losses = args.losses.split(",")
    for name in losses:
        if name not in LOSSES:
            parser.error(f"--losses: {name!r} is not one of {LOSSES}")
    torch.set_num_threads(args.threads)
    device = args.device

    X, y = make_classification(
        100_000, N_FEATURES, n_informative=10, weights=[0.99], random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    timing = dict(device=device, seconds=args.seconds, repeat=args.repeat)

    print(
        f"device {device}, torch threads {torch.get_num_threads()}, "
        f"best of {args.repeat}; times in ms"
        + ("; the paths a GPU takes" if args.gpu_paths else "")
    )
    print(
        f"{'loss':<12}{'batch':>6}{'members':>8}{'loss':>10}{'step':>10}"
        f"{'x plain':>9}{'ops':>6}"
    )

    def label(name, batch_size, n_members):
        return f"{name}, batch {batch_size}, {n_members} member(s)"

    to_profile = []

    for batch_size in (int(b) for b in args.batch.split(",")):
        if args.profile:
            timing["profile"] = label("plain CE", batch_size, 1), to_profile
        plain, plain_ops = plain_step_time(Xt, yt, batch_size, timing)
        print(
            f"{'plain CE':<12}{batch_size:>6}{1:>8}{'':>10}"
            f"{plain * 1e3:>10.2f}{1:>9.2f}{plain_ops:>6}"
        )
        for n_members in (int(m) for m in args.members.split(",")):
            for name in losses:
                if args.profile:
                    timing["profile"] = label(name, batch_size, n_members), to_profile
                alone, (step, ops) = loss_times(
                    name, n_members, Xt, yt, batch_size, timing
                )
                ratio = f"{plain / step:>9.2f}" if n_members == 1 else f"{'':>9}"
                print(
                    f"{name:<12}{batch_size:>6}{n_members:>8}"
                    f"{alone * 1e3:>10.2f}{step * 1e3:>10.2f}{ratio}{ops:>6}",
                    flush=True,
                )
    for name, step in to_profile:
        profile_steps(step, device, name)


if __name__ == "__main__":
    main()
