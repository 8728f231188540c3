#!/usr/bin/env bash
# Prints the path of a Debian 12 root file system for the package tests' systemd-nspawn
# containers, building it once (debootstrap minbase, about 2 min) and caching it as a tarball
# under /var/tmp. The cache's name carries a hash of the package list, so a changed list
# rebuilds it. Each call unpacks a fresh copy (about 5 s) into the directory given:
#   tests/packages/rootfs.sh DIR
set -euo pipefail
dir=${1:?usage: rootfs.sh DIR}
# What the container needs preinstalled (it has no route to the registries once booted): a real
# systemd with logind (libpam-systemd), dbus and systemd-resolved, and everything
# underpass-daemon depends on, so that `apt-get install ./underpass-daemon_*.deb` works offline.
PKGS=systemd,systemd-sysv,systemd-resolved,libpam-systemd,dbus,iproute2,nftables,procps,libdbus-1-3,bind9-dnsutils
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
hash=$(printf '%s %s' "$PKGS" "$mirror" | sha256sum | cut -c1-12)
cache=/var/tmp/underpass-pkg-rootfs-$hash.tar
if [ ! -s "$cache" ]; then
  build=$(mktemp -d /var/tmp/underpass-pkg-rootfs.XXXXXX)
  echo "rootfs: debootstrap bookworm ($PKGS) from $mirror, cached as $cache" >&2
  debootstrap --variant=minbase --include="$PKGS" bookworm "$build" "$mirror" >"$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; rm -rf "$build"; exit 1; }
  # The container resolves nothing outside; its apt needs no lists for local .deb files.
  rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/*_Packages
  tar -C "$build" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf "$build" "$build.log"
fi
mkdir -p "$dir"
tar -C "$dir" -xf "$cache"
chmod 755 "$dir"   # mktemp -d made the build dir 0700, and the tarball keeps that
echo "$dir"
