#!/bin/bash
# The GPU evidence run in one command on a lent, offline GPU machine (issues #13, #22).
#
#   here, first:   bash tools/gpu-run.sh --cpu-check     (every step, tiny, on the CPU)
#   on the GPU:    OUT=/some/dir bash tools/gpu-run.sh   (the device tool sets OUT)
#
# Sized from the first H200 run (shared/evidence/h200-2026-12-04) with the cost model
# bench.sweep.cost (`python -m bench run --profile full --estimate`): ~7 min, every
# cap below, their sum 480 s, so a 15-min GPU budget leaves room for a rerun.
#   0. fvcore's wheels (the GPU machine has no network); in the background, the full
#      profile's Triton kernels compile into the disk cache on 10 of the 16 cores
#      (`bench run --precompile-only`, ~70 s by the model) while the tests run;
#   1. the GPU tests, all of them, in three processes (tests/test_on_gpu.py without
#      and with impl="auto", and the CUDA-path tests; the first run's took 85 s in
#      one), then the contention tests alone on the GPU once the precompile is done;
#   2. gc, g and full side by side in TF32, strict fp32 and bf16, both layouts, gc's
#      routes apart (tools/speed_matrix.py, issues #23/#24), capped by its time limit;
#      then the smoke sweep (its own kernels: ~45 s cold by the model);
#   3. the `full` profile (the README's main job on CUDA) with --time-limit: ~6.8 min by
#      the model with a cold cache, ~2.3 min warm; shapes in an order whose every
#      prefix spreads over the profile;
#   4. the paper's models at batch 2, Table 2 first and training before inference
#      (its g and gc training rows are the SepGroupPy memory comparison);
#   5. the report.
# Every step is capped (SIGINT: a clean stop that keeps the rows) and logged; the
# results are archived after each step. Nothing here changes the GPU's settings.
# DEVICE=cpu PROFILE=smoke (without --cpu-check) rehearses the GPU path itself.
set -u
TESTS_S=${TESTS_S:-75}
SPEED_S=${SPEED_S:-50}    # tools/speed_matrix.py; its --time-limit is 15 s less
SMOKE_S=${SMOKE_S:-40}
SWEEP_S=${SWEEP_S:-155}   # the sweep's --time-limit; its cap adds 45 s (last shape, trace)
MODELS_S=${MODELS_S:-55}
REPORT_S=${REPORT_S:-20}
PRECOMPILE_WORKERS=${PRECOMPILE_WORKERS:-8}
WHEELS=${WHEELS:-.device/wheels}
OUT=${OUT:-/tmp/gpu-run-out}
WORK=${WORK:-/tmp/gpu-run-work}  # the smoke sweep's folder (and --cpu-check's results)
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# a lent GPU's minutes are not spent waiting for a quiet machine (bench.measure.gate):
# a busy one is measured anyway and the run says so (env.json gate, contention)
export SEPGCONV_BENCH_FORCE=1
unset TRITON_INTERPRET

# Table 2 first: its memory column is what the issue compares; then Table 1
table2_first=resnet44,p4m-resnet44,g-p4m-resnet44,gc-p4m-resnet44,z2cnn,c-z2cnn,p4cnn,g-p4cnn
table2_first+=,gc-p4cnn,g-p4cnn-w17,gc-p4cnn-w30
device=${DEVICE:-cuda} profile=${PROFILE:-full} models="--models $table2_first"
speed=()  # tools/speed_matrix.py's defaults on the GPU: p4 C64/C128 and p4m C64, H32, batch 32
gpu_tests=tests/test_on_gpu.py path_tests=tests/test_cuda_paths.py
if [[ ${1:-} == --cpu-check ]]; then
  device=cpu profile=smoke models="--models z2cnn,gc-p4cnn"
  path_tests=tests/test_cuda_paths.py::test_profile_columns_hold_what_the_report_reads
  SWEEP_S=4 MODELS_S=120 REPORT_S=60  # a 4 s limit: the time-limited end is exercised
  speed=(--device cpu --shapes p4:2:6:2 --precisions tf32 --budget 0.002)
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
  echo "[$log] exit $rc after $((SECONDS - t0)) s (cap $s s)"
  tail -n 15 "$OUT/$log"
}
pack() {  # the results so far, so that an overrun later still leaves an archive
  [[ -d $dest ]] && tar czf "$OUT/gpu.tgz" -C "$(dirname "$dest")" "$(basename "$dest")"
}
tests() {  # three pytest processes at once (the GPU tests mostly wait on Triton compiles)
  local t0=$SECONDS pids=() rc=0
  trap 'kill -INT "${pids[@]}" 2>/dev/null' INT TERM  # the cap reaches the pytest processes
  python3 -m pytest -q -p no:cacheprovider -rs "$gpu_tests" -k "not auto and not contention" \
    > "$OUT/tests-gpu.log" 2>&1 &
  pids+=($!)
  python3 -m pytest -q -p no:cacheprovider -rs "$gpu_tests" -k "auto and not contention" \
    > "$OUT/tests-auto.log" 2>&1 &
  pids+=($!)
  python3 -m pytest -q -p no:cacheprovider -rs "$path_tests" > "$OUT/tests-paths.log" 2>&1 &
  pids+=($!)
  for p in "${pids[@]}"; do  # 5: nothing selected (no CUDA: no impl="auto" cases)
    wait "$p" || { local r=$?; [[ $r == 5 ]] || rc=$r; }
  done
  for f in tests-gpu tests-auto tests-paths; do tail -n 4 "$OUT/$f.log"; done
  echo "[tests] exit $rc after $((SECONDS - t0)) s"
  return $rc
}

rm -rf "$dest" "$WORK/smoke"
{
  t_all=$SECONDS
  echo "device $device -> $dest"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.is_available(), 'triton', triton.__version__)" 2>&1
  python3 -c "from fvcore.nn import FlopCountAnalysis; print('fvcore ok')" 2>&1
  python3 -m bench run --device "$device" --profile "$profile" --precompile-only \
    --precompile-workers "$PRECOMPILE_WORKERS" > "$OUT/precompile.log" 2>&1 &
  pre=$!
  export -f tests
  export OUT gpu_tests path_tests
  capped "$TESTS_S" tests.log bash -c tests
  wait "$pre"; echo "[precompile.log] exit $? ($(tail -n 1 "$OUT/precompile.log" | cut -c1-300))"
  # alone on the GPU: a quiet run is quiet, a planted neighbour is caught
  capped 40 contention.log python3 -m pytest -q -p no:cacheprovider -rs "$gpu_tests" \
    -k contention
  capped "$SPEED_S" speed.log python3 tools/speed_matrix.py ${speed[@]+"${speed[@]}"} \
    --time-limit $((SPEED_S - 15)) --out "$OUT/speed"
  capped "$SMOKE_S" smoke.log python3 -m bench run --device "$device" --profile smoke \
    --no-report --no-profile --out "$WORK/smoke"
  # (compiled above: --precompile-workers 0; a kernel the precompile missed compiles at use)
  capped $((SWEEP_S + 45)) sweep.log python3 -m bench run --device "$device" \
    --profile "$profile" --time-limit "$SWEEP_S" --precompile-workers 0 --no-report --out "$dest"
  pack
  # shellcheck disable=SC2086  # $models is one option and its value
  capped "$MODELS_S" models.log python3 -m bench models --device "$device" --quick \
    --batches 2 --passes fwdbwd,fwd $models --out "$dest/models"
  pack
  capped "$REPORT_S" report.log python3 -m bench report "$dest"
  pack
  echo "results: $dest; all steps $((SECONDS - t_all)) s"
} > "$OUT/log.txt" 2>&1
ls -la "$OUT"
cat "$OUT/log.txt"
