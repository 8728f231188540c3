#!/usr/bin/env bash
# Builds the Linux packages into dist/ (called by scripts/package.sh, `npm run package`):
#   underpass-daemon_VERSION_ARCH.deb and underpass-daemon-VERSION-1.ARCH.rpm: the helper (as a
#     hardened systemd service), the CLI with completions and a man page; no GUI dependencies;
#   underpass_VERSION_ARCH.deb and underpass-VERSION-1.ARCH.rpm: the desktop app (underpass-gui,
#     release build with the front end embedded, and its tray, underpass-tray), its desktop entry, hicolor icons, the
#     underpass:// scheme and the .underpass MIME type; it depends on underpass-daemon of its
#     own version. Skipped with --daemon-only (the app's release build takes ~6 min).
# --debug packs the debug builds of all three instead (the ones tests/gui/run.sh builds, with
# the same cargo command, so nothing is rebuilt after it): the package test's shortcut, not for
# shipping (a cold release build of the helper and CLI costs ~6 min of npm test; the bench and
# `npm run package` build release). --no-lintian skips lintian (the package test's older build). Both packages are built here with dpkg-deb and rpmbuild from one staging step each
# (not the Tauri bundler): library dependencies come from dpkg-shlibdeps and rpm's ELF scan.
# UNDERPASS_PKG_VERSION overrides the version (the upgrade test builds two), UNDERPASS_DIST the
# output directory. Every .deb is checked by lintian (overrides, each explained, in
# installers/linux/*/lintian-overrides).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
linux=$root/installers/linux
target=${CARGO_TARGET_DIR:-$root/target}

app=1 profile=release lint=1
for a in "$@"; do
  case $a in
    --daemon-only) app=0 ;;
    --debug) profile=debug ;;
    --no-lintian) lint=0 ;;
    *) echo "package: unknown option $a" >&2; exit 2 ;;
  esac
done

version=${UNDERPASS_PKG_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
rpm_version=${version//-/_}
arch=$(dpkg --print-architecture)
rpm_arch=$(uname -m)
maintainer="Underpass developers <underpass@packages.invalid>"
say() { printf 'package: %s\n' "$*"; }
dist=${UNDERPASS_DIST:-$root/dist}
mkdir -p "$dist"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# The front end, embedded through tauri's custom-protocol feature as `tauri build` does: built
# afresh for a release, reused by a debug build when there is one.
if { [ "$profile" = debug ] && [ ! -s ui/dist/index.html ]; } || { [ "$profile" = release ] && [ "$app" = 1 ]; }; then
  say "the front end (npm run ui:build)"
  npm run -s ui:build >"$tmp/ui.log" 2>&1 || { tail -30 "$tmp/ui.log"; exit 1; }
fi
if [ "$profile" = debug ]; then
  say "debug build of underpassd, underpass and the app (version $version)"
  cargo build --locked -q -p underpassd -p underpass-cli -p underpass-gui --features tauri/custom-protocol
else
  say "release build of underpassd and underpass (version $version)"
  cargo build --release --locked -q -p underpassd -p underpass-cli
fi
# (a debug build: the text is the same, and dev-dependencies would change release features)
cargo run --locked -q -p underpass-cli --example gen-docs -- "$tmp/docs" >/dev/null

# build_deb NAME DIR ELF...: the .deb of package NAME (its files in installers/linux/SUB, SUB
# being daemon or app) from the files staged in DIR: copyright, changelog, lintian overrides,
# maintainer scripts when SUB has them, and SUB/control with the library dependencies that
# dpkg-shlibdeps finds in the ELF files and the version filled in.
build_deb() {
  local name=$1 sub=$2 d=$3; shift 3
  local doc=$d/usr/share/doc/$name s shlibs control
  install -Dm644 "$linux/copyright" "$doc/copyright"
  printf '%s (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' "$name" \
    "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$maintainer" \
    "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" |
    gzip -9n >"$doc/changelog.gz"
  [ ! -f "$linux/$sub/lintian-overrides" ] ||
    install -Dm644 "$linux/$sub/lintian-overrides" "$d/usr/share/lintian/overrides/$name"
  install -d "$d/DEBIAN"
  for s in postinst prerm postrm; do
    [ ! -f "$linux/$sub/$s" ] || install -m755 "$linux/$sub/$s" "$d/DEBIAN/"
  done
  # dpkg-shlibdeps wants a debian/control to read.
  rm -rf "$tmp/shlibs"; mkdir -p "$tmp/shlibs/debian"
  printf 'Source: underpass\n\nPackage: %s\nArchitecture: any\n' "$name" >"$tmp/shlibs/debian/control"
  shlibs=$(cd "$tmp/shlibs" && dpkg-shlibdeps -O "$@" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  [ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no libraries for $name" >&2; exit 1; }
  control=$(<"$linux/$sub/control")
  control=${control//@SHLIBS@/$shlibs}
  control=${control//@VERSION@/$version}
  { sed -n 1p <<<"$control"
    printf 'Version: %s\nArchitecture: %s\nMaintainer: %s\nInstalled-Size: %s\n' "$version" "$arch" \
      "$maintainer" "$(du -sk --exclude=DEBIAN "$d" | cut -f1)"
    sed 1d <<<"$control"; } >"$d/DEBIAN/control"
  # The app's debug build is large: fast compression there (it is never shipped).
  local z=(-Zxz); [ "$name" = underpass ] && [ "$profile" = debug ] && z=(-Zgzip -z1)
  dpkg-deb --root-owner-group "${z[@]}" --build "$d" "$dist/${name}_${version}_${arch}.deb" >/dev/null
  say "built $dist/${name}_${version}_${arch}.deb"
}

# build_rpm NAME STAGE: the rpm from installers/linux/SUB/NAME.spec and the files in STAGE.
build_rpm() {
  local name=$1 sub=$2 stage=$3 z=()
  [ "$name" = underpass ] && [ "$profile" = debug ] && z=(--define "_binary_payload w1.gzdio")
  rpmbuild -bb --quiet --target "$rpm_arch" "${z[@]}" \
    --define "_topdir $tmp/rpmbuild" --define "stage $stage" \
    --define "pkgversion $rpm_version" --define "_build_id_links none" \
    "$linux/$sub/$name.spec" >/dev/null
  cp "$tmp/rpmbuild/RPMS/$rpm_arch/$name-$rpm_version-1.$rpm_arch.rpm" "$dist/"
  say "built $dist/$name-$rpm_version-1.$rpm_arch.rpm"
}

# stage DIR UNITDIR ZSHDIR: the daemon package's files under DIR, with the distribution's
# places for systemd units and zsh completions.
stage() {
  local d=$1
  install -Dm755 "$target/$profile/underpassd" "$d/usr/sbin/underpassd"
  install -Dm755 "$target/$profile/underpass" "$d/usr/bin/underpass"
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

# --- underpass-daemon ------------------------------------------------------------------
stage "$tmp/deb" /lib/systemd/system /usr/share/zsh/vendor-completions
build_deb underpass-daemon daemon "$tmp/deb" "$tmp/deb/usr/sbin/underpassd" "$tmp/deb/usr/bin/underpass"
stage "$tmp/rpm-stage" /usr/lib/systemd/system /usr/share/zsh/site-functions
build_rpm underpass-daemon daemon "$tmp/rpm-stage"

# --- underpass, the app -----------------------------------------------------------------
# stage_app DIR: the app's files, the same for both formats. The desktop entry and the
# MIME type need no maintainer scripts: desktop-file-utils, shared-mime-info and
# hicolor-icon-theme rebuild their caches from dpkg triggers (rpm: file triggers).
stage_app() {
  local d=$1 size
  install -Dm755 "$target/$profile/underpass-gui" "$d/usr/bin/underpass-gui"
  install -Dm755 "$target/$profile/underpass-tray" "$d/usr/bin/underpass-tray"
  strip --strip-unneeded "$d/usr/bin/underpass-gui" "$d/usr/bin/underpass-tray"
  install -Dm644 "$linux/underpass.desktop" "$d/usr/share/applications/underpass.desktop"
  install -Dm644 "$linux/underpass-mime.xml" "$d/usr/share/mime/packages/underpass.xml"
  for size in 32x32:32x32 128x128:128x128 256x256:128x128@2x 512x512:icon; do
    install -Dm644 "src-tauri/icons/${size#*:}.png" "$d/usr/share/icons/hicolor/${size%%:*}/apps/underpass-gui.png"
  done
  install -Dm644 src-tauri/icons/icon.svg "$d/usr/share/icons/hicolor/scalable/apps/underpass-gui.svg"
  install -d "$d/usr/share/man/man1"
  gzip -9n <"$linux/app/underpass-gui.1" >"$d/usr/share/man/man1/underpass-gui.1.gz"
  gzip -9n <"$linux/app/underpass-tray.1" >"$d/usr/share/man/man1/underpass-tray.1.gz"
}
if [ "$app" = 1 ]; then
  # The release build of the app alone (the daemon's binaries above stay as they were packed);
  # a debug build has it already.
  if [ "$profile" = release ]; then
    say "release build of the app (underpass-gui)"
    cargo build --release --locked -q -p underpass-gui --features tauri/custom-protocol
  fi
  stage_app "$tmp/app-deb"
  build_deb underpass app "$tmp/app-deb" "$tmp/app-deb/usr/bin/underpass-gui" "$tmp/app-deb/usr/bin/underpass-tray"
  stage_app "$tmp/app-rpm"
  build_rpm underpass app "$tmp/app-rpm"
fi

for f in "$dist"/*_"${version}"_"$arch".deb; do
  [ "$lint" = 1 ] || break
  say "lintian $f"
  lintian --fail-on error,warning "$f"
done
