#!/usr/bin/env bash
# Stress check for issue 13, outside the default test run: e2e.memory_tier's back-off step
# (--dram-budget 32M --pmem-max 64M, 2 threads) run RUNS times, AT_ONCE at a time, counting
# crashes (a signal: SIGSEGV/SIGBUS/SIGABRT) and other failures. Exit 0 only when both are zero.
#   bash tools/stress_tier.sh [RUNS=60] [AT_ONCE=4]
# Env: HPCSCREEN (build/hpcscreen), MODELS (build/tests/models), WORK (build/stress_tier),
#      MIN_FREE_MB (4096: no new run starts below it; each run's pmem file is capped anyway).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-60} at_once=${2:-4}
bin=${HPCSCREEN:-build/hpcscreen} models=${MODELS:-build/tests/models}
work=${WORK:-build/stress_tier} min_free_mb=${MIN_FREE_MB:-4096}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$work" && mkdir -p "$work" || exit 2
head -n 2000 /usr/share/RDKit/Data/NCI/first_5K.smi > "$work/in.smi"
"$bin" pack compounds --input "$work/in.smi" --out "$work/lib" > "$work/pack.log" 2>&1 || {
  echo "stress_tier: pack failed, see $work/pack.log"; exit 2; }

one() {  # run $1: its log and exit status stay in $work/run$1, its pmem and outputs do not
  local d="$work/run$1"
  mkdir -p "$d/pmem"
  timeout 900 mpirun -np 1 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 \
    "$bin" screen --library "$work/lib" --model "$models/gnn_dense.pt" --top-k 50 \
    --out "$d/out" --batch-molecules 1000 --batch-atoms 12000 \
    --dram-budget 32M --pmem-dir "$d/pmem" --pmem-max 64M --threads 2 > "$d/log" 2>&1
  echo $? > "$d/rc"
  rm -rf "$d/pmem" "$d/out"
}

started=0
for i in $(seq 1 "$runs"); do
  while (( $(jobs -rp | wc -l) >= at_once )); do wait -n; done
  free_mb=$(df -Pm "$work" | awk 'NR==2 {print $4}')
  if (( free_mb < min_free_mb )); then
    echo "stress_tier: only ${free_mb} MB free, no more runs started"; break
  fi
  one "$i" &
  started=$((started + 1))
done
wait

crashes=0 failures=0
for d in "$work"/run*; do
  rc=$(cat "$d/rc" 2>/dev/null || echo missing)
  if [[ $rc == missing ]] || (( rc >= 128 )) ||
     grep -qE "signal (6|7|11)|Segmentation fault|Bus error|Aborted" "$d/log"; then
    crashes=$((crashes + 1)); echo "CRASH  $d (exit $rc)"; tail -n 5 "$d/log" | sed 's/^/    /'
  elif (( rc != 0 )); then
    failures=$((failures + 1)); echo "FAILED $d (exit $rc)"
  fi
done
echo "stress_tier: $started runs, $at_once at a time: $crashes crashes, $failures other failures"
(( started == runs && crashes == 0 && failures == 0 ))
