#!/usr/bin/env bash
# Run every fastseq_ext kernel once under valgrind memcheck on a small ragged case.
#
#   tools/valgrind_ext.sh            # uses the build in place (python setup.py build_ext -i)
#
# PYTHONMALLOC=malloc makes Python's allocations visible to memcheck. CPython and NumPy
# themselves produce "possibly lost"/uninitialised-value noise, so the verdict is taken
# from errors whose stack contains a fastseq_ext frame: the script fails if there is any.
# For bounds-checked Cython (IndexError instead of memory errors) rebuild with
# FASTSEQ_DEBUG=1 python setup.py build_ext --inplace --force.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/valgrind_ext.XXXXXX.log)
PYTHONMALLOC=malloc OMP_NUM_THREADS=2 valgrind --tool=memcheck --error-limit=no \
    --num-callers=30 --track-origins=yes --log-file="$log" \
    python tools/valgrind_ext.py
total=$(grep -c "^==[0-9]*== \(Invalid\|Conditional\|Use of uninit\|Mismatched\|Source and destination\)" "$log" || true)
# an error record starts with one of those lines and runs to the next blank record line
ours=$(awk '/^==[0-9]+== (Invalid|Conditional|Use of uninit|Mismatched|Source and destination)/{rec=$0; keep=1; next}
            keep && /^==[0-9]+== *$/ {if (rec ~ /fastseq_ext/) n++; keep=0; rec=""; next}
            keep {rec = rec "\n" $0}
            END {print n+0}' "$log")
echo "valgrind: $total error records in total, $ours with a fastseq_ext frame (log: $log)"
grep "ERROR SUMMARY" "$log" | tail -1
[ "$ours" -eq 0 ]
