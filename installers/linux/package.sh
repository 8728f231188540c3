#!/usr/bin/env bash
# Builds the Linux packages into dist/ (called by scripts/package.sh, `npm run package`):
#   underpass-daemon_VERSION_ARCH.deb and underpass-daemon-VERSION-1.ARCH.rpm: the helper (as a
#     hardened systemd service), the CLI with completions and a man page; no GUI dependencies;
#   underpass_VERSION_ARCH.deb and .rpm: the desktop app (the Tauri bundler), which depends on
#     underpass-daemon. Skipped with --daemon-only (the app's release build takes ~6 min).
# UNDERPASS_PKG_VERSION overrides the version (the upgrade test builds two), UNDERPASS_DIST the
# output directory. Every .deb is
# checked by lintian (overrides, each explained, in installers/linux/*/lintian-overrides).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
linux=$root/installers/linux
target=${CARGO_TARGET_DIR:-$root/target}

app=1
for a in "$@"; do
  case $a in
    --daemon-only) app=0 ;;
    *) echo "package: unknown option $a" >&2; exit 2 ;;
  esac
done

version=${UNDERPASS_PKG_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
arch=$(dpkg --print-architecture)
maintainer="Underpass developers <underpass@packages.invalid>"
say() { printf 'package: %s\n' "$*"; }
dist=${UNDERPASS_DIST:-$root/dist}
mkdir -p "$dist"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

say "release build of underpassd and underpass (version $version)"
cargo build --release --locked -q -p underpassd -p underpass-cli
# (a debug build: the text is the same, and dev-dependencies would change release features)
cargo run --locked -q -p underpass-cli --example gen-docs -- "$tmp/docs" >/dev/null

# stage DIR UNITDIR ZSHDIR: the daemon package's files under DIR, with the distribution's
# places for systemd units and zsh completions.
stage() {
  local d=$1
  install -Dm755 "$target/release/underpassd" "$d/usr/sbin/underpassd"
  install -Dm755 "$target/release/underpass" "$d/usr/bin/underpass"
  strip --strip-unneeded "$d/usr/sbin/underpassd" "$d/usr/bin/underpass"
  install -Dm644 "$linux/underpassd.service" "$d$2/underpassd.service"
  install -Dm644 "$linux/underpass.sysusers" "$d/usr/lib/sysusers.d/underpass.conf"
  install -Dm644 "$tmp/docs/underpass.bash" "$d/usr/share/bash-completion/completions/underpass"
  install -Dm644 "$tmp/docs/_underpass" "$d$3/_underpass"
  install -Dm644 "$tmp/docs/underpass.fish" "$d/usr/share/fish/vendor_completions.d/underpass.fish"
  install -d "$d/usr/share/man/man1"
  gzip -9n <"$tmp/docs/underpass.1" >"$d/usr/share/man/man1/underpass.1.gz"
  install -d -m755 "$d/etc/underpass/trusted-keys"
  install -Dm644 "$linux/daemon/README" "$d/usr/share/doc/underpass-daemon/README"
}

# --- the .deb ---------------------------------------------------------------------------
deb=$tmp/deb
stage "$deb" /lib/systemd/system /usr/share/zsh/vendor-completions
doc=$deb/usr/share/doc/underpass-daemon
install -Dm644 "$linux/copyright" "$doc/copyright"
printf 'underpass-daemon (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' \
  "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$maintainer" \
  "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" |
  gzip -9n >"$doc/changelog.gz"
install -Dm644 "$linux/daemon/lintian-overrides" "$deb/usr/share/lintian/overrides/underpass-daemon"
install -d "$deb/DEBIAN"
install -m755 "$linux/daemon/postinst" "$linux/daemon/prerm" "$linux/daemon/postrm" "$deb/DEBIAN/"
# Library dependencies as dpkg-shlibdeps finds them (it wants a debian/control to read).
mkdir -p "$tmp/shlibs/debian"; printf 'Source: underpass\n\nPackage: underpass-daemon\nArchitecture: any\n' >"$tmp/shlibs/debian/control"
shlibs=$(cd "$tmp/shlibs" && dpkg-shlibdeps -O "$deb/usr/sbin/underpassd" "$deb/usr/bin/underpass" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
cat >"$deb/DEBIAN/control" <<CONTROL
Package: underpass-daemon
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$deb" | cut -f1)
Depends: $shlibs, nftables, init-system-helpers (>= 1.52)
Recommends: systemd
Suggests: systemd-resolved
Section: net
Priority: optional
Description: Underpass VPN helper service and command-line client
 The privileged Underpass helper, underpassd, as a hardened systemd service:
 the tunnel adapter, routes, DNS (resolv.conf or systemd-resolved), the
 nftables kill switch and a userspace WireGuard data plane. With the underpass
 command-line client, its shell completions and man page, and no desktop
 dependencies, for headless machines and fleets. Members of group underpass
 and the user of the active local session may use the helper.
CONTROL
deb_out=$dist/underpass-daemon_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$deb" "$deb_out" >/dev/null
say "built $deb_out"

# --- the .rpm ---------------------------------------------------------------------------
rpm_stage=$tmp/rpm-stage
stage "$rpm_stage" /usr/lib/systemd/system /usr/share/zsh/site-functions
rpm_arch=$(uname -m)
rpmbuild -bb --quiet --target "$rpm_arch" \
  --define "_topdir $tmp/rpmbuild" --define "stage $rpm_stage" \
  --define "pkgversion ${version//-/_}" --define "_build_id_links none" \
  "$linux/daemon/underpass-daemon.spec" >/dev/null
cp "$tmp"/rpmbuild/RPMS/"$rpm_arch"/underpass-daemon-*.rpm "$dist/"
say "built $dist/$(basename "$tmp"/rpmbuild/RPMS/"$rpm_arch"/underpass-daemon-*.rpm)"

# --- the app ----------------------------------------------------------------------------
if [ "$app" = 1 ]; then
  say "the desktop app (Tauri bundler: release build, .deb and .rpm)"
  conf=$tmp/tauri.version.json
  # The app and the helper speak one protocol: the app wants the daemon of its own version.
  printf '{"version": "%s", "bundle": {"linux": {"deb": {"depends": ["underpass-daemon (= %s)"]}, "rpm": {"depends": ["underpass-daemon = %s"]}}}}\n' \
    "$version" "$version" "${version//-/_}" >"$conf"
  npx tauri build --bundles deb,rpm --config "$conf" >"$tmp/tauri.log" 2>&1 ||
    { tail -30 "$tmp/tauri.log"; exit 1; }
  cp "$target"/release/bundle/deb/underpass_"${version}"_"$arch".deb "$dist/"
  cp "$target"/release/bundle/rpm/underpass-"${version//-/_}"-1."$rpm_arch".rpm "$dist/"
  say "built $dist/underpass_${version}_${arch}.deb and its .rpm"
fi

for f in "$dist"/*_"${version}"_"$arch".deb; do
  say "lintian $f"
  lintian --fail-on error,warning "$f"
done
