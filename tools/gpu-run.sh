#!/bin/bash
# The GPU evidence run (issue #13) in one command on a lent, offline GPU machine.
#
#   here, first:   bash tools/gpu-run.sh --cpu-check     (every step, tiny, on the CPU)
#   on the GPU:    OUT=/some/dir bash tools/gpu-run.sh   (the device tool sets OUT)
#
# Steps, each under its own cap (seconds, overridable through the environment), each
# log kept in OUT, the results archived after every step that adds to them:
#   1. fvcore and its pure-Python needs from WHEELS (the GPU machine has no network);
#   2. the GPU-only tests (tests/test_on_gpu.py: every implementation, fused included,
#      against naive in both passes and for equivariance; CUDA events; the allocator)
#      and the CUDA-path tests;
#   3. a smoke sweep on the GPU (fails fast when a CUDA path is broken);
#   4. the sweep (the `full` profile) with --time-limit, so that it ends by itself
#      with whatever shapes it finished spread over the profile; SIGINT 60 s later
#      as a backstop (the suite keeps the rows it has);
#   5. the paper's models at batch 2 (forward, and forward + backward: the paper's
#      memory column), into RESULTS/models;
#   6. the report (plots and README, the paper's models included).
# What comes back in OUT: gpu.tgz (results/<gpu-slug>/), log.txt, one log per step,
# nvidia-smi.txt. Nothing here changes the GPU's settings: nvidia-smi only reads.
# DEVICE=cpu PROFILE=smoke (without --cpu-check) rehearses the GPU path itself, wheels
# and all, in a bare environment like the GPU machine's.
set -u
TESTS_S=${TESTS_S:-75}
SMOKE_S=${SMOKE_S:-45}
SWEEP_S=${SWEEP_S:-240}
MODELS_S=${MODELS_S:-75}
REPORT_S=${REPORT_S:-45}
WHEELS=${WHEELS:-.device/wheels}
OUT=${OUT:-/tmp/gpu-run-out}
WORK=${WORK:-/tmp/gpu-run-work}  # the smoke sweep's folder (and --cpu-check's results)
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset TRITON_INTERPRET

# Table 2 first: its memory column is what the issue compares; then Table 1
table2_first=resnet44,p4m-resnet44,g-p4m-resnet44,gc-p4m-resnet44,z2cnn,c-z2cnn,p4cnn,g-p4cnn
table2_first+=,gc-p4cnn,g-p4cnn-w17,gc-p4cnn-w30
device=${DEVICE:-cuda} profile=${PROFILE:-full} models="--models $table2_first" tests="tests/test_on_gpu.py tests/test_cuda_paths.py"
if [[ ${1:-} == --cpu-check ]]; then
  device=cpu profile=smoke models="--models z2cnn,gc-p4cnn"
  tests="tests/test_on_gpu.py tests/test_cuda_paths.py::test_profile_columns_hold_what_the_report_reads"
  SWEEP_S=4 MODELS_S=120 REPORT_S=60  # a 4 s limit: the time-limited end is exercised
  export PYTHONPATH=$PWD
elif [[ -n ${1:-} ]]; then
  echo "usage: bash tools/gpu-run.sh [--cpu-check]" >&2
  exit 2
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  nvidia-smi -q -d CLOCK,PERFORMANCE,POWER,TEMPERATURE >> "$OUT/nvidia-smi.txt" 2>&1
fi
slug=$(python3 -c "from bench.measure import env; print(env.device_slug('$device'))") || exit 1
dest=results/$slug
[[ $device == cpu ]] && dest=$WORK/$slug

capped() {  # capped SECONDS LOG CMD...: SIGINT at the cap (a clean stop), KILL 20 s later
  # (CAP_SLACK_S, default 0, lengthens every cap: the test suite's CPU check on a shared machine)
  local s=$(($1 + ${CAP_SLACK_S:-0})) log=$2
  shift 2
  local t0=$SECONDS
  timeout -s INT -k 20 "$s" "$@" > "$OUT/$log" 2>&1
  local rc=$?
  echo "[$log] exit $rc after $((SECONDS - t0)) s"
  tail -n 15 "$OUT/$log"
}
pack() {  # the results so far, so that an overrun later still leaves an archive
  [[ -d $dest ]] && tar czf "$OUT/gpu.tgz" -C "$(dirname "$dest")" "$(basename "$dest")"
}

rm -rf "$dest" "$WORK/smoke"
{
  echo "device $device -> $dest"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.is_available(), 'triton', triton.__version__)" 2>&1
  python3 -c "from fvcore.nn import FlopCountAnalysis; print('fvcore ok')" 2>&1
  # shellcheck disable=SC2086  # $tests is a list of paths
  capped "$TESTS_S" tests.log python3 -m pytest -q -p no:cacheprovider -rs $tests
  capped "$SMOKE_S" smoke.log python3 -m bench run --device "$device" --profile smoke \
    --no-report --no-profile --out "$WORK/smoke"
  capped $((SWEEP_S + 60)) sweep.log python3 -m bench run --device "$device" \
    --profile "$profile" --time-limit "$SWEEP_S" --no-report --out "$dest"
  pack
  # shellcheck disable=SC2086  # $models is empty or one option and its value
  capped "$MODELS_S" models.log python3 -m bench models --device "$device" --quick \
    --batches 2 $models --out "$dest/models"
  pack
  capped "$REPORT_S" report.log python3 -m bench report "$dest"
  pack
  echo "results: $dest"
} > "$OUT/log.txt" 2>&1
ls -la "$OUT"
cat "$OUT/log.txt"
