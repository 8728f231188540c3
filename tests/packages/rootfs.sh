#!/usr/bin/env bash
# Prints the path of a Debian 12 root file system for the package tests' systemd-nspawn
# containers, building it once (debootstrap minbase, about 2 min; 4 with the app's libraries)
# and caching it as a tarball under /var/tmp. The cache's name carries a hash of the package
# list, so a changed list rebuilds it. Each call unpacks a fresh copy into the directory given:
#   tests/packages/rootfs.sh DIR [DEB...]
# The container has no route to the registries once booted, so what the DEBs depend on (read
# from their control files: the first of each set of alternatives, without versions, our own
# packages left out) is preinstalled, so that `apt-get install ./DEB...` works offline. Only
# that and the tools the test uses: a dependency a package forgot to declare is missing there.
set -euo pipefail
dir=${1:?usage: rootfs.sh DIR [DEB...]}
shift
# A real systemd with logind (libpam-systemd), dbus and systemd-resolved; the test's tools: ps,
# dig, sshd (remote logins), desktop-file-validate, update-mime-database, xdg-mime, gio, Xvfb.
PKGS=systemd,systemd-sysv,systemd-resolved,libpam-systemd,dbus,iproute2,procps,bind9-dnsutils
PKGS=$PKGS,openssh-server,desktop-file-utils,shared-mime-info,xdg-utils,libglib2.0-bin,xvfb,xauth
# debootstrap resolves no virtual packages: the app's libraries pull in dconf-service, which wants
# a dbus-session-bus (this one: the systemd user session's bus, as on a desktop).
PKGS=$PKGS,dbus-user-session
deps=$(for deb in "$@"; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' |
  sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep -v '^$\|^underpass' || true)
PKGS=$(printf '%s\n' ${PKGS//,/ } $deps | LC_ALL=C sort -u | paste -sd, -)
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
hash=$(printf '%s %s' "$PKGS" "$mirror" | sha256sum | cut -c1-12)
cache=/var/tmp/underpass-pkg-rootfs-$hash.tar
if [ ! -s "$cache" ]; then
  build=$(mktemp -d /var/tmp/underpass-pkg-rootfs.XXXXXX)
  echo "rootfs: debootstrap bookworm ($PKGS) from $mirror, cached as $cache" >&2
  debootstrap --variant=minbase --include="$PKGS" bookworm "$build" "$mirror" >"$build.log" 2>&1 ||
    { tail -20 "$build.log" >&2; rm -rf "$build" "$build.log"; exit 1; }
  # The container resolves nothing outside; its apt needs no lists for local .deb files.
  rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/*_Packages
  tar -C "$build" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf "$build" "$build.log"
fi
mkdir -p "$dir"
tar -C "$dir" -xf "$cache"
chmod 755 "$dir"   # mktemp -d made the build dir 0700, and the tarball keeps that
echo "$dir"
