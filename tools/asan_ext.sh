#!/usr/bin/env bash
# Run the Cython tests (fast subset) against an AddressSanitizer build of fastseq_ext.
#
#   tools/asan_ext.sh [tree] [pytest args...]
#
# The build never touches this checkout: a git worktree of HEAD is made at $tree (default
# /tmp/fastseq_asan_tree; reused when it exists, then reset to the new HEAD), fastseq_ext is
# built there in place with FASTSEQ_SANITIZE=address (-fsanitize=address
# -fsanitize-recover=address -fno-omit-frame-pointer -g on top of the usual -O3), and pytest
# runs from that tree with libasan preloaded (the interpreter itself is not instrumented).
# ASAN_OPTIONS: detect_leaks=0 (CPython and NumPy keep memory until exit on purpose),
# halt_on_error=0 (report every error and go on, so one run counts them all).
#
# ASAN_EXT_REUSE=1 skips the checkout and the rebuild (an earlier run's build).
# Verdict: the number of ASan error reports whose stack has a fastseq_ext frame; the
# script exits non-zero if there is any (reports elsewhere are printed but not counted).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tree=${1:-/tmp/fastseq_asan_tree}
shift || true
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(tests/test_cython_ext.py tests/test_parity.py tests/test_stream.py
           tests/test_thread_safety.py -k "cython or not parity")
fi
# ASAN_EXT_REUSE=1: run against the tree as it is (no checkout, no rebuild)
if [ "${ASAN_EXT_REUSE:-0}" != 1 ]; then
    if [ -d "$tree/.git" ] || [ -f "$tree/.git" ]; then
        git -C "$tree" checkout -q --detach "$(git -C "$repo" rev-parse HEAD)"
    else
        git -C "$repo" worktree add -q --detach "$tree" HEAD
    fi
fi
cd "$tree"
echo "asan: tree $tree at $(git rev-parse --short HEAD)"
log=$(mktemp /tmp/asan_ext.XXXXXX.log)
if [ "${ASAN_EXT_REUSE:-0}" != 1 ]; then
    FASTSEQ_SANITIZE=address python setup.py -q build_ext --inplace --force >"$log.build" 2>&1 \
        || { tail -20 "$log.build"; exit 2; }
fi
libasan=$(gcc -print-file-name=libasan.so)
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:log_path=$log.asan"
export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"
# the tree's own package and extension, instrumented, must be the ones imported
python -c "
import fastseq, fastseq_ext.lstm as m, sys
assert fastseq.__file__.startswith('$tree'), fastseq.__file__
assert m.__file__.startswith('$tree'), m.__file__
" 
# (no pipe into grep -q: with pipefail, nm's SIGPIPE when grep stops early fails the test)
nm -D fastseq_ext/lstm*.so > "$log.nm"
grep -q __asan_report "$log.nm" || { echo "not an ASan build"; exit 2; }
# positive control: a two-access heap overflow in a library whose source path contains
# "fastseq_ext" must give 2 counted reports, or the verdict below would mean nothing
ctl=$(mktemp -d /tmp/fastseq_ext_asan_control.XXXXXX)
printf '#include <stdlib.h>\nint oob(int n){int *a=malloc(n*sizeof(int)),s=0;s=a[n];a[n]=1;free(a);return s;}\n' >"$ctl/oob.c"
gcc -shared -fPIC -g -fsanitize=address -fsanitize-recover=address "$ctl/oob.c" -o "$ctl/liboob.so"
ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:log_path=$ctl/report" \
    python -c "import ctypes; ctypes.CDLL('$ctl/liboob.so').oob(4)"
count_ours() {
    cat "$@" 2>/dev/null | awk '/==ERROR: AddressSanitizer/{if (rec ~ /fastseq_ext/) n++; rec=$0; next}
        {rec = rec "\n" $0} END {if (rec ~ /fastseq_ext/) n++; print n+0}'
}
control=$(count_ours "$ctl"/report.*)
[ "$control" -eq 2 ] || { echo "asan control: expected 2 reports, got $control"; exit 2; }
echo "asan control: the planted overflow gave $control counted reports"
set +e
python -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
reports=$(cat "$log".asan.* 2>/dev/null | grep -c "^==[0-9]*==ERROR: AddressSanitizer" || true)
ours=0
[ "$reports" -eq 0 ] || ours=$(count_ours "$log".asan.*)
echo "asan: pytest exit $status; $reports AddressSanitizer reports, $ours with a fastseq_ext frame"
echo "asan: logs $log (pytest) and $log.asan.* (reports, if any); tree $tree"
[ "$status" -eq 0 ] && [ "$ours" -eq 0 ]
