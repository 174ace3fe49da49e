#!/usr/bin/env bash
# reliability_probe.sh: the quick subset of scripts/hostile_probe.py (about 60 cases: bad
# files, damaged HDF5, bad flag values, stdout on /dev/full, a full disk, a memory limit,
# a kill -9 and a second run on a busy folder), each judged for crashes, hangs, exit 0 on
# bad input, multi-line errors, files left behind and raw control characters. The full
# probe (about 2,000 cases) is `scripts/hostile_probe.py` (docs/reliability.md).
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
if ldd "$bin" 2>/dev/null | grep libasan >/dev/null; then
  export ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0
fi
exec python3 "$src/scripts/hostile_probe.py" --bin "$bin" --quick
