#!/usr/bin/env bash
# Bounded fuzzing of everything that reads untrusted input: the wg-quick and bundle parsers,
# and the helper's IPC frame decoder with its connect-request checks.
#
#   fuzz/run.sh [SECS]          each target for SECS seconds (default 30); what npm test runs
#   fuzz/run.sh --minutes N     the long mode, by hand: each target for N minutes
#
# Quiet: libFuzzer's own output goes to fuzz/logs/<target>.log, and each target prints one
# line, its executions and its verdict. A crash prints the log's tail and the input's path.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). This machine has only a stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets it accept the sanitizer flags cargo fuzz passes.
# Seeds come from the test corpus and fuzz/seeds/; a crash input is left in
# fuzz/artifacts/<target>/: copy it into fuzz/regressions/<target>/ (replayed by this script
# before fuzzing) and fix the bug.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=30
case "${1:-}" in
  --minutes)
    [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "fuzz: --minutes takes a whole number" >&2; exit 2; }
    secs=$(( $2 * 60 )) ;;
  "") ;;
  *)
    [[ "$1" =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [SECS | --minutes N]" >&2; exit 2; }
    secs=$1 ;;
esac
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2; exit 1; }

targets=(wgquick bundle ipc)
mkdir -p logs "${targets[@]/#/corpus/}"
cp ../crates/profile/tests/corpus/*.conf corpus/wgquick/ 2>/dev/null || true
for t in "${targets[@]}"; do
  [ -d "seeds/$t" ] && cp "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
done

failed=0
for t in "${targets[@]}"; do
  log="logs/$t.log"
  : > "$log"
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
    if ! cargo fuzz run "$t" "regressions/$t"/* -- -runs=0 >>"$log" 2>&1; then
      echo "fuzz: $t: FAIL replaying regressions/$t (see fuzz/$log)"
      tail -n 30 "$log" >&2
      failed=1
      continue
    fi
  fi
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 >>"$log" 2>&1; then
    execs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n1 | grep -o '[0-9]*' || echo "?")
    echo "fuzz: $t: ok, $execs executions in ${secs}s, no crash (log: fuzz/$log)"
  else
    echo "fuzz: $t: FAIL, crash or error (log: fuzz/$log)"
    tail -n 30 "$log" >&2
    ls -t "artifacts/$t"/* 2>/dev/null | head -n1 | sed 's/^/fuzz: crash input: fuzz\//' >&2 || true
    failed=1
  fi
done
exit "$failed"
