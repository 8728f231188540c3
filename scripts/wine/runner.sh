#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu test binaries under Wine
# (CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER). Wine sometimes exits 0 after a process aborted on
# an unimplemented function, so a run passes only with exit 0 AND libtest's own
# "test result: ok." line. Wine also sometimes hangs at process exit after the tests ran; a run
# that printed its result line and then hangs is stopped after a grace period and judged by that
# line (said loudly), one that never printed it fails.
set -uo pipefail
out=$(mktemp)
# To a file, not a pipe: a hung Windows process would hold a pipe open after `timeout`.
timeout -k 5 "${WINE_TEST_TIMEOUT:-60}" wine "$@" >"$out" 2>&1
rc=$?
cat "$out"
ok=0
grep -q '^test result: ok\.' "$out" && ok=1
rm -f "$out"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "wine-runner: $1 did not exit within ${WINE_TEST_TIMEOUT:-60}s (stopped)" >&2
  if [ "$ok" = 1 ]; then
    echo "wine-runner: its tests had all passed before it hung at exit (a Wine exit hang): accepted" >&2
    exit 0
  fi
fi
if [ "$rc" != 0 ]; then
  echo "wine-runner: $1 exited $rc" >&2
  exit "$rc"
fi
if [ "$ok" != 1 ]; then
  echo "wine-runner: $1 exited 0 but printed no 'test result: ok.' (a Wine false pass): failing" >&2
  exit 1
fi
