#!/usr/bin/env bash
# Run every fastseq_ext kernel once under valgrind memcheck on a small ragged case.
#
#   tools/valgrind_ext.sh     # builds an AVX2 copy of fastseq_ext in /tmp, runs it under memcheck
#
# PYTHONMALLOC=malloc makes Python's allocations visible to memcheck. CPython and NumPy
# themselves produce "possibly lost"/uninitialised-value noise, so the verdict is taken
# from errors whose stack contains a fastseq_ext frame: the script fails if there is any.
# For bounds-checked Cython (IndexError instead of memory errors) rebuild with
# FASTSEQ_DEBUG=1 python setup.py build_ext --inplace --force.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/valgrind_ext.XXXXXX.log)
# valgrind (3.19) cannot decode AVX-512, which the default -march=native build may use:
# build an AVX2 copy (x86-64-v3) into a scratch directory and put it first on the path.
# (set VALGRIND_EXT_BUILD to a directory made by an earlier run to skip the rebuild)
build=${VALGRIND_EXT_BUILD:-}
if [ -z "$build" ]; then
    build=$(mktemp -d /tmp/valgrind_ext_build.XXXXXX)
    FASTSEQ_MARCH=${FASTSEQ_MARCH:-x86-64-v3} python setup.py -q build_ext \
        --build-lib "$build/lib" --build-temp "$build/tmp" --force >/dev/null 2>&1
    cp fastseq_ext/__init__.py fastseq_ext/*.pxd "$build/lib/fastseq_ext/"
fi
export PYTHONPATH="$build/lib${PYTHONPATH:+:$PYTHONPATH}"
python -P -c "import fastseq_ext.lstm as m; assert m.__file__.startswith('$build'), m.__file__"
# the interpreter binary itself (a pyenv/venv shim would hide it from valgrind)
py=$(python -c 'import sys; print(sys.executable)')
PYTHONMALLOC=malloc OMP_NUM_THREADS=2 valgrind --tool=memcheck --error-limit=no \
    --num-callers=30 --track-origins=yes --log-file="$log" \
    "$py" tools/valgrind_ext.py
total=$(grep -c "^==[0-9]*== \(Invalid\|Conditional\|Use of uninit\|Mismatched\|Source and destination\)" "$log" || true)
# an error record starts with one of those lines and runs to the next blank record line
ours=$(awk '/^==[0-9]+== (Invalid|Conditional|Use of uninit|Mismatched|Source and destination)/{rec=$0; keep=1; next}
            keep && /^==[0-9]+== *$/ {if (rec ~ /fastseq_ext/) n++; keep=0; rec=""; next}
            keep {rec = rec "\n" $0}
            END {print n+0}' "$log")
grep -q "Command: $py" "$log" || { echo "valgrind did not run the interpreter"; exit 2; }
echo "valgrind: $total error records in total, $ours with a fastseq_ext frame (log: $log)"
grep "ERROR SUMMARY" "$log" | tail -1
[ "$ours" -eq 0 ]
