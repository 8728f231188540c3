#!/usr/bin/env bash
# The desktop app's memory on a live tunnel: in the tray (started --hidden, and with its window
# closed) and with the window open, as PSS and RSS of the app's processes (the tray process,
# underpass-tray, and the window process, underpass-gui, with all its WebKit processes); and how
# long reopening from the tray takes to show the helper's current state.
#
#   bench/app-memory.sh [--rounds N] [--settle S] [--gui PATH] [--json FILE]
#     --rounds N   close/reopen cycles (default 5); the figures are medians over them
#     --settle S   seconds in each state before it is sampled (default 8)
#     --gui PATH   the app binary (default $BIN_DIR/underpass-gui)
#     --json FILE  also write the raw numbers there (bench/bench.sh embeds them in its results)
#   env: UNDERPASS_BIN_DIR (default ${CARGO_TARGET_DIR:-<repo>/target}/release) holds underpassd,
#        underpass, underpass-gui and underpass-tray: the release build with the front end
#        embedded:
#          npm run ui:build && cargo build --release -p underpassd -p underpass-cli \
#            -p underpass-gui --features tauri/custom-protocol
#
# Needs root (network namespaces), Xvfb, dbus-run-session and Debian's python3 gi + Xlib
# (scripts/install-deps.sh). Sandbox PREFIX "uam" (scripts/sandbox.sh), 1 server; run it under
# the shared lock: flock /tmp/underpass-e2e.lock bash bench/app-memory.sh
#
# The sequence, in one app run, under one Xvfb and one session bus with a tray host
# (tests/gui/desktop.py watcher) and the tray driven over D-Bus as a desktop does:
#   1. `underpass-gui --hidden` (the autostart entry) against the connected helper: it starts
#      the tray process and exits; settle -> sample "hidden"
#   2. tray "Show Underpass" (the tray starts the window process) -> first_open_ms; traffic;
#      settle -> sample "open"
#   3. N times: close the window (WM_DELETE_WINDOW, the title bar's x), which ends the window
#      process; settle -> sample "tray"; tray "Show Underpass" -> reopen_ms; traffic; settle
#      -> sample "open"
# A sample sums /proc/PID/smaps_rollup (Pss, Rss) over the app's processes (those on this
# bench's session bus) and their descendants (the WebKit processes), and breaks the tray
# process's and the window process's own PSS down by mapping (/proc/PID/smaps: each library
# by file name, the heap, anonymous memory; the 25 largest). Reopen time: from the D-Bus click to the app's log line
# "window ready", which the front end triggers once it has rendered the helper's state
# (src-tauri/src/window/mod.rs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=uam
DESKTOP="$ROOT/tests/gui/desktop.py"
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/sbin:/usr/sbin:/sbin"

rounds=5 settle=8 gui="" json_out=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=${2:?}; shift 2 ;;
    --settle) settle=${2:?}; shift 2 ;;
    --gui) gui=${2:?}; shift 2 ;;
    --json) json_out=${2:?}; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "app-memory: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] && [ "$rounds" -le 50 ] || { echo "app-memory: --rounds 1..50" >&2; exit 2; }
[[ $settle =~ ^[0-9]+$ ]] && [ "$settle" -le 120 ] || { echo "app-memory: --settle 0..120" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "app-memory: must run as root (network namespaces)" >&2; exit 1; }
for t in ip wireguard-go jq Xvfb xdpyinfo dbus-run-session gdbus setsid timeout; do
  command -v "$t" >/dev/null || { echo "app-memory: $t missing: run scripts/install-deps.sh" >&2; exit 1; }
done
BIN_DIR=${UNDERPASS_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
case $BIN_DIR in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
gui=${gui:-$BIN_DIR/underpass-gui}
for b in "$BIN_DIR/underpassd" "$BIN_DIR/underpass" "$gui" "$(dirname "$gui")/underpass-tray"; do
  [ -x "$b" ] || { echo "app-memory: $b not built (see --help)" >&2; exit 1; }
done

log() { printf 'app-memory: %s\n' "$*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

WORK=$(mktemp -d /tmp/underpass-app-memory.XXXXXX)
SANDBOX_DIR="$ROOT/.sandbox/$PREFIX"
pids=()  # Xvfb, the helper
session=""  # process group of the session bus (tray host, notification server)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in $(app_pids 2>/dev/null) "${pids[@]+"${pids[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "$session" ] && kill -TERM -- "-$session" 2>/dev/null || true
  for p in "${pids[@]+"${pids[@]}"}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  bash "$ROOT/scripts/sandbox.sh" down "$PREFIX" --dir "$SANDBOX_DIR" >/dev/null 2>&1 || true
  [ $rc -ne 0 ] && [ -s "$WORK/app.log" ] && { log "last lines of the app's log:"; tail -n 15 "$WORK/app.log" >&2; }
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- a live tunnel
log "sandbox up ($PREFIX) and the helper connected"
bash "$ROOT/scripts/sandbox.sh" up "$PREFIX" --servers 1 --dir "$SANDBOX_DIR" >/dev/null
# shellcheck disable=SC1091
. "$SANDBOX_DIR/env.sh"
SOCK="$SANDBOX_DIR/underpassd.sock" CONFIG="$WORK/config"
mkdir -p "$SANDBOX_DIR/state" "$CONFIG"
ip netns exec "$NS_CLIENT" "$BIN_DIR/underpassd" --socket "$SOCK" --state-dir "$SANDBOX_DIR/state" \
  </dev/null >"$WORK/underpassd.log" 2>&1 &
pids+=($!)
echo "$!" >"$SANDBOX_DIR/underpassd.pid"  # sandbox.sh down stops it too
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { log "underpassd did not start"; tail -5 "$WORK/underpassd.log" >&2; exit 1; }
cli() { UNDERPASS_KEYSTORE=file timeout 20 ip netns exec "$NS_CLIENT" "$BIN_DIR/underpass" --socket "$SOCK" --config-dir "$CONFIG" "$@"; }
cli import "$PROFILE_1" >"$WORK/import.log" 2>&1 || { log "import failed"; cat "$WORK/import.log" >&2; exit 1; }
cli connect --timeout 10 >"$WORK/connect.log" 2>&1 || { log "connect failed"; cat "$WORK/connect.log" >&2; exit 1; }
traffic() { ip netns exec "$NS_CLIENT" ping -q -c 10 -i 0.2 -s 1000 "$INET_ADDR4_1" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- the desktop: X, bus, tray host
disp=""
for n in $(seq 140 180); do
  [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ] || { disp=$n; break; }
done
[ -n "$disp" ] || { log "no free X display number"; exit 1; }
Xvfb ":$disp" -screen 0 1280x900x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$disp"
for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
xdpyinfo >/dev/null 2>&1 || { log "Xvfb did not start"; exit 1; }
mkdir -p "$WORK/home" "$WORK/xdg"; chmod 700 "$WORK/xdg"
setsid dbus-run-session -- bash -c '
  echo "$DBUS_SESSION_BUS_ADDRESS" >"$0/bus.tmp" && mv "$0/bus.tmp" "$0/bus"
  /usr/bin/python3 -m dbusmock --session --template notification_daemon >/dev/null 2>&1 &
  exec /usr/bin/python3 "$1" watcher "$0/tray.jsonl"' "$WORK" "$DESKTOP" >"$WORK/session.log" 2>&1 &
session=$!
for _ in $(seq 100); do [ -s "$WORK/bus" ] && break; sleep 0.1; done
[ -s "$WORK/bus" ] || { log "no session bus"; exit 1; }
export DBUS_SESSION_BUS_ADDRESS; DBUS_SESSION_BUS_ADDRESS=$(cat "$WORK/bus")
timeout 10 gdbus wait --session org.kde.StatusNotifierWatcher || { log "no tray host"; exit 1; }
desk() { timeout 20 /usr/bin/python3 "$DESKTOP" "$@"; }

# ---------------------------------------------------------------- sampling
descendants() {  # PID and every process below it
  local c
  echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done
}
app_pids() {  # the app's processes on this bench's session bus, and their descendants
  local p
  for p in $(pgrep -x 'underpass-(gui|tray)' || true); do
    if tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -xF "DBUS_SESSION_BUS_ADDRESS=${DBUS_SESSION_BUS_ADDRESS:-none}" >/dev/null; then
      descendants "$p"
    fi
  done | sort -un
}
tray_pid() {
  local p
  for p in $(app_pids); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = underpass-tray ]; then echo "$p"; fi
  done
}
by_mapping() {  # by_mapping PID: its PSS by mapping, the 25 largest, as JSON ([] for no PID)
  [ -n "$1" ] || { echo '[]'; return; }
  awk '/^[0-9a-f]+-[0-9a-f]+ / {n = split($6, part, "/"); name = (NF >= 6 ? part[n] : "[anonymous]")}
      /^Pss:/ {pss[name] += $2}
      END {for (m in pss) if (pss[m] > 0) printf "%s\t%.2f\n", m, pss[m] / 1024}' "/proc/$1/smaps" 2>/dev/null |
    sort -t$'\t' -k2,2 -rn | head -n 25 | jq -Rsc 'split("\n") | map(select(. != "") | split("\t") | {mapping: .[0], pss_mib: (.[1] | tonumber)})'
}
sample() {  # sample STATE: one JSON object, the app and its processes now
  local p name pss rss rows=() tray
  tray=$(tray_pid)
  for p in $(app_pids); do
    name=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    read -r pss rss < <(awk '$1 == "Pss:" {p = $2} $1 == "Rss:" {r = $2} END {print p + 0, r + 0}' \
      "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    rows+=("$name $pss $rss")
  done
  local window
  window=$(for p in $(app_pids); do if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = underpass-gui ]; then echo "$p"; fi; done | head -n1)
  printf '%s\n' "${rows[@]}" | jq -Rsc --arg state "$1" --argjson tray "$(by_mapping "$tray")" \
    --argjson window "$(by_mapping "$window")" '
    split("\n") | map(select(. != "") | split(" ") | {name: .[0], pss_mib: ((.[1]|tonumber) / 1024), rss_mib: ((.[2]|tonumber) / 1024)})
    | {state: $state, pss_mib: (map(.pss_mib) | add), rss_mib: (map(.rss_mib) | add),
       webkit_processes: (map(select(.name | startswith("WebKit"))) | length), processes: .,
       tray_by_mapping: $tray, window_by_mapping: $window}' >>"$WORK/samples.jsonl"
  log "$1: PSS $(tail -n1 "$WORK/samples.jsonl" | jq -r '.pss_mib | floor') MiB, RSS $(tail -n1 "$WORK/samples.jsonl" | jq -r '.rss_mib | floor') MiB, $(tail -n1 "$WORK/samples.jsonl" | jq -r '[.processes[].name] | join(" ")')"
}
window_gone() {  # no window process and no WebKit process is left
  local p
  for p in $(app_pids); do [[ $(cat "/proc/$p/comm" 2>/dev/null) == @(underpass-gui|WebKit*) ]] && return 1; done
  return 0
}
ready_count() { grep -c "window ready" "$WORK/app.log" 2>/dev/null || true; }

# Clicks the tray's "Show Underpass" and prints the ms until the window showed the helper's
# state (the app's "window ready" line), or "null" after 15 s.
show_ms() {
  local before t0 k
  before=$(ready_count)
  t0=$(now_ms)
  desk tray-click "$WORK/tray.jsonl" "Show Underpass"
  for ((k = 0; k < 1500; k++)); do
    [ "$(ready_count)" -gt "$before" ] && { echo $(($(now_ms) - t0)); return; }
    sleep 0.01
  done
  log "the window did not report ready within 15 s"
  echo null
}

# ---------------------------------------------------------------- the run
log "app: $gui (display :$disp)"
env HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/xdg" NO_AT_BRIDGE=1 \
  UNDERPASS_SOCKET="$SOCK" UNDERPASS_CONFIG_DIR="$CONFIG" UNDERPASS_KEYSTORE=file \
  "$gui" --hidden </dev/null >"$WORK/app.log" 2>&1 &
for _ in $(seq 100); do [ -s "$WORK/tray.jsonl" ] && break; sleep 0.1; done
[ -s "$WORK/tray.jsonl" ] || { log "the app registered no tray icon"; exit 1; }
sleep "$settle"
sample hidden
first_open=$(show_ms)
traffic; sleep "$settle"
sample open
reopen=()
for ((r = 1; r <= rounds; r++)); do
  desk close Underpass
  for _ in $(seq 100); do window_gone && break; sleep 0.1; done
  sleep "$settle"
  sample tray
  reopen+=("$(show_ms)")
  log "round $r: reopened in ${reopen[-1]} ms"
  traffic; sleep "$settle"
  sample open
done
[ -n "$(tray_pid)" ] || { log "the tray exited"; exit 1; }

# ---------------------------------------------------------------- results
result=$(jq -sc --arg gui "$gui" --arg date "$(date -u +%FT%TZ)" --argjson rounds "$rounds" \
  --argjson settle "$settle" --argjson first "$first_open" \
  --argjson reopen "$(printf '%s\n' "${reopen[@]}" | jq -sc .)" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def state($s): map(select(.state == $s)) as $x
    | {median_pss_mib: ($x | map(.pss_mib) | median), median_rss_mib: ($x | map(.rss_mib) | median),
       max_webkit_processes: ($x | map(.webkit_processes) | max), samples: $x};
  {date: $date, gui: $gui, rounds: $rounds, settle_s: $settle,
   hidden: state("hidden"), tray: state("tray"), open: state("open"),
   first_open_ms: $first,
   reopen_ms: {median: ($reopen | map(select(. != null)) | median), runs: $reopen}}' "$WORK/samples.jsonl")
[ -n "$json_out" ] && echo "$result" >"$json_out"
fmt() { jq -r "$1 | if . == null then \"–\" else (. * 10 | round / 10 | tostring) end" <<<"$result"; }
echo "Desktop app (underpass-tray, underpass-gui and its WebKit processes, release build, Xvfb, live tunnel), MiB, medians of $rounds rounds:"
echo
echo "| state | PSS | RSS | WebKit processes |"
echo "|---|---:|---:|---:|"
echo "| tray, started --hidden | $(fmt .hidden.median_pss_mib) | $(fmt .hidden.median_rss_mib) | $(fmt .hidden.max_webkit_processes) |"
echo "| tray, window closed | $(fmt .tray.median_pss_mib) | $(fmt .tray.median_rss_mib) | $(fmt .tray.max_webkit_processes) |"
echo "| window open | $(fmt .open.median_pss_mib) | $(fmt .open.median_rss_mib) | $(fmt .open.max_webkit_processes) |"
echo
echo "Reopening from the tray to the helper's state: $(fmt .reopen_ms.median) ms median (runs: $(jq -r '.reopen_ms.runs | map(tostring) | join(", ")' <<<"$result") ms); first open after --hidden: $(fmt .first_open_ms) ms."
echo
echo "The tray process's own PSS (window closed, last sample), by mapping, the largest 12:"
echo
echo "| mapping | PSS (MiB) |"
echo "|---|---:|"
jq -r '.tray.samples[-1].tray_by_mapping // [] | .[:12][] | "| \(.mapping) | \(.pss_mib * 10 | round / 10) |"' <<<"$result"
echo
echo "The window process's own PSS (window open, last sample), by mapping, the largest 12:"
echo
echo "| mapping | PSS (MiB) |"
echo "|---|---:|"
jq -r '.open.samples[-1].window_by_mapping // [] | .[:12][] | "| \(.mapping) | \(.pss_mib * 10 | round / 10) |"' <<<"$result"
