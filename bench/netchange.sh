#!/usr/bin/env bash
# How fast underpassd moves its tunnel to a new uplink: the time from a network change (the
# client's default route moves to its other uplink) until the first packet from the server
# arrives on the new path, with the tunnel idle, so that only the helper's own reaction (the
# rtnetlink watch, its 200 ms debounce, the route lookup with its mark, the forced handshake)
# can bring it there. The median of N changes, alternating between the two uplinks.
#
#   bench/netchange.sh [--rounds N] [--json FILE]
#     --rounds N   network changes (default 5, at most 50); each waits at most 10 s
#     --json FILE  also write the raw numbers there (bench/bench.sh embeds them in its results)
#   env: UNDERPASS_BIN_DIR (default ${CARGO_TARGET_DIR:-<repo>/target}/release) holds underpassd
#        and underpass
#
# Needs root (network namespaces). Sandbox PREFIX "unc" with a second uplink (scripts/sandbox.sh
# --uplink2), 1 server; run it under the shared lock: flock /tmp/underpass-e2e.lock bash
# bench/netchange.sh (bench/bench.sh already holds it). Prints one Markdown table row.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=unc
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/sbin:/usr/sbin:/sbin"

rounds=5 json_out=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?}; shift 2 ;;
    --json) json_out=${2:?}; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "netchange: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 50 ] || { echo "netchange: --rounds 1..50" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "netchange: must run as root (network namespaces)" >&2; exit 1; }
BIN_DIR=${UNDERPASS_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
for b in underpassd underpass; do
  [ -x "$BIN_DIR/$b" ] || { echo "netchange: $BIN_DIR/$b not built" >&2; exit 1; }
done

log() { printf 'netchange: %s\n' "$*" >&2; }
WORK=$(mktemp -d /tmp/underpass-netchange.XXXXXX)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bash "$ROOT/scripts/sandbox.sh" down "$PREFIX" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

bash "$ROOT/scripts/sandbox.sh" up "$PREFIX" --servers 1 --uplink2 >/dev/null
# shellcheck disable=SC1091
. "$ROOT/.sandbox/$PREFIX/env.sh"
in_client() { ip netns exec "$NS_CLIENT" "$@"; }

UP="$SANDBOX_DIR/underpass"
mkdir -p "$UP/state" "$UP/config"
setsid ip netns exec "$NS_CLIENT" "$BIN_DIR/underpassd" --socket "$UP/sock" --state-dir "$UP/state" \
  --system-dir "$UP/system" </dev/null >"$WORK/underpassd.log" 2>&1 &
echo $! >"$SANDBOX_DIR/underpassd.pid"  # sandbox.sh down ends it
for _ in $(seq 100); do [ -S "$UP/sock" ] && break; sleep 0.1; done
cli() { UNDERPASS_KEYSTORE=file timeout 20 ip netns exec "$NS_CLIENT" "$BIN_DIR/underpass" --socket "$UP/sock" --config-dir "$UP/config" "$@"; }
cli import "$PROFILE_1" >/dev/null
cli connect --timeout 10 >/dev/null

# The uplinks and the router's address on each; the default route starts on the first.
links=("$CLIENT_IF" "$CLIENT_IF_2") routers=("$ROUTER_ADDR4" "$ROUTER_ADDR4_2")
runs=()
for ((k = 1; k <= rounds; k++)); do
  new=$((k % 2))
  sleep 1  # quiet: the helper's debounce of the last change is over
  cap="$WORK/first-$k.txt" err="$WORK/tcpdump-$k.err"
  : >"$err"
  timeout 10 ip netns exec "$NS_CLIENT" tcpdump -i "${links[$new]}" -n -tt -l -c 1 --immediate-mode \
    "udp and src host $SERVER_ADDR4_1 and src port 51820" >"$cap" 2>"$err" &
  dump=$!
  for _ in $(seq 100); do grep -q "listening on" "$err" && break; sleep 0.05; done
  t0=$(date +%s.%N)
  in_client ip -4 route replace default via "${routers[$new]}" dev "${links[$new]}"
  wait "$dump" || true
  ms=$(awk -v t0="$t0" 'NR == 1 {printf "%.0f", ($1 - t0) * 1000}' "$cap")
  if [ -n "$ms" ]; then runs+=("$ms"); log "change $k to ${links[$new]}: first packet from the server after $ms ms"
  else runs+=(null); log "change $k to ${links[$new]}: nothing from the server within 10 s"; fi
done
cli disconnect --timeout 10 >/dev/null || true

result=$(printf '%s\n' "${runs[@]}" | jq -sc --arg date "$(date -u +%FT%TZ)" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  {date: $date, what: "network change until the first packet from the server on the new path (ms)",
   runs: ., failed: map(select(. == null)) | length, median_ms: (map(select(. != null)) | median)}')
[ -n "$json_out" ] && echo "$result" >"$json_out"
echo "| a network change until the first packet on the new path (ms, idle tunnel) | $(jq -r '.median_ms // "–"' <<<"$result") | $(jq -r '.runs | map(tostring) | join(", ")' <<<"$result") |"
