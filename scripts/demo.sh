#!/usr/bin/env bash
# `npm run demo`: Underpass on its built-in demo, in a sandbox of network namespaces.
#
#   npm run demo                  set up, connect, explain, then wait; Ctrl-C tears it all down
#   npm run demo -- --no-wait     set up and connect, leave it running, return
#   npm run demo -- --down        tear the sandbox down
#
# Three local wireguard-go servers stand for three countries. underpassd runs inside the
# sandbox's client namespace, so the host's own routes, DNS and firewall are never touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

PREFIX=upd
DIR=$ROOT/.sandbox/$PREFIX
SOCK=$DIR/underpassd.sock
CFG=$DIR/config
wait=1
for a in "$@"; do
  case $a in
    --down) mode=down ;;
    --no-wait) wait=0 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "demo: needs root (namespaces, TUN); run it as root" >&2; exit 1; }
  echo "demo: re-running through sudo (namespaces and TUN devices need root)"
  exec sudo -E env "PATH=$PATH" bash "$0" "$@"
fi

if [ "${mode:-}" = down ]; then
  bash scripts/sandbox.sh down "$PREFIX" --dir "$DIR"
  exit 0
fi

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
explain() { printf '  %s\n' "$@"; }

say "1. Installing what is missing and building (first time: a few minutes)"
bash scripts/install-deps.sh
if [ -n "${DISPLAY:-}" ]; then
  # The app too, with its front end embedded: tests/gui/run.sh's own cargo command.
  npm install --no-audit --no-fund --loglevel=error >/dev/null  # the locked versions, keeping node_modules
  npm run -s ui:build >/dev/null
  cargo build --locked -q -p underpassd -p underpass-cli -p underpass-gui --features tauri/custom-protocol
else
  # The build step of npm test, which runs this demo: the same features, so nothing is rebuilt.
  cargo build --locked -q --workspace
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug

say "2. Building the sandbox: a client, a router, three VPN servers (wireguard-go), three 'internet' hosts"
bash scripts/sandbox.sh up "$PREFIX" --servers 3 --dir "$DIR"
# shellcheck disable=SC1091
. "$DIR/env.sh"
if [ "$wait" = 1 ]; then
  trap 'echo; say "Tearing the sandbox down"; bash scripts/sandbox.sh down "$PREFIX" --dir "$DIR"; exit 0' INT TERM
fi

say "3. Starting underpassd inside the client namespace ($NS_CLIENT)"
ip netns exec "$NS_CLIENT" "$BIN/underpassd" --socket "$SOCK" --state-dir "$DIR/state" \
  >"$DIR/underpassd.log" 2>&1 &
echo $! >"$DIR/underpassd.pid"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { cat "$DIR/underpassd.log"; echo "demo: underpassd did not start" >&2; exit 1; }
# The sandbox has no desktop keyring (Secret Service), so the demo keeps its throwaway keys in
# files of mode 0600: the opt-in a headless machine needs.
export UNDERPASS_KEYSTORE=file
underpass() { "$BIN/underpass" --socket "$SOCK" --config-dir "$CFG" "$@"; }

say "4. Importing the three servers' profiles (plain wg-quick files, as a provider hands them out)"
for p in $PROFILES; do underpass import --replace "$p"; done
underpass profiles

say "5. Connecting to Sweden (se-sto-wg-001)"
underpass connect se-sto-wg-001
underpass status

IFACE=$(underpass --json status | jq -r .interface)
TABLE=$(underpass --json status | jq -r .routing.table)
say "6. What just happened"
explain "underpassd created $IFACE, a point-to-point interface: it has no link layer and no neighbours."
explain "Your address inside the tunnel is $CLIENT_TUN_ADDR4_1 (and $CLIENT_TUN_ADDR6_1); the other end of the"
explain "tunnel is the Swedish server, whose inner address is $SERVER_TUN_ADDR4_1. Every packet routed into"
explain "$IFACE is encrypted and sent as UDP to the server's real address, $SERVER_ENDPOINT_1."
echo
ip -n "$NS_CLIENT" -brief address show dev "$IFACE" | sed 's/^/    /'
echo
explain "Routing: everything goes into the tunnel (full tunnel), except the encrypted UDP itself,"
explain "which carries a firewall mark so that it takes the normal route. These are the rules:"
ip -n "$NS_CLIENT" rule | sed 's/^/    /'
explain "and the tunnel's own table ($TABLE):"
ip -n "$NS_CLIENT" route show table "$TABLE" | sed 's/^/    /'
ip -n "$NS_CLIENT" -6 route show table "$TABLE" | sed 's/^/    /'
echo
explain "So a ping to the 'internet' host $INET_ADDR4_1 goes through the tunnel:"
ip netns exec "$NS_CLIENT" ping -c 3 -i 0.3 "$INET_ADDR4_1" | sed 's/^/    /'
explain "and the server saw our handshake and traffic:"
ip netns exec "$NS_SERVER_1" wg show "$SERVER_WG_IF_1" | sed 's/^/    /'

say "7. Switching to Germany (de-fra-wg-001)"
underpass connect de-fra-wg-001
ip netns exec "$NS_CLIENT" ping -c 1 "$INET_ADDR4_2" | sed -n 2p | sed 's/^/    /'

say "Try it yourself"
explain "export UNDERPASS_SOCKET=$SOCK UNDERPASS_CONFIG_DIR=$CFG UNDERPASS_KEYSTORE=file"
explain "$BIN/underpass status            # or: profiles, connect us-nyc-wg-001, disconnect"
explain "ip netns exec $NS_CLIENT ping $INET_ADDR4_3   # a host behind the US server"
if [ -n "${DISPLAY:-}" ]; then
  say "8. Opening the desktop app against this demo helper (built in step 1)"
  UNDERPASS_SOCKET=$SOCK UNDERPASS_CONFIG_DIR=$CFG UNDERPASS_KEYSTORE=file \
    setsid "$BIN/underpass-gui" >"$DIR/underpass-gui.log" 2>&1 </dev/null &
  echo $! >"$DIR/underpass-gui.pid"  # `--down` (sandbox.sh down) stops it with the rest
  explain "The Underpass window is open on $DISPLAY, showing the same helper and profiles as the CLI."
else
  explain "No display (\$DISPLAY is unset), so the desktop app is not opened; this is the CLI demo."
  explain "On a desktop, npm run demo also opens the app against this sandboxed helper."
fi
if [ "$wait" = 1 ]; then
  say "Running. Press Ctrl-C to tear everything down (or: npm run demo -- --down)"
  while :; do sleep 3600; done
else
  say "Left running. Tear down with: npm run demo -- --down"
fi
