#!/usr/bin/env bash
# Underpass benchmark: throughput, CPU per GB, peak RSS and connect time of WireGuard clients
# running in the sandbox's client namespace against the same wireguard-go server.
#
#   bench/bench.sh [--rounds N] [--seconds S] [--clients LIST] [--direction up|down|both] [--no-app]
#                  [--no-failover]
#     --rounds N     rounds (default 5); each round runs every client once, order rotated per round
#     --seconds S    iperf3 duration per transfer (default 10)
#     --clients LIST comma list from: wireguard-go,boringtun,underpass (default: all three)
#     --direction D  up (iperf3 client -> internet host), down (iperf3 -R), or both (default):
#                    one connect per run, then each direction's transfer in turn
#     --reverse      the same as --direction down
#     --no-failover  skip the time to recover from a dead server (about 3 minutes)
#     --no-app       skip the desktop app's memory (measured when $BIN_DIR/underpass-gui and
#                    Xvfb exist: build it with `npm run ui:build && cargo build --release
#                    -p underpass-gui --features tauri/custom-protocol`)
#   env: UNDERPASS_BIN_DIR (default ${CARGO_TARGET_DIR:-<repo>/target}/release) holds underpassd, underpass
#        UNDERPASS_CONNECT_ARGS extra args for `underpass connect --timeout 10` (default: none:
#          the only imported profile, se-sto-wg-001); UNDERPASSD_ARGS extra args for underpassd
#
# Needs root (network namespaces). Uses sandbox PREFIX "ubn" (scripts/sandbox.sh), 1 server.
# Writes bench/results/<timestamp>.json (raw per-run numbers) and prints a Markdown table.
#
# What is measured, per run:
#   floor         once, before the rounds: ChaCha20-Poly1305 on one core (`openssl speed -evp
#                 chacha20-poly1305 -bytes 1420`, CPU time), as CPU-s per GB: what encryption
#                 alone costs, the least any client could spend
#   connect_ms    comparison clients: from process start to the first ping reply from the
#                 internet host through the tunnel; underpass: from the start of `underpass
#                 connect` (helper already running, profile imported) to that first reply. A
#                 pinger started before the client (bench/first-reply.py) sends an echo request
#                 every millisecond and stamps the first reply; the internet host is reachable only through a
#                 tunnel (the bench removes the router's direct route to it), so the first reply
#                 is the first one through the tunnel, and no process spawned for the
#                 measurement lies between the request and the reply. Underpass's connect ends
#                 when both the first reply has come and `underpass connect` has returned (the
#                 helper reports "connected" once DNS is in place too). Bounded at 10 s.
#   connect_detail underpass: both of those times, and the helper's own account of its steps
#                 (its log line "tunnel routes installed": route lookup, firewall, data plane
#                 and handshake sent, MSS clamp, routes, DNS, in ms)
#   mbps          iperf3 -c 198.18.1.2 -t S -J from the client ns, end.sum_received.bits_per_second
#   cpu_s_per_gb  (utime+stime of the client process and its descendants during the iperf3 run)
#                 / GB received (underpass: underpassd, which owns the data plane)
#   rss_mib       VmHWM of the client process (summed over its descendants) after the run
# and once, for Underpass, a resume until the handshake: from logind's PrepareForSleep(false)
# (a stand-in on a private bus) to the server's handshake response on the client's link, 5 times.
# and once, after the rounds, the desktop app's memory: underpass-gui on the Connect screen of a
# live tunnel under Xvfb, VmRSS after 10 s idle and VmHWM after an iperf3 run (its throughput
# plot updating), for the app process and each WebKit child process.
# And once, the time to recover from a dead server (issue 8): the ignored e2e test
# `failover_time_median_of_5` (tests/e2e/tests/failover.rs, sandbox "fob", two servers of one
# country) makes the server in use unreachable five times, and times each from the moment it
# went silent until a ping crosses the other server; the median of the 5, in seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SANDBOX="$ROOT/scripts/sandbox.sh"
PREFIX=ubn
RESULTS_DIR="$ROOT/bench/results"
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/sbin:/usr/sbin:/sbin"

rounds=5 seconds=10 directions="up down" app=1 failover=1 clients_arg="wireguard-go,boringtun,underpass"
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --clients) clients_arg=${2:?}; shift 2 ;;
    --reverse) directions=down; shift ;;
    --direction)
      case ${2:-} in up | down) directions=$2 ;; both) directions="up down" ;;
        *) echo "bench: --direction up|down|both" >&2; exit 2 ;; esac
      shift 2 ;;
    --no-app) app=0; shift ;;
    --no-failover) failover=0; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 100 ] || { echo "bench: --rounds 1..100" >&2; exit 2; }
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 300 ] || { echo "bench: --seconds 1..300" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench: must run as root (network namespaces)" >&2; exit 1; }
for t in ip wg wireguard-go iperf3 jq setsid timeout awk nsenter python3; do
  command -v "$t" >/dev/null || { echo "bench: $t missing: run scripts/install-deps.sh --bench" >&2; exit 1; }
done

BIN_DIR=${UNDERPASS_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
case $BIN_DIR in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
CLK_TCK=$(getconf CLK_TCK)
IPERF_PORT=5201

log() { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- which clients can run
clients=() notes=()  # notes: "client: why it was skipped"
IFS=, read -r -a wanted <<<"$clients_arg"
for c in "${wanted[@]}"; do
  case $c in
    wireguard-go) clients+=(wireguard-go) ;;
    boringtun)
      if command -v boringtun-cli >/dev/null; then clients+=(boringtun)
      else notes+=("boringtun: boringtun-cli not on PATH (scripts/install-deps.sh --bench)"); fi ;;
    underpass)
      if [ -x "$BIN_DIR/underpassd" ] && [ -x "$BIN_DIR/underpass" ]; then clients+=(underpass)
      else notes+=("underpass: $BIN_DIR/underpassd or $BIN_DIR/underpass not built (cargo build --release, or set UNDERPASS_BIN_DIR)"); fi ;;
    *) echo "bench: unknown client '$c'" >&2; exit 2 ;;
  esac
done
for n in "${notes[@]}"; do
  log "##############################################################"
  log "## SKIPPED ${n%%:*}:${n#*:}"
  log "##############################################################"
done
[ ${#clients[@]} -gt 0 ] || { log "no client to run"; exit 1; }

# ---------------------------------------------------------------- sandbox + cleanup
WORK=$(mktemp -d /tmp/underpass-bench.XXXXXX)
CLIENT_PID="" CLIENT_KIND="" CLIENT_IF=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$CLIENT_KIND" ] && stop_client || true
  bash "$SANDBOX" down "$PREFIX" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

log "sandbox up ($PREFIX)"
bash "$SANDBOX" up "$PREFIX" --servers 1 >/dev/null
# shellcheck disable=SC1091
. "$ROOT/.sandbox/$PREFIX/env.sh"
TARGET4=$INET_ADDR4_1
# The internet host answers only through a tunnel: the router's direct routes to it go, so a
# reply to the connect-time pinger (below) proves the tunnel.
ip -n "$NS_ROUTER" route del "$INET_NET4_1"
ip -n "$NS_ROUTER" -6 route del "$INET_NET6_1"

in_client() { ip netns exec "$NS_CLIENT" "$@"; }

ip netns exec "$NS_INET_1" iperf3 -s -D -B "$TARGET4" -p $IPERF_PORT --pidfile "$SANDBOX_DIR/iperf3.pid"
listening() { ip netns exec "$NS_INET_1" ss -ltnH "sport = :$IPERF_PORT" | grep -q .; }
for ((k = 0; k < 100; k++)); do listening && break; sleep 0.1; done
listening || { log "iperf3 server did not start"; exit 1; }

alive() {
  local st
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
kill_wait() {  # kill_wait PID : TERM, up to 5 s, then KILL
  local pid=$1 k
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((k = 0; k < 100; k++)); do alive "$pid" || return 0; sleep 0.05; done
  log "pid $pid ignored SIGTERM for 5 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((k = 0; k < 40; k++)); do alive "$pid" || return 0; sleep 0.05; done
}
tree_pids() {  # PID and all its descendants (a client may run its data plane in a child)
  ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END { print root; for (i in pids) { p = pids[i]; q = parent[p]; n = 0
            while (q > 1 && n++ < 64) { if (q == root) { print p; break } q = parent[q] } } }'
}
cpu_ticks() {  # utime+stime (fields 14, 15, parsed after the ")" ending comm) of the process tree
  local p sum=0 t
  for p in $(tree_pids "$1"); do
    t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
vm_hwm_kib() {  # peak RSS: sum of VmHWM over the process tree
  local p sum=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# The connect-time pinger (bench/first-reply.py): started just before a client, in the client ns
# (nsenter: no mount namespace to set up), one echo request a millisecond until the first reply,
# whose arrival it stamps with the wall clock. Requests before the tunnel is up go unanswered.
PINGER_PID=""
start_pinger() {
  PINGER_LOG="$WORK/pinger.log"
  nsenter --net="/run/netns/$NS_CLIENT" python3 "$ROOT/bench/first-reply.py" "$TARGET4" 12 >"$PINGER_LOG" 2>&1 &
  PINGER_PID=$!
  local k
  for ((k = 0; k < 500; k++)); do grep -qs '^ready$' "$PINGER_LOG" && return 0; sleep 0.01; done
  log "the connect-time pinger did not start: $(head -3 "$PINGER_LOG")"; return 1
}
stop_pinger() {
  [ -n "$PINGER_PID" ] && { kill "$PINGER_PID" 2>/dev/null; wait "$PINGER_PID" 2>/dev/null; } || true
  PINGER_PID=""
}
# Prints the ms from $1 (date +%s%N) to the pinger's first reply, or fails after 10 s.
wait_tunnel_ms() {
  local t0=$1 k stamp=""
  for ((k = 0; k < 1000; k++)); do
    stamp=$(sed -n 2p "$PINGER_LOG")
    [ -n "$stamp" ] && break
    sleep 0.01
  done
  [ -n "$stamp" ] || return 1
  awk -v s="$stamp" -v t0="$t0" 'BEGIN {printf "%.1f\n", s * 1000 - t0 / 1e6}'
}

wait_socket() {  # wait_socket PATH SECONDS
  local k
  for ((k = 0; k < $2 * 100; k++)); do [ -S "$1" ] && return 0; sleep 0.01; done
  return 1
}

# Put the client ns back to "no tunnel": whatever a client left (routes, rules, nft, resolv.conf).
reset_client_ns() {
  in_client nft flush ruleset 2>/dev/null || true
  local fam prio
  for fam in -4 -6; do
    for prio in $(ip -n "$NS_CLIENT" $fam rule show | awk -F: '$1 != 0 && $1 != 32766 && $1 != 32767 {print $1}'); do
      ip -n "$NS_CLIENT" $fam rule del priority "$prio" 2>/dev/null || true
    done
  done
  printf 'nameserver %s\n' "$ROUTER_ADDR4" >"/etc/netns/$NS_CLIENT/resolv.conf" 2>/dev/null || true
}

# ---------------------------------------------------------------- clients
# Each start_* sets CLIENT_PID (the process whose CPU/RSS is measured), CLIENT_IF, and
# CONNECT_MS; returns non-zero on failure.

# Userspace clients that speak the WireGuard UAPI (wireguard-go, boringtun): same setup.
start_uapi() {  # start_uapi IFNAME CMD...
  local ifname=$1; shift
  start_pinger || return 1
  local t0; t0=$(date +%s%N)
  CLIENT_IF=$ifname
  CLIENT_LOG="$WORK/$ifname.log"
  setsid ip netns exec "$NS_CLIENT" "$@" </dev/null >"$CLIENT_LOG" 2>&1 &
  CLIENT_PID=$!
  wait_socket "/var/run/wireguard/$ifname.sock" 10 || { log "$ifname: no UAPI socket after 10 s"; return 1; }
  in_client wg set "$ifname" private-key "$CLIENT_KEY_FILE" \
    peer "$SERVER_PUB_1" endpoint "$SERVER_ENDPOINT_1" allowed-ips 0.0.0.0/0,::/0
  ip -n "$NS_CLIENT" addr add "$CLIENT_TUN_ADDR4_1/32" dev "$ifname"
  ip -n "$NS_CLIENT" -6 addr add "$CLIENT_TUN_ADDR6_1/128" dev "$ifname" nodad
  ip -n "$NS_CLIENT" link set "$ifname" mtu 1420 up
  ip -n "$NS_CLIENT" route add "$INET_NET4_1" dev "$ifname"
  ip -n "$NS_CLIENT" -6 route add "$INET_NET6_1" dev "$ifname"
  CONNECT_MS=$(wait_tunnel_ms "$t0") || { log "$ifname: no ping through the tunnel within 10 s"; return 1; }
}
stop_uapi() {
  [ -n "$CLIENT_PID" ] && kill_wait "$CLIENT_PID"
  ip -n "$NS_CLIENT" link del "$CLIENT_IF" 2>/dev/null || true
  rm -f "/var/run/wireguard/$CLIENT_IF.sock"
}

start_wireguard_go() {
  start_uapi "${PREFIX}cwg" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=error \
    wireguard-go -f "${PREFIX}cwg"
}
start_boringtun() {
  start_uapi "${PREFIX}cbt" env WG_SUDO=1 \
    "$(command -v boringtun-cli)" --foreground --disable-drop-privileges \
    --log "$WORK/boringtun.log" "${PREFIX}cbt"
}

# Underpass: the helper (underpassd) in the client ns, then the CLI: import + connect.
UP_DIR="$SANDBOX_DIR/underpass"
UP_SOCK="$UP_DIR/underpassd.sock"
# Headless sandbox: keys in files (mode 0600), the keyring opt-out a machine without one needs.
up_cli() {
  UNDERPASS_KEYSTORE=file timeout 20 nsenter --net="/run/netns/$NS_CLIENT" \
    "$BIN_DIR/underpass" --socket "$UP_SOCK" --config-dir "$UP_DIR/config" "$@"
}
start_underpass() {
  rm -rf "$UP_DIR"; mkdir -p "$UP_DIR/state" "$UP_DIR/config"
  CLIENT_IF="" CLIENT_LOG="$WORK/underpassd.log"
  # shellcheck disable=SC2086
  setsid ip netns exec "$NS_CLIENT" "$BIN_DIR/underpassd" --socket "$UP_SOCK" --state-dir "$UP_DIR/state" \
    ${UNDERPASSD_ARGS:-} </dev/null >"$CLIENT_LOG" 2>&1 &
  CLIENT_PID=$!
  echo "$CLIENT_PID" >"$SANDBOX_DIR/underpassd.pid"  # sandbox.sh down kills it too
  wait_socket "$UP_SOCK" 10 || { log "underpassd: no socket $UP_SOCK after 10 s"; tail -5 "$WORK/underpassd.log" >&2; return 1; }
  up_cli import "$PROFILE_1" >"$WORK/underpass-import.log" 2>&1 ||
    { log "underpass import failed:"; tail -5 "$WORK/underpass-import.log" >&2; return 1; }
  start_pinger || return 1
  local t0; t0=$(date +%s%N)
  # shellcheck disable=SC2086
  up_cli connect --timeout 10 ${UNDERPASS_CONNECT_ARGS:-} >"$WORK/underpass-connect.log" 2>&1 ||
    { log "underpass connect failed:"; tail -5 "$WORK/underpass-connect.log" >&2; return 1; }
  # `underpass connect` returns once the helper reports "connected": DNS is in place too.
  local reported; reported=$(awk -v t1="$(date +%s%N)" -v t0="$t0" 'BEGIN {printf "%.1f\n", (t1 - t0) / 1e6}')
  local reply; reply=$(wait_tunnel_ms "$t0") || { log "underpass: no ping through the tunnel within 10 s"; return 1; }
  # Done when both happened: the first reply through the tunnel and everything in place.
  CONNECT_MS=$(awk -v a="$reply" -v b="$reported" 'BEGIN {print (a > b ? a : b)}')
  local steps
  steps=$(sed -n 's/\x1b\[[0-9;]*m//g; s/.*tunnel routes installed.*steps=\(.*total=[0-9.]*ms\).*/\1/p' "$CLIENT_LOG" | tail -1)
  CONNECT_DETAIL="first reply ${reply} ms, connected reported ${reported} ms; helper: ${steps:-?}"
}
stop_underpass() {
  if [ -n "$CLIENT_PID" ] && alive "$CLIENT_PID"; then up_cli disconnect --timeout 10 >/dev/null 2>&1 || true; fi
  [ -n "$CLIENT_PID" ] && kill_wait "$CLIENT_PID"
  rm -f "$SANDBOX_DIR/underpassd.pid"
}

# Forget the server's state for the client key before each run. Needed, not cosmetic: boringtun's
# TAI64N handshake timestamps run 27 s ahead of wireguard-go's (it adds 37 s of TAI-UTC offset,
# wireguard-go adds 10), so after a boringtun run the server rejects wireguard-go's initiations
# as replays for ~27 s. Re-adding the peer resets the stored timestamp.
reset_server_peer() {
  ip netns exec "$NS_SERVER_1" wg set "$SERVER_WG_IF_1" peer "$CLIENT_PUB" remove
  ip netns exec "$NS_SERVER_1" wg set "$SERVER_WG_IF_1" peer "$CLIENT_PUB" \
    allowed-ips "$CLIENT_TUN_ADDR4_1/32,$CLIENT_TUN_ADDR6_1/128"
}

start_client() {
  CLIENT_KIND=$1 CLIENT_PID="" CONNECT_MS="" CLIENT_LOG="" CONNECT_DETAIL=""
  reset_server_peer
  case $1 in
    wireguard-go) start_wireguard_go ;;
    boringtun) start_boringtun ;;
    underpass) start_underpass ;;
  esac
}
stop_client() {
  case $CLIENT_KIND in
    wireguard-go | boringtun) stop_uapi ;;
    underpass) stop_underpass ;;
  esac
  stop_pinger
  reset_client_ns
  CLIENT_KIND="" CLIENT_PID=""
}

# ---------------------------------------------------------------- one run
RUNS="$WORK/runs.jsonl"
: >"$RUNS"
record() {  # record ROUND CLIENT DIRECTION OK ERROR [mbps bytes cpu_s rss_kib connect_ms connect_detail]
  jq -nc --argjson round "$1" --arg client "$2" --arg direction "$3" --argjson ok "$4" --arg error "$5" \
    --arg mbps "${6:-}" --arg bytes "${7:-}" --arg cpu "${8:-}" --arg rss "${9:-}" --arg conn "${10:-}" \
    --arg detail "${11:-}" '
    def num: if . == "" then null else tonumber end;
    {round: $round, client: $client, direction: $direction, ok: $ok,
     error: (if $error == "" then null else $error end),
     mbps: ($mbps|num), bytes: ($bytes|num), cpu_s: ($cpu|num),
     cpu_s_per_gb: (if ($cpu|num) != null and ($bytes|num) and ($bytes|num) > 0
                    then ($cpu|num) / (($bytes|num) / 1e9) else null end),
     rss_mib: (if ($rss|num) then ($rss|num) / 1024 else null end),
     connect_ms: ($conn|num),
     connect_detail: (if $detail == "" then null else $detail end)}' >>"$RUNS"
}

fail_all() {  # fail_all ROUND CLIENT ERROR: one failed record per direction
  local d
  for d in $directions; do record "$1" "$2" "$d" false "$3"; done
}

run_one() {  # run_one ROUND CLIENT: one connect, then a transfer per direction
  local round=$1 client=$2
  if ! start_client "$client"; then
    [ -n "$CLIENT_LOG" ] && [ -s "$CLIENT_LOG" ] && { log "last lines of $client's log:"; tail -n 8 "$CLIENT_LOG" >&2; }
    fail_all "$round" "$client" "client did not come up (see log above)"
    stop_client; return 0
  fi
  alive "$CLIENT_PID" || { fail_all "$round" "$client" "client process exited"; stop_client; return 0; }
  local d json t_before t_after rss rflag err mbps bytes cpu
  for d in $directions; do
    json="$WORK/iperf-$round-$client-$d.json" rflag=()
    [ "$d" = down ] && rflag=(-R)
    t_before=$(cpu_ticks "$CLIENT_PID")
    timeout $((seconds + 30)) ip netns exec "$NS_CLIENT" \
      iperf3 -c "$TARGET4" -p $IPERF_PORT -t "$seconds" -J --connect-timeout 5000 "${rflag[@]}" >"$json" 2>&1 || true
    if ! alive "$CLIENT_PID"; then record "$round" "$client" "$d" false "client process died during transfer"; continue; fi
    t_after=$(cpu_ticks "$CLIENT_PID")
    rss=$(vm_hwm_kib "$CLIENT_PID")
    err=$(jq -r '.error // empty' "$json" 2>/dev/null || echo "iperf3 output is not JSON")
    if [ -n "$err" ]; then record "$round" "$client" "$d" false "iperf3: $err"; continue; fi
    mbps=$(jq -r '.end.sum_received.bits_per_second / 1e6' "$json")
    bytes=$(jq -r '.end.sum_received.bytes' "$json")
    cpu=$(awk -v a="$t_before" -v b="$t_after" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", (b - a) / hz}')
    record "$round" "$client" "$d" true "" "$mbps" "$bytes" "$cpu" "$rss" "$CONNECT_MS" "$CONNECT_DETAIL"
    log "round $round $client $d: $(printf '%.0f' "$mbps") Mbit/s, cpu ${cpu}s, connect ${CONNECT_MS} ms${CONNECT_DETAIL:+ ($CONNECT_DETAIL)}, rss $((rss / 1024)) MiB"
  done
  stop_client
}

# ---------------------------------------------------------------- the floor: encryption alone
# ChaCha20-Poly1305 over 1420-byte messages on one core; openssl divides by CPU time, so this is
# CPU-s per GB even on a busy machine.
FLOOR=$(timeout 60 openssl speed -evp chacha20-poly1305 -bytes 1420 -seconds 3 -mr 2>/dev/null |
  awk -F: '/^\+F:/ && $4 > 0 {printf "%.3f", 1e9 / $4}') || FLOOR=""
log "floor: ChaCha20-Poly1305 on one core: ${FLOOR:-?} CPU-s/GB"

# ---------------------------------------------------------------- rounds (interleaved)
log "clients: ${clients[*]}; rounds $rounds x ${seconds}s; directions: $directions"
n=${#clients[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((j = 0; j < n; j++)); do
    run_one "$r" "${clients[$(((j + r - 1) % n))]}"
  done
done

# ---------------------------------------------------------------- the desktop app's memory
# bench/app-memory.sh measures it (PSS and RSS, in the tray and with the window open, and the
# reopen time) in a sandbox of its own; this script already holds the e2e lock, so it must not.
APP_JSON=null
if [ "$app" = 1 ]; then
  if UNDERPASS_BIN_DIR="$BIN_DIR" bash "$ROOT/bench/app-memory.sh" --json "$WORK/app-memory.json" \
    >"$WORK/app-memory.md"; then
    APP_JSON=$(cat "$WORK/app-memory.json")
  else
    log "app: memory not measured (bench/app-memory.sh failed)"
  fi
fi

# ---------------------------------------------------------------- healing: a network change
# bench/netchange.sh moves the default route between two uplinks of its own sandbox, with the
# tunnel idle: the time until the first packet from the server on the new path, median of 5.
NET_JSON=null
if [[ " ${clients[*]} " == *" underpass "* ]]; then
  if UNDERPASS_BIN_DIR="$BIN_DIR" bash "$ROOT/bench/netchange.sh" --rounds 5 \
    --json "$WORK/netchange.json" >"$WORK/netchange.md"; then
    NET_JSON=$(cat "$WORK/netchange.json")
  else
    log "network change: not measured (bench/netchange.sh failed)"
  fi
fi

# ---------------------------------------------------------------- resume until the handshake
# Underpass only: logind's PrepareForSleep(false), from a stand-in on a private bus, until the
# server's handshake response on the client's link, 5 times (tests/e2e/tests/sleep.rs, in its
# own sandbox "esl9"; cargo builds that small test driver if needed). About a minute; bounded.
RESUME_JSON=null
if [[ " ${clients[*]} " == *" underpass "* ]]; then
  log "resume until the handshake (5 times, logind stand-in)"
  if (cd "$ROOT" && UNDERPASS_BIN_DIR="$BIN_DIR" UNDERPASS_BENCH_JSON="$WORK/resume.json" \
    timeout 600 cargo test -q -p underpass-e2e --test sleep -- --ignored --exact \
    bench_resume_until_handshake --nocapture) >"$WORK/resume.log" 2>&1 && [ -s "$WORK/resume.json" ]; then
    RESUME_JSON=$(cat "$WORK/resume.json")
    log "resume until the handshake: median $(jq -r '.median_ms | round' <<<"$RESUME_JSON") ms"
  else
    log "resume: not measured: $(tail -5 "$WORK/resume.log")"
  fi
fi

# ---------------------------------------------------------------- time to recover
# A dead server until traffic flows through another (s), median of 5; the test is bounded (each
# failover within 60 s + 90 s + 10 s), and so is this run.
FAILOVER_JSON=null
if [ "$failover" = 1 ]; then
  log "failover: a dead server until traffic flows through another, 5 times"
  if UNDERPASS_BIN_DIR="$BIN_DIR" timeout 900 cargo test -p underpass-e2e --locked --test failover \
    -- --ignored --nocapture --exact failover_time_median_of_5 >"$WORK/failover.log" 2>&1; then
    line=$(grep -o 'BENCH failover_s median=[0-9.]* runs=[0-9.,]*' "$WORK/failover.log" | tail -1)
    median=${line#*median=}; median=${median%% *}; runs=${line##*runs=}
    FAILOVER_JSON=$(jq -nc --argjson m "$median" --arg r "$runs" \
      '{median_s: $m, runs_s: ($r | split(",") | map(tonumber))}')
  else
    log "failover: not measured (see $WORK/failover.log)"; tail -20 "$WORK/failover.log" >&2 || true
  fi
fi

# ---------------------------------------------------------------- results
mkdir -p "$RESULTS_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$RESULTS_DIR/$stamp.json"
kernel=$(uname -srm)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
notes_json=$(printf '%s\n' "${notes[@]+"${notes[@]}"}" | jq -R . | jq -sc 'map(select(. != ""))')
first_direction=${directions%% *}
jq -s --arg date "$(date -u +%FT%TZ)" --arg kernel "$kernel" --argjson nproc "$(nproc)" \
  --arg cpu "$cpu_model" --argjson rounds "$rounds" --argjson seconds "$seconds" \
  --arg directions "$directions" --arg first "$first_direction" --arg floor "${FLOOR:-}" \
  --argjson notes "$notes_json" --arg clients "${clients[*]}" --argjson app "$APP_JSON" \
  --argjson net_change "$NET_JSON" --argjson resume "$RESUME_JSON" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  . as $runs
  # The same round and direction of a reference client, by "round/direction".
  | def by_round($ref; f): $runs | map(select(.client == $ref and .ok and (f != null)))
      | map({key: "\(.round)/\(.direction)", value: f}) | from_entries;
  def ratio($base; f): map(select($base["\(.round)/\(.direction)"] != null and f != null)
      | f / $base["\(.round)/\(.direction)"]) | median;
  by_round("wireguard-go"; .mbps) as $wg_mbps | by_round("boringtun"; .mbps) as $bt_mbps
  | by_round("wireguard-go"; .cpu_s_per_gb) as $wg_cpu
  | {date: $date, kernel: $kernel, nproc: $nproc, cpu: $cpu, rounds: $rounds, seconds: $seconds,
     directions: ($directions | split(" ")), notes: $notes,
     floor_cpu_s_per_gb: (if $floor == "" then null else ($floor | tonumber) end),
     runs: $runs, app_memory: $app, net_change: $net_change, resume_until_handshake: $resume,
     summary: [($clients | split(" "))[] as $c | ($directions | split(" "))[] as $d
       | ($runs | map(select(.client == $c and .direction == $d))) as $all
       | ($all | map(select(.ok))) as $ok
       | {client: $c, direction: $d, ok_rounds: ($ok | length), failed_rounds: ($all | map(select(.ok | not)) | length),
          median_mbps: ($ok | map(.mbps) | median),
          median_ratio_vs_wireguard_go: ($ok | ratio($wg_mbps; .mbps)),
          median_ratio_vs_boringtun: ($ok | ratio($bt_mbps; .mbps)),
          median_cpu_s_per_gb: ($ok | map(.cpu_s_per_gb) | map(select(. != null)) | median),
          median_cpu_ratio_vs_wireguard_go: ($ok | ratio($wg_cpu; .cpu_s_per_gb)),
          median_rss_mib: ($ok | map(.rss_mib) | median),
          # One connect per run: counted once, with the first direction.
          median_connect_ms: (if $d == $first then ($ok | map(.connect_ms) | median) else null end)}]}' "$RUNS" >"$out"

fmt() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "" || v == "null") print "–"; else printf "%.*f\n", d, v }'; }
echo
echo "### Underpass benchmark, $(date -u '+%F %H:%M UTC')"
echo
echo "$(nproc) CPU ($cpu_model), $kernel; iperf3 ${seconds}s per direction ($directions) x $rounds rounds, clients interleaved; server: wireguard-go in the sandbox; medians; ratios are medians of per-round ratios"
echo
echo "| client | direction | Mbit/s | vs wireguard-go | vs boringtun | CPU s/GB | CPU vs wireguard-go | peak RSS (MiB) | connect (ms) | rounds ok |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
jq -r '.summary[] | [.client, .direction, .median_mbps, .median_ratio_vs_wireguard_go, .median_ratio_vs_boringtun,
    .median_cpu_s_per_gb, .median_cpu_ratio_vs_wireguard_go, .median_rss_mib, .median_connect_ms, .ok_rounds, .failed_rounds]
  | map(tostring) | @tsv' "$out" |
  while IFS=$'\t' read -r c d mbps ratio bt cpu cpur rss conn okr bad; do
    rounds_cell="$okr/$rounds"; [ "$bad" != 0 ] && rounds_cell+=" ($bad failed)"
    echo "| $c | $d | $(fmt "$mbps" 0) | $(fmt "$ratio" 2) | $(fmt "$bt" 2) | $(fmt "$cpu" 2) | $(fmt "$cpur" 2) | $(fmt "$rss" 1) | $(fmt "$conn" 0) | $rounds_cell |"
  done
for n in "${notes[@]+"${notes[@]}"}"; do echo "| ${n%%:*} | skipped: ${n#*: } | | | | | | | | 0/$rounds |"; done
echo "| floor: ChaCha20-Poly1305, one core (openssl speed) | | | | | $(fmt "${FLOOR:-}" 2) | | | | |"
if [ "$RESUME_JSON" != null ]; then
  echo
  echo "Underpass, a resume until the handshake (logind's PrepareForSleep(false) to the server's response on the wire): median $(fmt "$(jq -r .median_ms <<<"$RESUME_JSON")" 0) ms of 5 ($(jq -r '.samples_ms | map(round | tostring) | join(", ")' <<<"$RESUME_JSON") ms)"
fi
if [ "$APP_JSON" != null ]; then
  echo
  cat "$WORK/app-memory.md"
fi
if [ "$NET_JSON" != null ]; then
  echo
  echo "| underpass, time to recover | median | runs |"
  echo "|---|---:|---|"
  cat "$WORK/netchange.md"
fi
if [ "$FAILOVER_JSON" != null ]; then
  jq --argjson f "$FAILOVER_JSON" '. + {failover: $f}' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
  echo
  echo "| time to recover | median of 5 | runs |"
  echo "|---|---:|---|"
  echo "| a dead server until traffic flows through another (s) | $(jq -r .median_s <<<"$FAILOVER_JSON") | $(jq -r '.runs_s | map(tostring) | join(", ")' <<<"$FAILOVER_JSON") |"
fi
echo
echo "Raw numbers: ${out#"$ROOT"/}"
