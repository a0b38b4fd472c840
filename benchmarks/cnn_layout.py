"""The CNN encoder's speed with its images stored NCHW or channels last.

``CNNEncoder.forward`` stores the images channels last (NHWC) on a CPU, where
oneDNN's convolutions and pooling take a faster path for those strides, and
keeps them as they come (NCHW) elsewhere; its weights keep their layout. This
script measures, on one device, the images NCHW, channels last (the library's
CPU path), and channels last with the convolutions' weights stored so too,
for the Conv-4 network at two image sizes: a training step (forward, a loss,
backward, AdamW) in milliseconds and inference in images per second, with
cuDNN's deterministic algorithms on (as ``fit`` sets them) and off (on a
GPU). The values are the same in every layout (to float32 rounding); only
the speed differs.

Run: ``python benchmarks/cnn_layout.py [--device cuda] [--steps 30]``
(alone: other work on the same cores changes the figures several-fold).
"""

import argparse
import time

import torch

from sksiamese._networks import CNNEncoder

# (image side, filters, training batch, inference batch) by device type:
# the Omniglot benchmark's images and filters, and 105x105 images.
CASES = {
    "cuda": [(28, 96, 256, 4096), (105, 64, 128, 4096)],
    "cpu": [(28, 64, 64, 256), (105, 64, 16, 64)],
}


# The images NCHW; channels last; channels last and the weights too.
WEIGHTS_TOO = "weights too"
LAYOUTS = ("NCHW", "channels last", WEIGHTS_TOO)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device, side, channels, batch, infer_batch, layout, steps):
    """Milliseconds per training step and images per second of inference."""
    torch.manual_seed(0)
    module = CNNEncoder((1, side, side), 64, channels).to(device)
    fmt = torch.contiguous_format if layout == "NCHW" else torch.channels_last
    if layout == WEIGHTS_TOO:
        module = module.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(module.parameters())
    shape = (1, side, side)

    def forward(x):
        # As CNNEncoder.forward, with the layout chosen here.
        images = torch.empty((len(x), *shape), device=device, memory_format=fmt)
        images.copy_(x.reshape(len(x), *shape))
        return module.embed(module.features(images).flatten(1))

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        forward(x).square().mean().backward()
        optimizer.step()

    x = torch.rand(batch, side * side, device=device)
    for _ in range(5):
        step(x)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    sync(device)
    step_ms = (time.perf_counter() - start) / steps * 1e3
    module.eval()
    x = torch.rand(infer_batch, side * side, device=device)
    with torch.inference_mode():
        forward(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(max(1, steps // 3)):
            forward(x)
        sync(device)
        per_second = infer_batch * max(1, steps // 3) / (time.perf_counter() - start)
    return step_ms, per_second


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(
        f"{'image':>7} {'filters':>7} {'batch':>5} {'deterministic':>13} "
        f"{'layout':>13} {'step ms':>8} {'images/s':>10}"
    )
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        for side, channels, batch, infer_batch in CASES[device.type]:
            # (cuDNN's settings change nothing on a CPU.)
            for deterministic in (True, False) if device.type == "cuda" else (True,):
                cudnn.deterministic, cudnn.benchmark = deterministic, False
                for layout in LAYOUTS:
                    step_ms, per_second = measure(
                        device, side, channels, batch, infer_batch, layout, args.steps
                    )
                    print(
                        f"{side:>3}x{side:<3} {channels:>7} {batch:>5} "
                        f"{str(deterministic):>13} {layout:>13} {step_ms:8.2f} "
                        f"{per_second:10,.0f}",
                        flush=True,
                    )
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


if __name__ == "__main__":
    main()
