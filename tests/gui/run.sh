#!/usr/bin/env bash
# The desktop app end to end (npm run gui:e2e runs only the node part; use this script).
#
#   tests/gui/run.sh [--no-build] [--release] [--update-docs]
#
# Builds the app with its front end embedded, then: one Xvfb, a sandbox (scripts/sandbox.sh)
# with three wireguard-go servers and a tunnel resolver, the real underpassd in the client
# namespace, and a D-Bus session (with a mock notification server) holding tauri-driver +
# WebKitWebDriver. tests/gui/app.test.mjs drives the window. Screenshots and memory figures go
# to target/gui-artifacts/; --update-docs also copies the screenshots to docs/screenshots/.
# --release drives the release build (the one bench/app-memory.sh measures) instead of debug.
# Needs root (namespaces); every wait is bounded, and everything is torn down on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
build=1 docs=0 profile=debug cargo_profile=dev
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    --release) profile=release cargo_profile=release ;;
    --update-docs) docs=1 ;;
    *) echo "gui: unknown option $a" >&2; exit 2 ;;
  esac
done
say() { printf 'gui: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (network namespaces)"; exit 1; }
for t in Xvfb WebKitWebDriver tauri-driver dbus-run-session gdbus node; do
  command -v "$t" >/dev/null || { say "missing $t: run scripts/install-deps.sh"; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$build" = 1 ]; then
  say "building the front end and the app (front end embedded)"
  npm run -s ui:build
  cargo build --locked -q --profile "$cargo_profile" -p underpassd -p underpass-cli -p underpass-gui --features tauri/custom-protocol
fi
APP=$TARGET/$profile/underpass-gui
export UNDERPASS_BIN_DIR=$TARGET/$profile
ART=$TARGET/gui-artifacts
rm -rf "$ART"; mkdir -p "$ART"

PREFIX=ugui
export SANDBOX_DIR=$ROOT/.sandbox/$PREFIX
TMP=$(mktemp -d /tmp/underpass-gui.XXXXXX)
pids=()
group=""  # the process group of the D-Bus session: tauri-driver, WebKitWebDriver, the app, at-spi
cleanup() {
  local rc=$?
  [ -n "$group" ] && kill -TERM -- "-$group" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -f "$SANDBOX_DIR/underpassd.pid" ] && bash tests/gui/helper.sh stop || true
  bash scripts/sandbox.sh down "$PREFIX" --dir "$SANDBOX_DIR" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do
    for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "$group" ] && kill -KILL -- "-$group" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    say "FAILED (rc=$rc); logs in $ART"
    cp "$TMP"/*.log "$SANDBOX_DIR"/underpassd.log "$ART"/ 2>/dev/null || true
    cp -r "$TMP/home/.local/state/underpass" "$ART/app-logs" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT INT TERM

say "sandbox with three servers"
bash scripts/sandbox.sh up "$PREFIX" --servers 3 --dir "$SANDBOX_DIR"
# shellcheck disable=SC1091
. "$SANDBOX_DIR/env.sh"
# The tunnel's resolver (server 1's inner address), so the DNS-leak test gets answers.
ip netns exec "$NS_SERVER_1" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
  --no-hosts --bind-interfaces --user=root --address=/example.test/192.0.2.99 \
  --listen-address="$SERVER_TUN_ADDR4_1" --pid-file="$TMP/dnsmasq.pid" >"$TMP/dnsmasq.log" 2>&1 &
pids+=($!)
rm -rf "$SANDBOX_DIR/state"  # no intent left over from an earlier run
bash tests/gui/helper.sh start

# One long-lived X server for the whole run.
disp=""
for n in $(seq 90 130); do
  [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || { disp=$n; break; }
done
[ -n "$disp" ] || { say "no free X display number"; exit 1; }
Xvfb ":$disp" -screen 0 1280x900x24 -nolisten tcp >"$TMP/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$disp"
for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
xdpyinfo >/dev/null 2>&1 || { say "Xvfb did not start"; exit 1; }

# The app's world: a throwaway HOME and config dir, keys in 0600 files (no keyring here), the
# sandbox's helper, and self-test targets inside the sandbox.
mkdir -p "$TMP/home" "$TMP/xdg"; chmod 700 "$TMP/xdg"
port=$((20000 + RANDOM % 20000))

# The desktop entry the packages install (src-tauri/linux), installed for this HOME with the
# built binary, so `gio open underpass://...` and a double-clicked .underpass file reach the
# app exactly as on a desktop: the launcher starts a second instance, which hands over.
desktop-file-validate installers/linux/underpass.desktop
share=$TMP/home/.local/share
mkdir -p "$share/applications" "$share/mime/packages"
sed "s|^Exec=underpass-gui |Exec=$APP |" installers/linux/underpass.desktop >"$share/applications/underpass.desktop"
cp installers/linux/underpass-mime.xml "$share/mime/packages/underpass.xml"
update-desktop-database "$share/applications"
update-mime-database "$share/mime"

# Signed bundles from "Sandbox Corp IT" for server 1, with a policy: serials 1 and 2 let the
# device make its own key (what a link may carry), serial 3 embeds one (a link must not).
CLI=$TARGET/$profile/underpass
"$CLI" profile keygen --no-password --secret-key "$TMP/it.key" --public-key "$TMP/it.pub" >/dev/null
for serial in 1 2 3; do
  key='"generate_locally"'
  [ "$serial" = 3 ] && key="{\"embedded\": \"$(cat "$CLIENT_KEY_FILE")\"}"
  jq -n --arg signer "$(sed -n 2p "$TMP/it.pub")" --argjson key "$key" \
    --arg addr "$CLIENT_TUN_ADDR4_1/32" --arg endpoint "$SERVER_ENDPOINT_1" \
    --arg pub "$SERVER_PUB_1" --argjson serial "$serial" '{
      format: "underpass-profile/1", signer_public_key: $signer, organization: "Sandbox Corp IT",
      name: "corp", description: "Staff VPN (serial \($serial))", serial: $serial,
      interface: {addresses: [$addr]},
      servers: [{id: "sto-1", country: "SE", city: "Stockholm", endpoint: $endpoint, public_key: $pub}],
      policy: {min_kill_switch: "auto", split_tunnel_allowed: false, lan_access_allowed: false,
               dns_locked: true},
      private_key: $key}' >"$TMP/corp-$serial.json"
  "$CLI" profile sign "$TMP/corp-$serial.json" --secret-key "$TMP/it.key" -o "$TMP/corp-$serial.underpass" >/dev/null
done
# The app's environment, for the session tauri-driver starts it in and for the test, which
# starts it too (at login, and from a launcher) and reads the same store.
app_env=(UNDERPASS_SOCKET="$SANDBOX_DIR/underpassd.sock" UNDERPASS_CONFIG_DIR="$TMP/config"
  UNDERPASS_KEYSTORE=file UNDERPASS_TRUSTED_KEYS_DIR="$TMP/trusted"
  UNDERPASS_SELFTEST_DOMAIN=example.test
  UNDERPASS_SELFTEST_PROBES="$ROUTER_ADDR4,$INET_ADDR4_1")
env HOME="$TMP/home" XDG_RUNTIME_DIR="$TMP/xdg" "${app_env[@]}" \
  setsid dbus-run-session -- bash -c '
    echo "$DBUS_SESSION_BUS_ADDRESS" >"$0/bus"
    /usr/bin/python3 -m dbusmock --session --template notification_daemon -l "$0/notify.log" >"$0/dbusmock.log" 2>&1 &
    /usr/bin/python3 tests/gui/desktop.py watcher "$0/tray.jsonl" >"$0/watcher.log" 2>&1 &
    timeout 10 gdbus wait --session org.freedesktop.Notifications || echo "no mock notification server" >&2
    timeout 10 gdbus wait --session org.kde.StatusNotifierWatcher || echo "no tray host" >&2
    exec tauri-driver --port "$1" --native-port "$(($1 + 1))"' "$TMP" "$port" >"$TMP/tauri-driver.log" 2>&1 &
group=$!  # setsid in a background job execs in place: its pid is the new group's id

say "driving the app (display :$disp, tauri-driver on port $port)"
for _ in $(seq 100); do [ -s "$TMP/bus" ] && break; sleep 0.1; done
env "${app_env[@]}" GUI_WEBDRIVER_URL="http://127.0.0.1:$port" GUI_APP="$APP" GUI_ARTIFACTS="$ART" \
  GUI_NS_CLIENT="$NS_CLIENT" GUI_INET_ADDR4="$INET_ADDR4_1" GUI_TMP="$TMP" \
  GUI_NS_ROUTER="$NS_ROUTER" GUI_BLOCK_SERVERS="$SERVER_ADDR4_2,$SERVER_ADDR4_3" \
  GUI_CLIENT_PUB="$CLIENT_PUB" GUI_CLIENT_KEY_FILE="$CLIENT_KEY_FILE" GUI_DBUS="$(cat "$TMP/bus")" \
  GUI_SESSION_PID="$group" \
  timeout 600 node --test --test-reporter=spec tests/gui/app.test.mjs
cp "$TMP/notify.log" "$ART/notifications.log" 2>/dev/null || true
if [ "$docs" = 1 ]; then
  mkdir -p docs/screenshots
  cp "$ART"/*.png docs/screenshots/
  say "screenshots copied to docs/screenshots/"
fi
say "passed; screenshots in $ART"
