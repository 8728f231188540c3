#!/usr/bin/env bash
# Bounded fuzzing of the profile parsers: each target for SECS seconds (default 30).
#
#   fuzz/run.sh [SECS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). This machine has only a stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets it accept the sanitizer flags cargo fuzz passes.
# Seeds come from the test corpus; a crash input is left in fuzz/artifacts/<target>/: copy it
# into fuzz/regressions/<target>/ (replayed by this script before fuzzing) and fix the bug.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-30}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2; exit 1; }

mkdir -p corpus/wgquick corpus/bundle
cp ../crates/profile/tests/corpus/*.conf corpus/wgquick/ 2>/dev/null || true
for t in wgquick bundle; do
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
    echo "fuzz: replaying regressions/$t"
    cargo fuzz run "$t" "regressions/$t"/* -- -runs=0
  fi
  echo "fuzz: $t for ${secs}s"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536
done
echo "fuzz: no crash in ${secs}s per target"
