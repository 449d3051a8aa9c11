#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each from the seed corpus: every file in
# regressions/<target>/ (a crash or timeout input kept after a fix) runs first. $1 is the number
# of inputs per target (20000 by default); with a fixed seed, the inputs are the same on every
# run, so CI cannot fail on a new random find. For a longer search: run.sh 0 (no limit) with
# FUZZ_SECONDS=600 and FUZZ_SEED=0 (random). A crash leaves the input in build/fuzz/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${2:-$here/../../build/fuzz}")"
runs="${1:-20000}"
seconds="${FUZZ_SECONDS:-120}"
seed="${FUZZ_SEED:-1}"
CC=clang CXX=clang++ cmake -S "$here" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$out.configure.log" 2>&1 || { cat "$out.configure.log"; exit 1; }
cmake --build "$out" -j"$(nproc)" > "$out.build.log" 2>&1 || { tail -50 "$out.build.log"; exit 1; }
export ASAN_OPTIONS=detect_leaks=0   # RDKit keeps static tables alive on purpose
for t in smiles sdf fasta shard; do
  regressions=("$here/regressions/$t"/*)
  if [ -e "${regressions[0]}" ]; then
    "$out/fuzz_$t" "${regressions[@]}" > "$out/$t.regressions.log" 2>&1 || { tail -30 "$out/$t.regressions.log"; echo "fuzz_$t: a regression input crashes again"; exit 1; }
  fi
  work="$out/corpus-$t"
  mkdir -p "$work"
  (cd "$out" && "./fuzz_$t" -seed="$seed" -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 "$work" "$here/corpus/$t" > "$out/$t.log" 2>&1) \
    || { tail -40 "$out/$t.log"; echo "fuzz_$t found a crash: the input is in $out (crash-*); keep it in tests/fuzz/regressions/$t/"; exit 1; }
  echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$') inputs, no crash"
done
