#!/usr/bin/env bash
# The checks that need a CUDA device, as one script: the test suite with CUDA
# visible (so device="auto" picks it), repeatability of seeded fits on the
# device, the GPU speed scripts, losses.py (each loss against a plain step),
# throughput.py at batch 128 and 1024 and the Omniglot benchmark. Each step's
# log goes to OUT_DIR; a failing step does not stop the others.
#
# Run: bash benchmarks/gpu_check.sh OUT_DIR [GPU_SCRIPTS_DIR] [OMNIGLOT_DIR]
#
# GPU_SCRIPTS_DIR holds speed.py and steps.py (the measurements of the GPU
# issue); OMNIGLOT_DIR the Omniglot zip files. Steps whose folder is not given
# are skipped. On a machine without CUDA the script still runs (on the CPU),
# which is how to try it before spending device time; set QUICK=1 to shorten
# the speed runs there, SKIP_TESTS=1 to leave out the suite (on a CPU,
# steps.py's triplet loss at batch 1024 alone runs for over ten minutes).
# ONLY="tests repeatability" runs just the steps named (tests, repeatability,
# speed, steps, losses, losses_profile, phases, scale, scale_compile,
# scale_graphs, throughput, throughput_b1024, throughput_ensemble,
# throughput_compile, embed_blocks, cnn_layout, omniglot,
# omniglot_cudnn_default), to split the checks over several calls of a
# time-limited machine. The *_compile steps train with compile=True
# (torch.compile), scale_graphs with compile={"mode": "reduce-overhead"}
# (CUDA graphs); omniglot_cudnn_default trains with cuDNN's nondeterministic
# defaults (what repeatability costs).
# STEP_TIMEOUT=SECONDS stops a step that runs longer (exit 124 in the
# summary) and goes on with the next; ARCHIVE=FILE.tgz packs OUT_DIR into
# one file after every step, so that a run stopped from outside still
# leaves the logs of the steps it finished (and one file to copy back).
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [GPU_SCRIPTS_DIR] [OMNIGLOT_DIR]}
scripts=${2:-}
omniglot=${3:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
n_rows=400000
[ "${QUICK:-0}" = 1 ] && n_rows=20000
summary="$out/summary.txt"
: > "$summary"

step() {  # step NAME COMMAND...: run, log, record the exit status
    local name=$1
    shift
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        return
    fi
    local start=$SECONDS
    if [ -n "${STEP_TIMEOUT:-}" ]; then
        timeout -k 5 "$STEP_TIMEOUT" "$@" > "$out/$name.log" 2>&1
    else
        "$@" > "$out/$name.log" 2>&1
    fi
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$summary"
    if [ -n "${ARCHIVE:-}" ]; then
        tar czf "$ARCHIVE" -C "$out" .
    fi
}

python -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" \
    | tee -a "$summary"

[ "${SKIP_TESTS:-0}" = 1 ] || step tests python -m pytest -q -p no:cacheprovider -n 8 --dist loadfile tests \
    --ignore=tests/test_ray.py --ignore=tests/test_dask.py -rfE

step repeatability python - "$device" <<'EOF'
import sys

import numpy as np
from sklearn.datasets import load_digits

from sksiamese import SiameseClassifier, SiamesePairClassifier

device = sys.argv[1]
X, y = load_digits(return_X_y=True)
for name, params in [
    ("mlp", {}),
    ("cnn", {"encoder": "cnn", "image_shape": (8, 8)}),
    ("cnn+augment", {"encoder": "cnn", "image_shape": (8, 8), "augment": True}),
]:
    runs = [
        SiameseClassifier(max_epochs=5, random_state=0, device=device, **params)
        .fit(X, y)
        .transform(X[:500])
        for _ in range(2)
    ]
    print(f"{name}: max abs difference of two seeded fits {np.abs(runs[0] - runs[1]).max():.3g}")
rng = np.random.RandomState(0)
pairs = X[rng.randint(len(X), size=(2000, 2))]
same = (y[rng.randint(len(X), size=2000)] % 2).astype(int)
runs = [
    SiamesePairClassifier(max_epochs=5, random_state=0, device=device)
    .fit(pairs, same)
    .predict_proba(pairs)
    for _ in range(2)
]
print(f"pairs: max abs difference of two seeded fits {np.abs(runs[0] - runs[1]).max():.3g}")
EOF

if [ -n "$scripts" ]; then
    step speed python "$scripts/speed.py" --device "$device" --n "$n_rows"
    step steps python "$scripts/steps.py" --device "$device" --n "$n_rows"
fi
losses_args=()
[ "${QUICK:-0}" = 1 ] && losses_args=(--batch 128 --seconds 0.02 --repeat 1)
step losses python benchmarks/losses.py --device "$device" "${losses_args[@]}"
# Where a step's device time goes, for each loss at batch 1,024.
step losses_profile python benchmarks/losses.py --device "$device" --batch 1024 \
    --members 1,8 --seconds 0.05 --repeat 1 --profile
# Where the default fit's and predict_proba's time goes, phase by phase.
step phases python benchmarks/phases.py --device "$device" --n-samples "$n_rows" --repeat 2
step scale python benchmarks/scale.py --sizes "$n_rows"
step scale_compile python benchmarks/scale.py --sizes "$n_rows" --compile
step scale_graphs python benchmarks/scale.py --sizes "$n_rows" --compile reduce-overhead
tp_rows=100000
[ "${QUICK:-0}" = 1 ] && tp_rows=5000
step throughput python benchmarks/throughput.py --device "$device" --n-samples "$tp_rows"
step throughput_b1024 python benchmarks/throughput.py --device "$device" --n-samples "$tp_rows" --batch-size 1024
# The default ensemble against a loop that trains the same ensemble module.
step throughput_ensemble python benchmarks/throughput.py --device "$device" --n-samples "$tp_rows" --batch-size 1024 --n-members 8
step throughput_compile python benchmarks/throughput.py --device "$device" --n-samples "$tp_rows" --compile
# transform and predict_proba by the rows of each forward pass (EMBED_ROWS).
eb_args=()
[ "${QUICK:-0}" = 1 ] && eb_args=(--image-size 28 --repeat 2)
step embed_blocks python benchmarks/embed_blocks.py --device "$device" --n-samples "$tp_rows" "${eb_args[@]}"
# The CNN's training step and inference with its images NCHW or channels last.
cl_args=()
[ "${QUICK:-0}" = 1 ] && cl_args=(--steps 5)
step cnn_layout python benchmarks/cnn_layout.py --device "$device" "${cl_args[@]}"
if [ -n "$omniglot" ]; then
    step omniglot python benchmarks/omniglot.py --data "$omniglot"
    # The same with cuDNN's nondeterministic defaults: what repeatable fits cost.
    step omniglot_cudnn_default python benchmarks/omniglot.py --data "$omniglot" --cudnn-default
fi
echo "logs in $out"
