#!/usr/bin/env bash
# The whole GPU pass in one go, on the GPU machine (docs/gpu-runs.md):
#   bash scripts/gpu/run.sh OUTDIR [steps...]
# steps: doctor tests bench-nccl bench-ep-normal bench-ep-ll bench-experts bench-moe bench-moe-rank (default:
# all), and bench-ep-send: the normal combine's sending share swept (SEND_SMS, at NUM_SMS).
# bench-moe (one MoE layer at one rank beside PyTorch; limit 240 s) writes its table to the
# log, bench-moe.json and bench-moe-timeline.svg; BENCH_MOE_ARGS adds options (e.g. "--experts 64").
# bench-moe-rank (limit 120 s) runs the layer with 32 experts, the weights one rank holds at
# EP 8, into bench-moe-32.json: decode at 256 experts is bound by reading all their weights.
# bench-moe-shared (limit 240 s) spreads 64 experts over 2 ranks sharing GPU 0: its two-batch
# overlap timeline (bench-moe-2shared.svg), honest but no measure of overlap; bench-moe-gpus
# (limit 300 s) spreads the 256 experts over every GPU, one rank each: the overlap goal.
# bench-moe-fp8 (limit 360 s) runs the layer with fp8 experts (--expert-dtype fp8) at 256 and at
# 32 experts into bench-moe-fp8.json and bench-moe-fp8-32.json, PyTorch's bf16 and fp8 layers beside it.
# bench-moe-masked (limit 360 s) does the same with wideep's masked fp8 GEMM (--expert-gemm masked)
# into bench-moe-masked.json and bench-moe-masked-32.json.
# sanitize (limit 300 s) runs the masked fp8 GEMM on small shapes (scripts/gpu/sanitize-masked.mjs)
# under compute-sanitizer's memcheck, racecheck and synccheck; exit 3 when there is no compute-sanitizer.
# moe-costs (limit 150 s) traces the MoE decode step's host time (scripts/gpu/moe-call-costs.mjs)
# at 32 and 256 experts into moe-costs-32.json and moe-costs-256.json.
# TESTS_FILTER narrows the tests step to matching files (e.g. "foundation comm"),
# TESTS_NAME to tests whose name matches (e.g. "EP on 4 GPUs", for a quick
# check of a kernel change),
# TESTS_LIMIT sets its time limit in seconds; one call may run 600 s at most.
# WIDEEP_TEST_SHARE_GPU=1 runs the multi-rank EP suites that lack GPUs with all
# ranks on GPU 0 (on one H200: 2 ranks 130 s, 4 ranks 275 s for the EP suites).
# On 4 GPUs the whole suite took 311 s (2026-11-28, before every T <= 128
# normal case had 100 repetitions and the EP suites also ran at one rank;
# expect about 120 s more); on 2 GPUs the EP tests took 109 s (2026-11-29,
# without one rank); with 8 GPUs its 8-rank cases run too, so give each test
# file its own call there. BENCH_EP_ARGS adds options to both bench-ep steps
# (e.g. "--no-baseline --routing uniform" when comparing builds).
# Every step has a time limit; JSON results and logs go to OUTDIR; a short
# table of outcomes comes last.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:?usage: run.sh OUTDIR [steps...]}"
shift
STEPS="${*:-doctor tests bench-nccl bench-ep-normal bench-ep-ll bench-experts bench-moe bench-moe-rank}"
mkdir -p "$OUT"
LOG="$OUT/run.log"

# Node and the pruned node_modules travel in .device/ (scripts/gpu/prepare.sh).
if ! command -v node >/dev/null; then
  # Unpacked beside and renamed: a node from an earlier run may still be exiting.
  xz -dc .device/node.xz > /tmp/node.$$ && chmod +x /tmp/node.$$ && mv -f /tmp/node.$$ /tmp/node
  export PATH=/tmp:$PATH
fi
[ -d node_modules ] || xz -dc .device/node_modules.tar.xz | tar -xf -
# NVLink multicast stays off, also in every child process.
export NCCL_NVLS_ENABLE=0 NVSHMEM_DISABLE_NVLS=1 TORCH_SYMM_MEM_DISABLE_MULTICAST=1

declare -A STATUS SECONDS_TAKEN
step() {
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  echo "=== $name: $*" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  STATUS[$name]=$rc
  SECONDS_TAKEN[$name]=$((SECONDS - t0))
  echo "=== $name: exit $rc after ${SECONDS_TAKEN[$name]} s" | tee -a "$LOG"
}

for s in $STEPS; do
  case "$s" in
    doctor) step doctor 60 sh -c "node bin/wideep.js doctor --json > '$OUT/doctor.json'" ;;
    tests) step tests ${TESTS_LIMIT:-540} node node_modules/vitest/vitest.mjs run --project gpu --reporter=default --reporter=json --outputFile.json="$OUT/gpu-tests.json" ${TESTS_NAME:+-t "$TESTS_NAME"} ${TESTS_FILTER:-} ;;
    bench-nccl) step bench-nccl 240 node bin/wideep.js bench nccl --torch --json --out "$OUT/bench-nccl.json" ;;
    bench-ep-normal) step bench-ep-normal 420 node bin/wideep.js bench ep --mode normal --num-sms "${NUM_SMS:-24,48,80,128}" --json --out "$OUT/bench-ep-normal.json" ${BENCH_EP_ARGS:-} ;;
    bench-ep-send) step bench-ep-send 300 node bin/wideep.js bench ep --mode normal --no-baseline --routing uniform --num-sms "${NUM_SMS:-24}" --send-sms "${SEND_SMS:-8,10,12,14,16,18,20}" --json --out "$OUT/bench-ep-send.json" ;;
    bench-ep-ll) step bench-ep-ll 240 node bin/wideep.js bench ep --mode low-latency --json --out "$OUT/bench-ep-ll.json" ${BENCH_EP_ARGS:-} ;;
    bench-experts) step bench-experts 420 node bin/wideep.js bench experts --json --out "$OUT/bench-experts.json" ${BENCH_EXPERTS_ARGS:-} ;;
    bench-moe) step bench-moe 240 node bin/wideep.js bench moe --out "$OUT/bench-moe.json" --timeline-svg "$OUT/bench-moe-timeline.svg" ${BENCH_MOE_ARGS:-} ;;
    bench-moe-rank) step bench-moe-rank 120 node bin/wideep.js bench moe --experts 32 --out "$OUT/bench-moe-32.json" ;;
    bench-moe-shared) step bench-moe-shared 240 node bin/wideep.js bench moe --ranks 2 --share-gpu --experts 64 --iters 10 --out "$OUT/bench-moe-2shared.json" --timeline-svg "$OUT/bench-moe-2shared.svg" ;;
    bench-moe-fp8) step bench-moe-fp8 360 sh -c "node bin/wideep.js bench moe --expert-dtype fp8 --out '$OUT/bench-moe-fp8.json' && node bin/wideep.js bench moe --expert-dtype fp8 --experts 32 --out '$OUT/bench-moe-fp8-32.json'" ;;
    bench-moe-masked) step bench-moe-masked 360 sh -c "node bin/wideep.js bench moe --expert-dtype fp8 --expert-gemm masked --out '$OUT/bench-moe-masked.json' && node bin/wideep.js bench moe --expert-dtype fp8 --expert-gemm masked --experts 32 --out '$OUT/bench-moe-masked-32.json'" ;;
    sanitize) step sanitize 300 sh -c 'cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer); [ -x "$cs" ] || { echo "compute-sanitizer not found"; exit 3; }; for tool in memcheck racecheck synccheck; do "$cs" --tool "$tool" --target-processes all --error-exitcode 9 node scripts/gpu/sanitize-masked.mjs || exit $?; done' ;;
    moe-costs) step moe-costs 150 sh -c "node scripts/gpu/moe-call-costs.mjs 32 > '$OUT/moe-costs-32.json' && node scripts/gpu/moe-call-costs.mjs 256 > '$OUT/moe-costs-256.json'" ;;
    bench-moe-gpus) step bench-moe-gpus 300 node bin/wideep.js bench moe --ranks "$(nvidia-smi -L | wc -l)" --out "$OUT/bench-moe-gpus.json" --timeline-svg "$OUT/bench-moe-gpus.svg" ;;
    *) echo "unknown step $s" | tee -a "$LOG" ;;
  esac
done

node scripts/gpu/summary.mjs "$OUT" || true
echo
printf '%-18s %6s %6s\n' step exit seconds
for s in $STEPS; do printf '%-18s %6s %6s\n' "$s" "${STATUS[$s]:-?}" "${SECONDS_TAKEN[$s]:-?}"; done
