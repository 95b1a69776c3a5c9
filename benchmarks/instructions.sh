#!/usr/bin/env bash
# Instructions one piece of a call costs, counted by valgrind's callgrind: a count, not a
# time, so it repeats to within about a per cent whatever else the machine is doing.
#
#     benchmarks/instructions.sh PIECE [CALLS]   (PYTHON=.venv/bin/python to pick the interpreter)
#
# PIECE is one of benchmarks/hot_path.py's pieces (guard, checks, answer, resolve, ort, run_batch,
# paper, paper8, batcher, infer). The piece runs 10 times, then 10 + CALLS times, in two
# processes; the difference over CALLS is printed. Counts only what runs in user space
# (a system call costs what its instructions around it cost). Needs valgrind.
set -euo pipefail
piece=$1
calls=${2:-1000}
here=$(dirname "$0")
python=${PYTHON:-python}
count() {
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$python" "$here/hot_path.py" --only "$piece" --calls "$1" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
before=$(count 10)
after=$(count $((10 + calls)))
echo "$piece: $(((after - before) / calls)) instructions per call"
