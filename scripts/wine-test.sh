#!/usr/bin/env bash
# The Windows code that can run here, run under Wine (part of `npm test`):
#  1. unit tests built for x86_64-pc-windows-gnu: the named-pipe client's SYSTEM-owner check
#     (crates/proto/src/pipe.rs), the NRPT/Tcpip registry writers and their cleanup
#     (helper/src/dns/windows.rs) and the removal of an orphaned adapter at start, through
#     SetupAPI (helper/src/tunnel/windows.rs), through scripts/wine/runner.sh, which also
#     catches Wine's false passes;
#  2. the MSI (installers/windows/build-msi.sh, wixl): installed with msiexec, wintun.dll the
#     verified one, the underpassd service RUNNING under Wine's service manager and the
#     orphaned adapter left before it gone, `underpass status --json` answered over the named
#     pipe, then uninstalled: no file, registry key,
#     Uninstall entry or service left behind. With UNDERPASS_MSI (an MSI with the app, as
#     `npm run package` builds it), also the app: its files, Start menu shortcut, `underpass://`
#     and `.underpass` registrations, the exe starting, and all of it gone after the uninstall.
# What Wine cannot run (WFP, Wintun, IP Helper writes, SetInterfaceDnsSettings) is not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS=0

for t in wine wixl x86_64-w64-mingw32-gcc; do
  command -v "$t" >/dev/null || { echo "wine-test: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
export WINEPREFIX=${UNDERPASS_WINEPREFIX:-$(mktemp -d /var/tmp/underpass-wine.XXXXXX)}
# winemenubuilder would copy the MSI's Start menu shortcut into the host's own menus.
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/scripts/wine/runner.sh"
target=x86_64-pc-windows-gnu

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
cargo test --locked --target "$target" -p underpassd --bin underpassd -- dns::windows tunnel::windows \
  --test-threads 1

cargo build --locked --target "$target" -p underpassd -p underpass-cli
# The MSI under test: by default one of the debug build above without the app (building the app
# for Windows costs minutes that `npm test` does not have; `npm run package` builds it), or the
# one UNDERPASS_MSI names, which must hold the app (the shipped one: UNDERPASS_MSI=dist/….msi).
if [ -n "${UNDERPASS_MSI:-}" ]; then
  msi=$(realpath "$UNDERPASS_MSI") app=yes
else
  msi=$WINEPREFIX/underpass-wine-test.msi app=no
  MSI_PROFILE=debug DEPENDENCIES=no MSI_OUT=$msi bash installers/windows/build-msi.sh --no-build --no-app
fi
[ -f "$msi" ] || { echo "wine-test: no MSI at $msi" >&2; exit 1; }

installed="$WINEPREFIX/drive_c/Program Files/Underpass"
service_state() { wine sc query underpassd 2>/dev/null | tr -d '\r' | sed -n 's/^ *STATE *: *[0-9]* *\([A-Z_]*\).*/\1/p'; }
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

# wintun.sh refuses a DLL that is not WireGuard LLC's (one byte changed, in a cache of its own).
tampered=$WINEPREFIX/wintun-cache/wintun-0.14-amd64
mkdir -p "$tampered"
cp "$(bash installers/windows/wintun.sh)" "$tampered/wintun.dll"
printf 'x' >>"$tampered/wintun.dll"
UNDERPASS_CACHE=$WINEPREFIX/wintun-cache bash installers/windows/wintun.sh >/dev/null 2>&1 \
  && fail "wintun.sh accepted a tampered wintun.dll"
[ ! -e "$tampered/wintun.dll" ] && ok "wintun.sh refuses a tampered wintun.dll, and deletes it" \
  || fail "wintun.sh kept the tampered wintun.dll"

# A crashed helper's adapter (a Net-class device with the adapter's GUID), which the service
# must remove when it starts (helper/src/tunnel/windows.rs; these two tests run only here).
wine_only_test() {
  UNDERPASS_WINE_TEST=1 cargo test --locked -q --target "$target" -p underpassd --bin underpassd \
    -- --ignored --exact "tunnel::windows::tests::$1" >"$WINEPREFIX/$1.log" 2>&1 ||
    { cat "$WINEPREFIX/$1.log"; return 1; }
}
wine_only_test wine_leave_an_orphaned_adapter || fail "could not register an orphaned adapter"

wine msiexec /i "$(winepath -w "$msi")" /qn
[ -f "$installed/underpassd.exe" ] && [ -f "$installed/underpass.exe" ] && [ -f "$installed/wintun.dll" ] \
  && ok "the MSI installed the helper, the CLI and wintun.dll in Program Files" || fail "files not installed"
cmp -s "$installed/wintun.dll" "$(bash installers/windows/wintun.sh)" \
  && ok "the installed wintun.dll is WireGuard LLC's signed one (installers/windows/wintun.sh)" \
  || fail "the installed wintun.dll is not the verified one"
# The Start menu shortcut, wherever it is: Wine 8's msi resolves ProgramMenuFolder to the
# user's menu even for a per-machine (ALLUSERS=1) install, where Windows uses ProgramData's.
shortcut() { find "$WINEPREFIX/drive_c" -path '*/Start Menu/Programs/Underpass.lnk' | head -1; }
# The command a class opens with (empty when its key is gone; reg prints its refusal on stdout).
open_command() {
  wine reg query "HKLM\\Software\\Classes\\$1\\shell\\open\\command" /ve 2>/dev/null \
    | tr -d '\r' | sed -n 's/^ *(Default) *REG_SZ *//p'
}
if [ "$app" = yes ]; then
  [ -f "$installed/underpass-gui.exe" ] && [ -f "$installed/WebView2Loader.dll" ] \
    && ok "the MSI installed the app and WebView2Loader.dll" || fail "the app's files are missing"
  [ -n "$(shortcut)" ] && ok "the Start menu has the app's shortcut" || fail "no Start menu shortcut"
  for class in underpass Underpass.Profile; do
    grep -qF 'underpass-gui.exe" "%1"' <<<"$(open_command "$class")" \
      && ok "$class opens with underpass-gui.exe \"%1\"" || fail "$class: $(open_command "$class")"
  done
  wine reg query 'HKLM\Software\Classes\.underpass' /ve 2>/dev/null | tr -d '\r' | grep -q 'Underpass.Profile' \
    && ok ".underpass files are Underpass.Profile" || fail "no .underpass file type"
  # Wine has no WebView2 runtime, so the app cannot show a window; that it starts, with every DLL
  # it imports found (WebView2Loader.dll among them), shows in its refusal of a bad option.
  rc=0; wine "$installed/underpass-gui.exe" --socket >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] && ok "underpass-gui.exe starts under Wine (its imports resolve) and refuses a bad option (exit 2)" \
    || fail "underpass-gui.exe --socket exited $rc, not 2"
fi
uninstall_entry() {
  wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s 2>/dev/null \
    | tr -d '\r' | grep -q 'DisplayName.*REG_SZ.*Underpass'
}
uninstall_entry && ok "Apps & features lists Underpass (its Uninstall key)" || fail "no Uninstall key for Underpass"
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
wine_only_test wine_no_adapter_is_left \
  && ok "the service removed the orphaned adapter with its GUID at start (SetupAPI, DIF_REMOVE)" \
  || fail "the orphaned adapter is still there after the service started"

wine msiexec /x "$(winepath -w "$msi")" /qn
[ ! -e "$installed" ] && ok "uninstall left no file in Program Files" || fail "left: $(ls -R "$installed")"
[ -z "$(service_state)" ] && ok "uninstall removed the service" || fail "service still $(service_state)"
if wine reg query 'HKLM\System\CurrentControlSet\Services\underpassd' >/dev/null 2>&1; then
  fail "the service's registry key is left"
fi
ok "no registry key left for the service"
uninstall_entry && fail "the Uninstall key is left"
ok "no Uninstall key left"
if [ "$app" = yes ]; then
  [ -z "$(shortcut)" ] && ok "uninstall removed the Start menu shortcut" || fail "left: $(shortcut)"
  [ -z "$(open_command underpass)" ] && ok "uninstall removed the underpass:// scheme" || fail "the scheme is left"
fi
[ ! -e "$WINEPREFIX/drive_c/ProgramData/Underpass" ] && ok "uninstall removed the helper's state (ProgramData\\Underpass)" \
  || fail "left: $(ls -R "$WINEPREFIX/drive_c/ProgramData/Underpass")"
echo "wine-test: $pass checks passed, in ${SECONDS}s"
echo "$pass passed, 0 failed"
