#!/usr/bin/env bash
# The Windows code that can run here, run under Wine (part of `npm test`):
#  1. unit tests built for x86_64-pc-windows-gnu: the named-pipe client's SYSTEM-owner check
#     (crates/proto/src/pipe.rs) and the NRPT/Tcpip registry writers and their cleanup
#     (helper/src/dns/windows.rs), through scripts/wine/runner.sh, which also catches Wine's
#     false passes;
#  2. the MSI (installers/windows/build-msi.sh, wixl): installed with msiexec, the underpassd
#     service RUNNING under Wine's service manager, `underpass status --json` answered over the
#     named pipe, then uninstalled: no file, registry key or service left behind.
# What Wine cannot run (WFP, Wintun, IP Helper writes, SetInterfaceDnsSettings) is not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS=0

for t in wine wixl x86_64-w64-mingw32-gcc; do
  command -v "$t" >/dev/null || { echo "wine-test: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
export WINEPREFIX=${UNDERPASS_WINEPREFIX:-$(mktemp -d /var/tmp/underpass-wine.XXXXXX)}
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/scripts/wine/runner.sh"
target=x86_64-pc-windows-gnu
bin=${CARGO_TARGET_DIR:-$PWD/target}/$target/debug

cleanup() {
  wineserver -k 2>/dev/null || true
  [ -z "${UNDERPASS_WINEPREFIX:-}" ] && rm -rf "$WINEPREFIX"
}
trap cleanup EXIT

wineboot --init >/dev/null 2>&1
# wineboot returns before the new prefix's first-time setup has finished; an MSI installed
# meanwhile loses its service (msi: OpenService fails with 1060). Wait for the setup to end.
timeout 300 wineserver -w
wineserver -p
# Rust's std needs bcryptprimitives!ProcessPrng, which Wine 8.0 lacks (see the shim's source).
x86_64-w64-mingw32-gcc -shared -O2 -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -lbcrypt
echo "wine-test: prefix ready in ${SECONDS}s"

cargo test --locked --target "$target" -p underpass-proto --lib pipe -- --test-threads 1
cargo test --locked --target "$target" -p underpassd --bin underpassd dns::windows -- --test-threads 1

cargo build --locked --target "$target" -p underpassd -p underpass-cli
msi=$(MSI_PROFILE=debug DEPENDENCIES=no bash installers/windows/build-msi.sh --no-build --test-without-wintun \
  | sed -n 's/^build-msi: wrote \([^ ]*\) .*/\1/p')
[ -f "$msi" ] || { echo "wine-test: no MSI built" >&2; exit 1; }

installed="$WINEPREFIX/drive_c/Program Files/Underpass"
service_state() { wine sc query underpassd 2>/dev/null | tr -d '\r' | sed -n 's/^ *STATE *: *[0-9]* *\([A-Z_]*\).*/\1/p'; }
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

wine msiexec /i "$(winepath -w "$msi")" /qn
[ -f "$installed/underpassd.exe" ] && [ -f "$installed/underpass.exe" ] \
  && ok "the MSI installed the helper and the CLI in Program Files" || fail "files not installed"
for _ in $(seq 50); do [ "$(service_state)" = RUNNING ] && break; sleep 0.2; done
[ "$(service_state)" = RUNNING ] && ok "service underpassd is RUNNING under Wine's service manager" \
  || fail "service state: $(service_state)"

status=""
for _ in $(seq 50); do
  status=$(wine "$installed/underpass.exe" status --json 2>/dev/null | tr -d '\r') && break
  sleep 0.2
done
jq -e '.state == "disconnected"' <<<"$status" >/dev/null \
  && ok "underpass status --json answered over \\\\.\\pipe\\underpassd: state $(jq -r .state <<<"$status")" \
  || fail "status over the pipe: $status"

wine msiexec /x "$(winepath -w "$msi")" /qn
[ ! -e "$installed" ] && ok "uninstall left no file in Program Files" || fail "left: $(ls -R "$installed")"
[ -z "$(service_state)" ] && ok "uninstall removed the service" || fail "service still $(service_state)"
if wine reg query 'HKLM\System\CurrentControlSet\Services\underpassd' >/dev/null 2>&1; then
  fail "the service's registry key is left"
fi
ok "no registry key left for the service"
[ ! -e "$WINEPREFIX/drive_c/ProgramData/Underpass" ] && ok "uninstall removed the helper's state (ProgramData\\Underpass)" \
  || fail "left: $(ls -R "$WINEPREFIX/drive_c/ProgramData/Underpass")"
echo "wine-test: $pass checks passed, in ${SECONDS}s"
echo "$pass passed, 0 failed"
