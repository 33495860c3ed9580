#!/usr/bin/env bash
# Builds scep-fuzz (libFuzzer + AddressSanitizer + LeakSanitizer) and fuzzes each target for
# SECONDS from the committed seeds (Tests/FuzzRegressionTests/corpus/TARGET). A crash, sanitizer
# report or leak stops that target, leaves its input in Fuzz/artifacts/ and fails the script: copy
# the input into the target's corpus directory, fix the bug, and FuzzRegressionTests keeps it.
#
# usage: scripts/fuzz.sh [SECONDS [TARGET...]]     targets: query pkimessage envelope csr config
#        FUZZ_JOBS=2 scripts/fuzz.sh 3600 csr      long runs (one process per job)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(query pkimessage envelope csr config)

SCEP_FUZZ=1 swift build --product scep-fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address >&2
binary=.build-fuzz/debug/scep-fuzz
mkdir -p Fuzz/artifacts
status=0
for target in "${targets[@]}"; do
  seeds=$PWD/Tests/FuzzRegressionTests/corpus/$target
  work=$(mktemp -d)
  mkdir "$work/corpus"
  first=$(find "$seeds" -type f | sort | head -1)
  # libFuzzer writes one fuzz-N.log per job into the working directory: keep them in $work.
  set +e
  (cd "$work" && SCEP_FUZZ_TARGET=$target SCEP_FUZZ_SEED=$first "$OLDPWD/$binary" corpus "$seeds" -max_total_time="$seconds" \
    -jobs="${FUZZ_JOBS:-1}" -workers="${FUZZ_JOBS:-1}" -artifact_prefix="$OLDPWD/Fuzz/artifacts/$target-" \
    -print_final_stats=1 -rss_limit_mb=4096 >fuzz.log 2>&1)
  rc=$?
  set -e
  logs=("$work"/fuzz*.log)
  runs=$(cat "${logs[@]}" | grep -Eo 'stat::number_of_executed_units: *[0-9]+' | awk '{s+=$2} END {print s+0}')
  cov=$(cat "${logs[@]}" | grep -Eo 'cov: [0-9]+' | sort -n -k2 | tail -1 | awk '{print $2}')
  features=$(cat "${logs[@]}" | grep -Eo 'ft: [0-9]+' | sort -n -k2 | tail -1 | awk '{print $2}')
  echo "fuzz $target: ${seconds}s, $runs executions, coverage $cov edges, $features features, corpus $(ls "$work/corpus" | wc -l) new inputs, exit $rc"
  if [ $rc -ne 0 ]; then
    status=1
    cat "${logs[@]}" | grep -E 'ERROR|SUMMARY|Test unit written' | head -20
  fi
  rm -rf "$work"
done
exit $status
