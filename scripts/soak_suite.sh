#!/usr/bin/env bash
# Run the whole suite (`make test`) N times in a row with one core kept busy by
# stress-ng, as on a loaded CI machine, and print each run's result and duration.
# Core dumps are on, so a crash leaves a core for gdb; pytest's faulthandler prints
# every thread's Python stack on a fatal signal.
#
#   scripts/soak_suite.sh [N] [LOG_DIR]     # default 10 runs, logs in /tmp/modelwire-soak
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
logs=${2:-/tmp/modelwire-soak}
mkdir -p "$logs"
command -v stress-ng >/dev/null || { echo "needs stress-ng (Debian package stress-ng)" >&2; exit 2; }
ulimit -c unlimited
stress-ng --cpu 1 --quiet &
stress=$!
trap 'kill $stress 2>/dev/null' EXIT
failed=0
for run in $(seq 1 "$runs"); do
    started=$(date +%s)
    if make test >"$logs/run-$run.log" 2>&1; then result=passed; else result=FAILED; failed=$((failed + 1)); fi
    summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "$logs/run-$run.log" | tail -n 1)
    echo "run $run: $result in $(( $(date +%s) - started ))s  $summary"
done
echo "$((runs - failed)) of $runs runs passed"
[ "$failed" = 0 ]
