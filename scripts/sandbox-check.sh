#!/usr/bin/env bash
# Self-test of scripts/sandbox.sh: brings up a sandbox, runs a stock wireguard-go client in its
# client namespace against server 1, checks v4/v6 through the tunnel and outside it, runs a second
# sandbox beside it, tears both down and checks nothing is left. Needs root. ~5 s.
#
#   scripts/sandbox-check.sh [PREFIX]     (default PREFIX: usc; the second sandbox is PREFIX + "b")
#
# Ends with the line "N passed, N failed"; exit status 0 only if nothing failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB="$ROOT/scripts/sandbox.sh"
P=${1:-usc}
P2="${P}b"
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$1"; }
check() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi; }

cleanup() { bash "$SB" down "$P" >/dev/null 2>&1; bash "$SB" down "$P2" >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "sandbox-check: needs root"; echo "0 passed, 1 failed"; exit 1; }

t0=$SECONDS
if bash "$SB" up "$P" --servers 3 2>/dev/null; then ok "up $P with 3 servers"; else
  bad "up $P with 3 servers"; echo "$pass passed, $fail failed"; exit 1
fi
# shellcheck disable=SC1090
. "$ROOT/.sandbox/$P/env.sh"
check "env.sh names the client namespace" test "$NS_CLIENT" = "$P-c"
check "three profiles with provider-like names" test -f "$SANDBOX_DIR/se-sto-wg-001.conf" -a \
  -f "$SANDBOX_DIR/de-fra-wg-001.conf" -a -f "$SANDBOX_DIR/us-nyc-wg-001.conf"
check "profile 2 has the right endpoint and key" bash -c \
  "grep -qx 'Endpoint = 192.0.2.18:51820' '$PROFILE_2' && grep -qx 'PublicKey = $SERVER_PUB_2' '$PROFILE_2' \
   && grep -qx 'PrivateKey = $(cat "$CLIENT_KEY_FILE")' '$PROFILE_2' && grep -qx 'DNS = 10.64.2.1' '$PROFILE_2'"
check "client ns has a private resolv.conf" test -f "/etc/netns/$NS_CLIENT/resolv.conf"
check "server 2 reachable outside the tunnel (v4)" ip netns exec "$NS_CLIENT" ping -c1 -W2 "$INET_ADDR4_2"
check "server 2 reachable outside the tunnel (v6)" ip netns exec "$NS_CLIENT" ping -6 -c1 -W2 "$INET_ADDR6_2"
check "server 1 endpoint reachable" ip netns exec "$NS_CLIENT" ping -c1 -W2 "$SERVER_ADDR4_1"

# stock wireguard-go client in the client ns
IF=$CLIENT_WG_IF
setsid ip netns exec "$NS_CLIENT" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
  wireguard-go -f "$IF" </dev/null >/dev/null 2>&1 &
for ((k = 0; k < 200; k++)); do [ -S "/var/run/wireguard/$IF.sock" ] && break; sleep 0.05; done
check "client wireguard-go started" test -S "/var/run/wireguard/$IF.sock"
ip netns exec "$NS_CLIENT" wg set "$IF" private-key "$CLIENT_KEY_FILE" \
  peer "$SERVER_PUB_1" endpoint "$SERVER_ENDPOINT_1" allowed-ips 0.0.0.0/0,::/0
ip -n "$NS_CLIENT" addr add "$CLIENT_TUN_ADDR4_1/32" dev "$IF"
ip -n "$NS_CLIENT" -6 addr add "$CLIENT_TUN_ADDR6_1/128" dev "$IF" nodad
ip -n "$NS_CLIENT" link set "$IF" mtu 1420 up
ip -n "$NS_CLIENT" route add "$INET_NET4_1" dev "$IF"
ip -n "$NS_CLIENT" -6 route add "$INET_NET6_1" dev "$IF"
check "ping internet host 1 through the tunnel (v4)" ip netns exec "$NS_CLIENT" ping -c1 -W2 "$INET_ADDR4_1"
check "ping internet host 1 through the tunnel (v6)" ip netns exec "$NS_CLIENT" ping -6 -c1 -W2 "$INET_ADDR6_1"
hs=$(ip netns exec "$NS_SERVER_1" wg show "$SERVER_WG_IF_1" latest-handshakes | awk '{print $2}')
check "server 1 saw a handshake" test "${hs:-0}" -gt 0
rx=$(ip netns exec "$NS_SERVER_1" wg show "$SERVER_WG_IF_1" transfer | awk '{print $2}')
check "server 1 received tunnel traffic" test "${rx:-0}" -gt 0
check "internet host sees the inner address (no NAT)" ip netns exec "$NS_INET_1" ping -c1 -W2 "$CLIENT_TUN_ADDR4_1"

# a second sandbox coexists, and taking it down leaves the first alone
check "second sandbox $P2 comes up beside it" bash "$SB" up "$P2"
check "second sandbox's tunnel server answers its own client ns" \
  ip netns exec "$P2-c" ping -c1 -W2 198.18.1.2
bash "$SB" down "$P2" >/dev/null 2>&1
check "down $P2 leaves $P's tunnel working" ip netns exec "$NS_CLIENT" ping -c1 -W2 "$INET_ADDR4_1"

# teardown
check "down $P" bash "$SB" down "$P"
check "no namespaces left" bash -c "! ip netns list | grep -Eq '^($P|$P2)-'"
check "no UAPI sockets left" bash -c "! ls /var/run/wireguard/ 2>/dev/null | grep -Eq '^($P|$P2)'"
check "no /etc/netns entries left" bash -c "! ls /etc/netns/ 2>/dev/null | grep -Eq '^($P|$P2)-'"
sleep 0.2
check "no wireguard-go of the sandbox left" bash -c "! pgrep -f 'wireguard-go -f ($P|$P2)(wg|cwg)' | \
  xargs -r -I{} sh -c 'grep -q \"^State:.*Z\" /proc/{}/status || echo {}' | grep -q ."
check "down again is a no-op" bash "$SB" down "$P"
echo "sandbox-check: $((SECONDS - t0)) s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
