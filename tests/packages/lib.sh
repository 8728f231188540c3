# Shared by tests/packages/run.sh: a booted Debian 12 in systemd-nspawn, on a network of our own.
#
#   upk-srv  198.51.100.1   wireguard-go (upkwg0, 10.77.0.1), the tunnel's DNS (dnsmasq)
#      | veth
#   upk-wan  198.51.100.254 / 203.0.113.1   the "ISP": a router and its DNS (dnsmasq), and the
#      | ve-upk (nspawn's veth, moved here from the host at once)   capture point (tcpdump)
#   container "upk"  host0 203.0.113.2 (systemd-networkd), systemd, dbus, logind, resolved
#
# The host's own network is never touched: nspawn's host-side link goes straight into upk-wan.
# Runs as root; everything is named upk* (a prefix of its own) and torn down by pk_cleanup.

PK_MACHINE=upk
PK_WAN=upk-wan
PK_SRV=upk-srv
PK_CG=/sys/fs/cgroup/unified/underpass-pkg
PK_ENDPOINT=198.51.100.1
PK_PORT=51820
PK_LOG=${PK_LOG:-/tmp/underpass-pkg}
PK_LEADER=
PK_NSPAWN=

say() { printf 'packages: %s\n' "$*"; }
die() { printf 'packages: FAIL: %s\n' "$*" >&2; exit 1; }
wan() { ip netns exec "$PK_WAN" "$@"; }
srv() { ip netns exec "$PK_SRV" "$@"; }
# A command inside the container, as root with the host's privileges (setup and inspection).
inside() { nsenter -t "$PK_LEADER" -a "$@"; }
# A command as a container user with no login session (su-like: setpriv, no PAM).
as_user() {
  local user=$1; shift
  inside setpriv --reuid="$user" --regid="$user" --init-groups \
    env -i HOME="/home/$user" PATH=/usr/bin:/bin UNDERPASS_KEYSTORE=file "$@"
}
# A command as a container user in a fresh local logind session (PAM "login", no TTY, no
# host): what a login at the machine gives, as far as logind is concerned.
in_session() {
  local user=$1; shift
  inside systemd-run --wait --pipe --quiet --uid="$user" -p PAMName=login \
    -E HOME="/home/$user" -E UNDERPASS_KEYSTORE=file "$@"
}

# Unpacks the cached root file system into DIR, with what the DEBs depend on preinstalled, and
# prepares what boots with it: the uplink's static address (systemd-networkd, with the ISP's DNS
# for resolved), the dist/ bind.
#   pk_rootfs DIR DEB...
pk_rootfs() {
  local dir=$1; shift
  bash "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh" "$dir" "$@" >/dev/null
  mkdir -p "$dir/etc/systemd/network"
  cat >"$dir/etc/systemd/network/10-host0.network" <<NET
[Match]
Name=host0
[Network]
Address=203.0.113.2/24
Gateway=203.0.113.1
DNS=203.0.113.1
LinkLocalAddressing=ipv6
IPv6AcceptRA=no
NET
  systemctl --root="$dir" enable systemd-networkd.service >/dev/null 2>&1
  systemctl --root="$dir" enable systemd-resolved.service >/dev/null 2>&1
  echo "$PK_MACHINE" >"$dir/etc/hostname"
}

# The namespaces outside the container: the ISP router with its resolver, the VPN server.
pk_network() {
  local server_key=$1 client_pub=$2
  ip netns add "$PK_WAN"; ip netns add "$PK_SRV"
  wan ip link set lo up; srv ip link set lo up
  ip link add upk-rt type veth peer name upk-sv
  ip link set upk-rt netns "$PK_WAN"; ip link set upk-sv netns "$PK_SRV"
  wan ip addr add 198.51.100.254/24 dev upk-rt; wan ip link set upk-rt up
  srv ip addr add "$PK_ENDPOINT/24" dev upk-sv; srv ip link set upk-sv up
  srv ip route add default via 198.51.100.254
  wan sysctl -qw net.ipv4.ip_forward=1
  srv env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go upkwg0 >/dev/null 2>&1
  srv wg set upkwg0 listen-port "$PK_PORT" private-key <(echo "$server_key") \
    peer "$client_pub" allowed-ips 10.77.0.2/32
  srv ip addr add 10.77.0.1/24 dev upkwg0; srv ip link set upkwg0 up
  srv dnsmasq --conf-file=/dev/null --pid-file="$PK_LOG/dns-tunnel.pid" --interface=upkwg0 \
    --bind-interfaces --no-resolv --no-hosts --address=/test/10.77.0.1 --log-queries \
    --log-facility="$PK_LOG/dns-tunnel.log"
}

# The ISP's resolver, on the container's uplink (after nspawn made it).
pk_isp_dns() {
  wan dnsmasq --conf-file=/dev/null --pid-file="$PK_LOG/dns-isp.pid" --interface=ve-upk \
    --bind-interfaces --no-resolv --no-hosts --address=/test/203.0.113.1 --log-queries \
    --log-facility="$PK_LOG/dns-isp.log"
}

# Boots the container from DIR, in a cgroup and a private cgroup2 mount of its own (so that
# DevicePolicy= and IPAddressDeny= are enforced inside), moves its veth into upk-wan and waits
# for systemd to be up.
pk_boot() {
  local dir=$1
  mkdir -p "$PK_CG"
  unshare -m --propagation private sh -c "echo \$\$ >$PK_CG/cgroup.procs &&
    mount -t cgroup2 cgroup2 /sys/fs/cgroup &&
    exec systemd-nspawn -b -q -D $dir -M $PK_MACHINE --register=no --keep-unit --network-veth \
      --console=read-only --system-call-filter=bpf --resolv-conf=off \
      --bind-ro=$PK_LOG/dist:/dist" >>"$PK_LOG/console.log" 2>&1 &
  PK_NSPAWN=$!
  local i
  for i in $(seq 100); do
    PK_LEADER=$(pgrep -P "$PK_NSPAWN" -x systemd || true)
    ip link show ve-upk >/dev/null 2>&1 && [ -n "$PK_LEADER" ] && break
    sleep 0.1
  done
  ip link set ve-upk netns "$PK_WAN" 2>/dev/null || die "the container's veth never appeared"
  wan ip addr add 203.0.113.1/24 dev ve-upk
  wan ip link set ve-upk up
  for i in $(seq 150); do
    case $(inside systemctl is-system-running 2>/dev/null) in
      running | degraded) return 0 ;;
    esac
    sleep 0.2
  done
  inside systemctl --failed --no-pager || true
  die "the container did not finish booting"
}

# Powers the container off (or reboots: nspawn exits with 133 and is started again).
pk_poweroff() {
  [ -n "$PK_NSPAWN" ] || return 0
  inside systemctl poweroff >/dev/null 2>&1 || true
  local i
  for i in $(seq 100); do kill -0 "$PK_NSPAWN" 2>/dev/null || break; sleep 0.1; done
  kill "$PK_NSPAWN" 2>/dev/null || true
  wait "$PK_NSPAWN" 2>/dev/null || true
  PK_NSPAWN= PK_LEADER=
}

pk_cleanup() {
  pk_poweroff
  local f
  for f in "$PK_LOG"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  ip netns pids "$PK_SRV" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$PK_WAN" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$PK_WAN" 2>/dev/null || true
  ip netns del "$PK_SRV" 2>/dev/null || true
  rm -f /var/run/wireguard/upkwg0.sock
  rmdir "$PK_CG" 2>/dev/null || true
}

# A capture of everything the container sends on its uplink that is not encrypted UDP to the
# endpoint: ARP, and IPv6 from link-local addresses (neighbour discovery), are not traffic.
pk_capture_start() {
  ip netns exec "$PK_WAN" tcpdump -i ve-upk -Q in -nn -U -w "$PK_LOG/$1.pcap" \
    "(ip and not (udp and dst host $PK_ENDPOINT and dst port $PK_PORT)) or (ip6 and not src net fe80::/10 and not src host ::)" \
    >/dev/null 2>"$PK_LOG/$1.tcpdump" &
  echo $! >"$PK_LOG/capture.pid"
  local i; for i in $(seq 50); do grep -q listening "$PK_LOG/$1.tcpdump" && return; sleep 0.1; done
}
pk_capture_count() {
  kill -INT "$(cat "$PK_LOG/capture.pid")"; wait "$(cat "$PK_LOG/capture.pid")" 2>/dev/null || true
  rm -f "$PK_LOG/capture.pid"
  tcpdump -nn -r "$PK_LOG/$1.pcap" 2>/dev/null | tee "$PK_LOG/$1.txt" | wc -l
}

# Traffic generators inside the container while the capture runs: DNS to the ISP and TCP
# connects to a host behind it, five a second.
pk_probes_start() {
  inside bash -c 'echo $$ >/run/upk-probes.pid; while :; do
      dig +tries=1 +time=1 @203.0.113.1 probe.test >/dev/null 2>&1 &
      timeout 1 bash -c "exec 3<>/dev/tcp/198.51.100.77/80" 2>/dev/null &
      sleep 0.2
    done' >/dev/null 2>&1 &
}
pk_probes_stop() { inside sh -c 'kill "$(cat /run/upk-probes.pid)"; rm /run/upk-probes.pid' || true; }
