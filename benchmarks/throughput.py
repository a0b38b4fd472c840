"""Training and prediction throughput against a hand-written PyTorch loop.

In one run, on the same generated data (scaled float32, no blanks), with the same
encoder (one MLP 128-64-32: ``n_members=1``; ``--n-members 8`` compares the
default ensemble with a loop that trains the same ensemble module, and what the
ensemble costs against one network is measured by ``keel.py --previous`` and
``scale.py``), batch size, in-batch loss (the default, prototype) and
AdamW optimizer (with PyTorch's fused kernel, as SiameseClassifier uses where
PyTorch has one):

- *plain fit*: a minimal loop over shuffled batches (``torch.randperm``) that does
  only the forward pass, loss, backward pass and optimizer step; the row *with
  AdamW's defaults* is the same loop with ``torch.optim.AdamW``'s default
  (unfused) implementation, as most hand-written loops use it;
- *SiameseClassifier.fit*: the whole ``fit`` (validation, class-balanced batches,
  skorch's loop and callbacks, reference embedding and calibration), with
  ``max_epochs`` fixed, no early stopping and no held-out split, so both process the
  same number of samples; the row *its training epochs* counts only the epochs
  (skorch's ``dur``), without the set-up before and the references and
  calibration after;
- *plain forward* over all rows in blocks vs ``transform``, which also validates
  and scales its input (the row *plain scaling+forward* shows what the same
  scaling, robust scaling and smooth clipping written in numpy, costs a plain
  pass, i.e. the share of the gap due to scaling); and the plain forward pass
  over rows scaled beforehand, followed by a plain comparison with the same
  references (``torch.cdist``, the closest references of each class that hold
  the same share of it, their weighted mean distance, softmax) vs
  ``predict_proba`` (checked to give the same probabilities).

Prints samples per second and the ratio to the plain loop (higher is better; the
targets are >= 0.9).

``fit`` also has a fixed cost, the same whatever the number of epochs: scaling
the input before, embedding all rows, choosing references and calibrating after
(printed below the table). The default of 10 epochs is a short fit (the
estimator's default is 30); ``--epochs 3`` shows that cost's larger share
in a very short one.

``--device cuda`` runs both sides on a GPU: the plain loop keeps the training
data on the device (as ``SiameseClassifier`` does when they fit), the plain
forward pass copies blocks of 65,536 rows in and the embeddings out once, and
every timing waits for the device to finish.

``--compile`` adds the same two fits with the module and the loss compiled
by ``torch.compile`` (the loop's own, and ``compile=True``); their ratios are
to the loop that is not compiled, and as every time is the best of
``--repeat`` runs, they leave out the compilation (done in the first run).

Run: ``python benchmarks/throughput.py [--n-samples 100000] [--epochs 10]
[--device cpu] [--compile]``
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import make_classification

from sksiamese import SiameseClassifier
from sksiamese._calibration import prior_term
from sksiamese._losses import InBatchLoss
from sksiamese._networks import EnsembleMLPEncoder, MLPEncoder, SiameseModule
from sksiamese._references import _MAX_NEIGHBOURHOOD
from sksiamese._training import fused_optimizer


def sync(device):
    """Wait for the device's queued work, so that a timing includes it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plain_fit(
    X,
    y,
    epochs,
    batch_size,
    seed,
    same_optimizer=True,
    device="cpu",
    compile=False,
    n_members=1,
):
    """``same_optimizer``: AdamW as SiameseClassifier builds it (fused kernel
    where PyTorch has one), else AdamW's default implementation. ``compile``:
    the steps run the module and the loss compiled by ``torch.compile``.
    ``n_members``: one MLP, or the estimator's ensemble module of that many."""
    torch.manual_seed(seed)
    if n_members == 1:
        encoder = MLPEncoder(X.shape[1], (128, 64), 32)
    else:
        encoder = EnsembleMLPEncoder(X.shape[1], (128, 64), 32, 0.0, n_members)
    module = SiameseModule(encoder).to(device)
    # The number of classes, as the estimator gives it: without it the
    # prototype loss looks the batch's classes up, a wait for a GPU per step.
    criterion = InBatchLoss(SiameseClassifier().loss, n_classes=len(np.unique(y)))
    fused = same_optimizer and fused_optimizer(module, device)
    opt = torch.optim.AdamW(
        module.parameters(), lr=1e-3, weight_decay=1e-4, fused=fused or None
    )
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    module.train()
    forward = torch.compile(module) if compile else module
    loss_fn = torch.compile(criterion) if compile else criterion
    for _ in range(epochs):
        perm = torch.randperm(len(Xt), device=device)
        for start in range(0, len(Xt), batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad()
            loss = loss_fn(forward(Xt[idx]), yt[idx], module)
            loss.backward()
            opt.step()
    sync(device)
    return module


@torch.inference_mode()
def plain_forward(module, X):
    """Embeddings of the host array ``X``, on the module's device."""
    module.eval()
    device = next(module.parameters()).device
    batch_size = 4096 if device.type == "cpu" else 65536
    Xt = torch.from_numpy(X)
    return torch.cat(
        [
            module(Xt[s : s + batch_size].to(device, non_blocking=True))
            for s in range(0, len(Xt), batch_size)
        ]
    )


@torch.inference_mode()
def plain_predict_proba(
    module, X, R, r_codes, weights, n_classes, k, temperature, log_prior
):
    """Forward pass, then for each class the weighted mean distance over the
    closest references that hold the same share of every class (at least k of
    them), and a softmax with the prior term: what predict_proba computes,
    written plainly. An ensemble's distance is that of its members' embeddings
    side by side over the square root of their number (their squares averaged)."""
    E = plain_forward(module, X).double() / module.n_members**0.5
    R = torch.from_numpy(R).double().to(E.device) / module.n_members**0.5
    weights = torch.from_numpy(weights).double().to(E.device)
    r_codes = torch.from_numpy(r_codes).to(E.device)
    counts = torch.bincount(r_codes, minlength=n_classes)
    share = min(k / counts.min().item(), _MAX_NEIGHBOURHOOD)
    scores = []
    for c in range(n_classes):
        w_c = weights[r_codes == c]
        want = share * w_c.sum()
        kc = min(k, len(w_c))
        # Enough references to hold ``want`` samples, even the lightest ones.
        needed = int(torch.searchsorted(w_c.sort().values.cumsum(0), want)) + 1
        fetch = min(len(w_c), max(kc, needed))
        d, idx = torch.topk(
            torch.cdist(E, R[r_codes == c]), fetch, dim=1, largest=False
        )
        w = w_c[idx]
        total = w.cumsum(1)
        cover = total[:, kc - 1].clamp(min=want)
        take = torch.minimum((cover[:, None] - total + w).clamp(min=0), w)
        scores.append((take * d).sum(1) / take.sum(1))
    logits = -torch.stack(scores, 1) / temperature + torch.from_numpy(log_prior).to(
        E.device
    )
    return torch.softmax(logits, dim=1).cpu().numpy()


def race(fns, repeat):
    """Best time and last output of each function, run in turns so that a
    slow spell of a shared machine hits all of them alike."""
    best = [np.inf] * len(fns)
    out = [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            out[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=33)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--n-members",
        type=int,
        default=1,
        help="networks of the ensemble, on both sides (default: 1)",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time compiled training"
    )
    args = parser.parse_args(argv)
    device = args.device

    X, y = make_classification(
        args.n_samples,
        args.n_features,
        n_informative=10,
        weights=[0.9],
        random_state=0,
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)

    clf = SiameseClassifier(
        n_members=args.n_members,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping=False,
        validation_fraction=0.0,
        random_state=0,
        device=device,
    )
    # skorch's own timing of each fit's epochs: the training loop without the
    # set-up before and the references and calibration after.
    epoch_times = {False: [], True: []}

    def siamese_fit(compile=False):
        clf.set_params(compile=compile).fit(X, y)
        epoch_times[compile].append(float(sum(clf.history_[:, "dur"])))

    # The same optimizer as SiameseClassifier's, fused kernel included where
    # PyTorch has one; also timed with AdamW's defaults, as most loops are.
    members = args.n_members
    fits = [
        lambda: plain_fit(
            X, y, args.epochs, args.batch_size, 0, device=device, n_members=members
        ),
        lambda: plain_fit(
            X, y, args.epochs, args.batch_size, 0, False, device, n_members=members
        ),
    ]
    if args.compile:
        fits += [
            lambda: plain_fit(
                X,
                y,
                args.epochs,
                args.batch_size,
                0,
                device=device,
                compile=True,
                n_members=members,
            ),
            lambda: siamese_fit(compile=True),
        ]
    # The plain fit last: predictions below use its model.
    (t_plain, t_default, *t_compiled, t_fit), (module, *_) = race(
        [*fits, siamese_fit], args.repeat
    )
    t_epochs = min(epoch_times[False])
    # Prediction takes milliseconds: more turns for a stable best time.
    n_turns = 10 * args.repeat
    # The statistics of SiameseClassifier's default (robust) scaling.
    median = clf._scaler.center_.astype(np.float32)
    spread = clf._scaler.scale_.astype(np.float32)

    def plain_scale(X):
        Z = (X - median) / spread
        return Z / np.sqrt(1 + (Z / 3) ** 2)

    (t_fwd, t_scaled_fwd, t_transform), _ = race(
        [
            lambda: plain_forward(module, X).cpu(),
            lambda: plain_forward(module, plain_scale(X)).cpu(),
            lambda: clf.transform(X),
        ],
        n_turns,
    )
    X_scaled = plain_scale(X)
    (t_plain_proba, t_proba), (plain_proba, proba) = race(
        [
            lambda: plain_predict_proba(
                clf.net_.module_,
                X_scaled,
                clf.references_,
                clf._reference_codes,
                clf._reference_weights,
                len(clf.classes_),
                clf.n_neighbors,
                clf.temperature_,
                prior_term(
                    clf.class_prior_,
                    clf._prior_scale,
                    clf.class_weight,
                    clf.classes_,
                ),
            ),
            lambda: clf.predict_proba(X),
        ],
        n_turns,
    )
    # Same numbers, or the comparison would be meaningless.
    np.testing.assert_allclose(proba, plain_proba, atol=1e-3)

    n_train = args.n_samples * args.epochs
    rows = [
        ("fit", "plain PyTorch loop", n_train / t_plain, 1.0),
        ("fit", "  with AdamW's defaults", n_train / t_default, t_plain / t_default),
        ("fit", "SiameseClassifier.fit", n_train / t_fit, t_plain / t_fit),
        ("fit", "  its training epochs", n_train / t_epochs, t_plain / t_epochs),
    ]
    if args.compile:
        t_loop_c, t_fit_c = t_compiled
        t_epochs_c = min(epoch_times[True])
        rows += [
            ("fit", "plain loop, compiled", n_train / t_loop_c, t_plain / t_loop_c),
            ("fit", "fit, compile=True", n_train / t_fit_c, t_plain / t_fit_c),
            (
                "fit",
                "  its training epochs",
                n_train / t_epochs_c,
                t_plain / t_epochs_c,
            ),
        ]
    rows += [
        ("predict", "plain forward pass", args.n_samples / t_fwd, 1.0),
        (
            "predict",
            "plain scaling+forward",
            args.n_samples / t_scaled_fwd,
            t_fwd / t_scaled_fwd,
        ),
        ("predict", "transform", args.n_samples / t_transform, t_fwd / t_transform),
        ("predict", "plain forward+references", args.n_samples / t_plain_proba, 1.0),
        ("predict", "predict_proba", args.n_samples / t_proba, t_plain_proba / t_proba),
    ]
    print(
        f"{args.n_samples} samples x {args.n_features} features, {args.epochs} "
        f"epochs, batch {args.batch_size}, n_members {members}, device {device}, "
        "torch threads "
        f"{torch.get_num_threads()}, best of {args.repeat}"
    )
    print(f"{'stage':<8} {'what':<26} {'samples/s':>12} {'ratio':>7}")
    for stage, what, rate, ratio in rows:
        print(f"{stage:<8} {what:<26} {rate:>12,.0f} {ratio:>7.2f}")
    print(
        f"SiameseClassifier references: {len(clf.references_)}; fit outside its "
        f"epochs: {t_fit - t_epochs:.2f} s (best fit minus best epochs); "
        f"prediction times: best of {n_turns}"
    )


if __name__ == "__main__":
    main()
