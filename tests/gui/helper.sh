#!/usr/bin/env bash
# Starts or stops the sandbox's underpassd for the GUI test: tests/gui/helper.sh start|stop
# Needs SANDBOX_DIR (sandbox.sh's dir) and UNDERPASS_BIN_DIR in the environment.
set -euo pipefail
# shellcheck disable=SC1091
. "$SANDBOX_DIR/env.sh"
pidfile=$SANDBOX_DIR/underpassd.pid
sock=$SANDBOX_DIR/underpassd.sock
case $1 in
  start)
    ip netns exec "$NS_CLIENT" "$UNDERPASS_BIN_DIR/underpassd" --socket "$sock" \
      --state-dir "$SANDBOX_DIR/state" >>"$SANDBOX_DIR/underpassd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 200); do [ -S "$sock" ] && exit 0; sleep 0.05; done
    echo "underpassd did not start:" >&2; tail -20 "$SANDBOX_DIR/underpassd.log" >&2; exit 1 ;;
  stop)
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] || exit 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true; rm -f "$pidfile" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
