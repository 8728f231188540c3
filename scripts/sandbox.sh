#!/usr/bin/env bash
# Underpass test ground: a self-contained set of network namespaces.
#
#   scripts/sandbox.sh up PREFIX [--servers N] [--guest] [--uplink2] [--dir DIR]
#   scripts/sandbox.sh down PREFIX [--dir DIR]
#   scripts/sandbox.sh status PREFIX
#
#  [PREFIX-c: client] --veth-- [PREFIX-r: router] --veth-- [PREFIX-sI: wireguard-go server I]
#                                                                --veth-- [PREFIX-iI: "internet" host I]
#
# Everything lives in namespaces this script creates; nothing is routed outside them.
# Addresses are documentation / private ranges that exist only inside the sandbox:
#   client  198.51.100.2/24  2001:db8:c::2/64          (router .1 / ::1)
#   server I 192.0.2.(8I+2)/29  2001:db8:I::2/64       (router 192.0.2.(8I+1), 2001:db8:I::1)
#            tunnel 10.64.I.1/24  fd00:64:I::1/64, UDP 51820, one peer: the sandbox client key
#   inet I  198.18.I.2/24  2001:db8:100:I::2/64        (server side .1 / ::1)
# The inner tunnel addresses (10.64.I.2, fd00:64:I::2) are routed without NAT.
# --guest adds [PREFIX-g: guest] --veth-- [client], routed and masqueraded by the client as
# Docker does for its containers: guest 172.30.9.2/24 fd30:9::2/64, client side .1 / ::1.
# --uplink2 adds a second uplink from the client to the router (another Wi-Fi, a cable), with
# no route over it yet: client PREFIX-c1 203.0.113.2/24 2001:db8:d::2/64, router PREFIX-rd .1 / ::1.
#
# `up` writes into DIR (default REPO/.sandbox/PREFIX): client.key, client.pub, serverI.key/.pub,
# one wg-quick profile per server (se-sto-wg-001.conf, de-fra-wg-001.conf, us-nyc-wg-001.conf, ...),
# and env.sh (variables for callers to source; see the end of cmd_up).
# The client ns gets its own /etc/netns/PREFIX-c/resolv.conf (nameserver 198.51.100.1), so
# anything started with `ip netns exec PREFIX-c` that rewrites /etc/resolv.conf touches that
# file, never the host's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WG_RUN_DIR=/var/run/wireguard
MAX_SERVERS=30
CITIES=(se-sto de-fra us-nyc nl-ams gb-lon ch-zrh jp-tyo ca-tor au-syd fr-par)

log() { printf 'sandbox: %s\n' "$*" >&2; }
die() { printf 'sandbox: error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/sandbox.sh up PREFIX [--servers N] [--guest] [--uplink2] [--dir DIR]
       scripts/sandbox.sh down PREFIX [--dir DIR]
       scripts/sandbox.sh status PREFIX
PREFIX: 1-8 chars, [a-z][a-z0-9]*  (all netns/link names derive from it, <= 15 chars)
N: 1..30 servers (default 1)   DIR: default <repo>/.sandbox/PREFIX
EOF
  exit 2
}

# Profile file name for server I: se-sto-wg-001, de-fra-wg-001, us-nyc-wg-001, ... then -002.
profile_name() {
  local i=$1 n=${#CITIES[@]}
  printf '%s-wg-%03d.conf' "${CITIES[$(((i - 1) % n))]}" $(((i - 1) / n + 1))
}

ns_run() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Bounded wait: wait_for SECONDS DESCRIPTION CMD...
wait_for() {
  local secs=$1 what=$2; shift 2
  local tries=$((secs * 20)) k
  for ((k = 0; k < tries; k++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  die "timed out after ${secs}s waiting for $what"
}

link_up() { ip -n "$1" link show "$2" 2>/dev/null | grep -q 'LOWER_UP'; }
no_tentative() { [ -z "$(ip -n "$1" -6 addr show tentative 2>/dev/null)" ]; }

# Namespaces that belong to PREFIX (exact pattern, so prefix "ub" never matches "ubn-...").
sandbox_namespaces() {
  local p=$1
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}-(c|r|g|s[0-9]+|i[0-9]+)\$" || true
}

new_ns() {
  local ns=$1 forward=$2
  ip netns add "$ns"
  ns_run "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ns_run "$ns" sysctl -qw net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0
  ns_run "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
  if [ "$forward" = 1 ]; then
    ns_run "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ns_run "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  fi
  ip -n "$ns" link set lo up
}

# veth NS_A IF_A NS_B IF_B : create the pair directly in both namespaces, bring both up.
veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

# alive PID: running and not a zombie (an orphan's zombie can linger until PID 1 reaps it)
alive() {
  local st
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

kill_pids() {  # kill_pids PID... : TERM, bounded wait, then KILL
  local pids=("$@") k live p
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((k = 0; k < 60; k++)); do
    live=()
    for p in "${pids[@]}"; do alive "$p" && live+=("$p"); done
    [ ${#live[@]} -eq 0 ] && return 0
    sleep 0.05
  done
  log "killing (SIGKILL) pids still alive after 3s: ${live[*]}"
  kill -KILL "${live[@]}" 2>/dev/null || true
  for ((k = 0; k < 40; k++)); do
    local rest=()
    for p in "${live[@]}"; do alive "$p" && rest+=("$p"); done
    [ ${#rest[@]} -eq 0 ] && return 0
    sleep 0.05
  done
  log "warning: pids survived SIGKILL: ${rest[*]}"
}

cmd_down() {
  local p=$1 dir=$2 nss pids=() ns f pid
  nss=$(sandbox_namespaces "$p")
  # 1. every process inside the sandbox namespaces (wireguard-go, iperf3, dnsmasq, underpassd, ...)
  for ns in $nss; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$pid"); done
  done
  # 2. pidfiles written by callers into DIR (processes that may live outside the namespaces)
  if [ -d "$dir" ]; then
    for f in "$dir"/*.pid; do
      [ -f "$f" ] || continue
      pid=$(head -n1 "$f" 2>/dev/null | tr -dc 0-9)
      [ -n "$pid" ] && alive "$pid" && pids+=("$pid")
      rm -f "$f"
    done
    rm -f "$dir"/*.pid.tmp
  fi
  kill_pids "${pids[@]}"
  # 3. namespaces (links inside die with them)
  for ns in $nss; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/${p}-c"
  # 4. stale UAPI sockets: only those with no listener (wg-tools unlinks a refused socket itself;
  #    a live one with a colliding name belongs to someone else and is kept)
  for f in "$WG_RUN_DIR/${p}"*.sock; do
    [ -S "$f" ] || continue
    local name; name=$(basename "$f" .sock)
    if ! timeout 2 wg show "$name" >/dev/null 2>&1; then rm -f "$f"; fi
  done
  [ -n "$nss" ] && log "down: $p removed ($(echo $nss | tr '\n' ' '))"
  return 0
}

# A guest behind the client (a container, a VM, a routed namespace): the client forwards for
# it and masquerades it on every other interface, like Docker's POSTROUTING MASQUERADE.
add_guest() {
  local p=$1 c="$1-c" g="$1-g"
  new_ns "$g" 0
  veth "$g" "${p}-g0" "$c" "${p}-cg"
  ip -n "$g" addr add 172.30.9.2/24 dev "${p}-g0"
  ip -n "$g" -6 addr add fd30:9::2/64 dev "${p}-g0" nodad
  ip -n "$c" addr add 172.30.9.1/24 dev "${p}-cg"
  ip -n "$c" -6 addr add fd30:9::1/64 dev "${p}-cg" nodad
  ip -n "$g" route add default via 172.30.9.1
  ip -n "$g" -6 route add default via fd30:9::1
  ns_run "$c" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ns_run "$c" nft -f - <<EOF
table inet ${p}_guest {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.30.9.0/24 oifname != "${p}-cg" masquerade
    ip6 saddr fd30:9::/64 oifname != "${p}-cg" masquerade
  }
}
EOF
  wait_for 10 "guest veth" link_up "$g" "${p}-g0"
}

# A second uplink from the client to the router, up and addressed; the default routes stay on
# the first until a test moves them.
add_uplink2() {
  local p=$1 c="$1-c" r="$1-r"
  veth "$c" "${p}-c1" "$r" "${p}-rd"
  ip -n "$c" addr add 203.0.113.2/24 dev "${p}-c1"
  ip -n "$c" -6 addr add 2001:db8:d::2/64 dev "${p}-c1" nodad
  ip -n "$r" addr add 203.0.113.1/24 dev "${p}-rd"
  ip -n "$r" -6 addr add 2001:db8:d::1/64 dev "${p}-rd" nodad
  wait_for 10 "second client veth" link_up "$c" "${p}-c1"
  wait_for 10 "second router veth" link_up "$r" "${p}-rd"
}

cmd_up() {
  local p=$1 n=$2 dir=$3 guest=$4 uplink2=$5 i
  local c="${p}-c" r="${p}-r"
  cmd_down "$p" "$dir"
  for tool in ip wg wireguard-go sysctl timeout; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -f "$dir"/*.conf "$dir"/*.key "$dir"/*.pub "$dir"/env.sh "$dir"/wg-*.log
  touch "$dir/.underpass-sandbox"

  # If anything below fails, leave nothing half-built behind.
  trap "rc=\$?; if [ \$rc -ne 0 ]; then log \"up failed (rc=\$rc); tearing down\"; cmd_down $(printf %q "$p") $(printf %q "$dir"); fi" EXIT

  (umask 077; wg genkey >"$dir/client.key")
  wg pubkey <"$dir/client.key" >"$dir/client.pub"
  local client_pub; client_pub=$(cat "$dir/client.pub")

  # client + router
  new_ns "$c" 0
  new_ns "$r" 1
  veth "$c" "${p}-c0" "$r" "${p}-rc"
  ip -n "$c" addr add 198.51.100.2/24 dev "${p}-c0"
  ip -n "$c" -6 addr add 2001:db8:c::2/64 dev "${p}-c0" nodad
  ip -n "$r" addr add 198.51.100.1/24 dev "${p}-rc"
  ip -n "$r" -6 addr add 2001:db8:c::1/64 dev "${p}-rc" nodad
  mkdir -p "/etc/netns/$c"
  printf '# Underpass sandbox %s: the "ISP" resolver would live on the router\nnameserver 198.51.100.1\n' "$p" \
    >"/etc/netns/$c/resolv.conf"

  local env_servers="" env_profiles=""
  for ((i = 1; i <= n; i++)); do
    local s="${p}-s$i" h="${p}-i$i" wgif="${p}wg$i"
    local r4="192.0.2.$((8 * i + 1))" s4="192.0.2.$((8 * i + 2))"
    local r6="2001:db8:$i::1" s6="2001:db8:$i::2"
    new_ns "$s" 1
    new_ns "$h" 0
    veth "$r" "${p}-r$i" "$s" "${p}-s$i"
    ip -n "$r" addr add "$r4/29" dev "${p}-r$i"
    ip -n "$r" -6 addr add "$r6/64" dev "${p}-r$i" nodad
    ip -n "$s" addr add "$s4/29" dev "${p}-s$i"
    ip -n "$s" -6 addr add "$s6/64" dev "${p}-s$i" nodad
    ip -n "$s" route add default via "$r4"
    ip -n "$s" -6 route add default via "$r6"
    # server <-> internet host
    veth "$s" "${p}-s${i}i" "$h" "${p}-i$i"
    ip -n "$s" addr add "198.18.$i.1/24" dev "${p}-s${i}i"
    ip -n "$s" -6 addr add "2001:db8:100:$i::1/64" dev "${p}-s${i}i" nodad
    ip -n "$h" addr add "198.18.$i.2/24" dev "${p}-i$i"
    ip -n "$h" -6 addr add "2001:db8:100:$i::2/64" dev "${p}-i$i" nodad
    ip -n "$h" route add 10.64.0.0/16 via "198.18.$i.1"
    ip -n "$h" -6 route add fd00:64::/32 via "2001:db8:100:$i::1"
    ip -n "$h" route add default via "198.18.$i.1"
    ip -n "$h" -6 route add default via "2001:db8:100:$i::1"
    # router: internet host I is reachable outside the tunnel via server I
    ip -n "$r" route add "198.18.$i.0/24" via "$s4"
    ip -n "$r" -6 route add "2001:db8:100:$i::/64" via "$s6"

    # wireguard-go server
    (umask 077; wg genkey >"$dir/server$i.key")
    wg pubkey <"$dir/server$i.key" >"$dir/server$i.pub"
    [ -S "$WG_RUN_DIR/$wgif.sock" ] && timeout 2 wg show "$wgif" >/dev/null 2>&1 &&
      die "$WG_RUN_DIR/$wgif.sock is in use by another process: pick another PREFIX"
    setsid ip netns exec "$s" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=error \
      wireguard-go -f "$wgif" </dev/null >"$dir/wg-s$i.log" 2>&1 &
    echo $! >"$dir/wg-s$i.pid.tmp"  # renamed below; down sweeps the netns anyway
    wait_for 10 "wireguard-go $wgif UAPI socket" test -S "$WG_RUN_DIR/$wgif.sock"
    wait_for 10 "interface $wgif" ip -n "$s" link show "$wgif"
    ns_run "$s" wg set "$wgif" private-key "$dir/server$i.key" listen-port 51820 \
      peer "$client_pub" allowed-ips "10.64.$i.2/32,fd00:64:$i::2/128"
    ip -n "$s" link set "$wgif" mtu 1420 up
    ip -n "$s" addr add "10.64.$i.1/24" dev "$wgif"
    ip -n "$s" -6 addr add "fd00:64:$i::1/64" dev "$wgif" nodad
    mv "$dir/wg-s$i.pid.tmp" "$dir/wg-s$i.pid"

    local prof; prof=$(profile_name "$i")
    cat >"$dir/$prof" <<EOF
[Interface]
PrivateKey = $(cat "$dir/client.key")
Address = 10.64.$i.2/32, fd00:64:$i::2/128
DNS = 10.64.$i.1

[Peer]
PublicKey = $(cat "$dir/server$i.pub")
Endpoint = $s4:51820
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
EOF
    chmod 600 "$dir/$prof"
    env_servers+="$s "
    env_profiles+="$dir/$prof "
  done

  ip -n "$c" route add default via 198.51.100.1
  ip -n "$c" -6 route add default via 2001:db8:c::1
  if [ "$guest" = 1 ]; then add_guest "$p"; fi
  if [ "$uplink2" = 1 ]; then add_uplink2 "$p"; fi

  # links up, no tentative addresses
  wait_for 10 "client veth" link_up "$c" "${p}-c0"
  wait_for 10 "router veth" link_up "$r" "${p}-rc"
  for ((i = 1; i <= n; i++)); do
    wait_for 10 "router->server $i veth" link_up "$r" "${p}-r$i"
    wait_for 10 "server $i veth" link_up "${p}-s$i" "${p}-s$i"
    wait_for 10 "server $i -> inet veth" link_up "${p}-s$i" "${p}-s${i}i"
    wait_for 10 "inet $i veth" link_up "${p}-i$i" "${p}-i$i"
  done
  for ns in $(sandbox_namespaces "$p"); do wait_for 10 "IPv6 DAD in $ns" no_tentative "$ns"; done

  # env.sh
  {
    echo "# Generated by scripts/sandbox.sh up $p --servers $n; source it from bash or sh."
    echo "SANDBOX_PREFIX='$p'"
    echo "SANDBOX_DIR='$dir'"
    echo "SANDBOX_SERVERS=$n"
    echo "NS_CLIENT='$c'"
    echo "NS_ROUTER='$r'"
    echo "NS_SERVERS='${env_servers% }'"
    echo "NS_INETS='$(for ((i = 1; i <= n; i++)); do printf '%s ' "${p}-i$i"; done | sed 's/ $//')'"
    echo "CLIENT_IF='${p}-c0'"
    echo "CLIENT_ADDR4='198.51.100.2'"
    echo "CLIENT_ADDR6='2001:db8:c::2'"
    echo "ROUTER_IF='${p}-rc'"
    echo "ROUTER_ADDR4='198.51.100.1'"
    echo "ROUTER_ADDR6='2001:db8:c::1'"
    echo "CLIENT_KEY_FILE='$dir/client.key'"
    echo "CLIENT_PUB='$client_pub'"
    echo "CLIENT_WG_IF='${p}cwg'   # suggested name for a userspace client interface in NS_CLIENT"
    echo "PROFILES='${env_profiles% }'"
    if [ "$guest" = 1 ]; then
      echo "NS_GUEST='${p}-g'"
      echo "GUEST_ADDR4='172.30.9.2'"
      echo "GUEST_ADDR6='fd30:9::2'"
    fi
    if [ "$uplink2" = 1 ]; then
      echo "CLIENT_IF_2='${p}-c1'"
      echo "CLIENT_ADDR4_2='203.0.113.2'"
      echo "CLIENT_ADDR6_2='2001:db8:d::2'"
      echo "ROUTER_IF_2='${p}-rd'"
      echo "ROUTER_ADDR4_2='203.0.113.1'"
      echo "ROUTER_ADDR6_2='2001:db8:d::1'"
    fi
    for ((i = 1; i <= n; i++)); do
      echo "# server $i"
      echo "NS_SERVER_$i='${p}-s$i'"
      echo "NS_INET_$i='${p}-i$i'"
      echo "SERVER_WG_IF_$i='${p}wg$i'"
      echo "SERVER_PUB_$i='$(cat "$dir/server$i.pub")'"
      echo "SERVER_KEY_FILE_$i='$dir/server$i.key'"
      echo "SERVER_ADDR4_$i='192.0.2.$((8 * i + 2))'"
      echo "SERVER_ADDR6_$i='2001:db8:$i::2'"
      echo "SERVER_ENDPOINT_$i='192.0.2.$((8 * i + 2)):51820'"
      echo "SERVER_TUN_ADDR4_$i='10.64.$i.1'"
      echo "SERVER_TUN_ADDR6_$i='fd00:64:$i::1'"
      echo "CLIENT_TUN_ADDR4_$i='10.64.$i.2'"
      echo "CLIENT_TUN_ADDR6_$i='fd00:64:$i::2'"
      echo "INET_ADDR4_$i='198.18.$i.2'"
      echo "INET_ADDR6_$i='2001:db8:100:$i::2'"
      echo "INET_NET4_$i='198.18.$i.0/24'"
      echo "INET_NET6_$i='2001:db8:100:$i::/64'"
      echo "PROFILE_$i='$dir/$(profile_name "$i")'"
    done
  } >"$dir/env.sh"
  trap - EXIT
  log "up: $p with $n server(s); env in $dir/env.sh"
}

cmd_status() {
  local p=$1 ns
  for ns in $(sandbox_namespaces "$p"); do
    echo "== $ns (pids: $(ip netns pids "$ns" | tr '\n' ' '))"
    ip -n "$ns" -br addr
    ns_run "$ns" wg show all 2>/dev/null | sed 's/^/  /' || true
  done
  ls -l "$WG_RUN_DIR"/"$p"*.sock 2>/dev/null || true
}

[ $# -ge 2 ] || usage
cmd=$1 prefix=$2; shift 2
[[ $prefix =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "PREFIX must match [a-z][a-z0-9]{0,7} (got '$prefix')"
servers=1 dir="" guest=0 uplink2=0
while [ $# -gt 0 ]; do
  case $1 in
    --servers) [ $# -ge 2 ] || usage; servers=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --guest) guest=1; shift ;;
    --uplink2) uplink2=1; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $servers =~ ^[0-9]+$ ]] && [ "$servers" -ge 1 ] && [ "$servers" -le $MAX_SERVERS ] ||
  die "--servers must be 1..$MAX_SERVERS"
[ -n "$dir" ] || dir="$ROOT/.sandbox/$prefix"
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

case $cmd in
  up) cmd_up "$prefix" "$servers" "$dir" "$guest" "$uplink2" ;;
  down) cmd_down "$prefix" "$dir" ;;
  status) cmd_status "$prefix" ;;
  *) usage ;;
esac
