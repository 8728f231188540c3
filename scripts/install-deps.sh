#!/usr/bin/env bash
# Install what Underpass's tests, demo and benchmark need on Debian 12. Idempotent: apt runs only
# when a package is missing.
#
#   scripts/install-deps.sh           system packages (as root, or through sudo)
#   scripts/install-deps.sh --bench   also boringtun-cli (cargo install, ~3-4 min cold) for bench/
set -euo pipefail

bench=0
for a in "$@"; do
  case $a in
    --bench) bench=1 ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

say() { printf 'install-deps: %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { say "not root and no sudo: run me as root"; exit 1; }
  SUDO=(sudo)
fi

# Packages used by scripts/sandbox.sh, scripts/demo.sh, scripts/test.sh and bench/bench.sh.
PKGS=(
  iputils-ping iproute2 nftables wireguard-go wireguard-tools tcpdump dnsmasq-base iperf3
  procps psmisc jq util-linux coreutils
  # the Windows type-check (cargo check --target x86_64-pc-windows-gnu) compiles ring's C
  gcc-mingw-w64-x86-64
  # the Windows code that runs under Wine (scripts/wine-test.sh) and the MSI (wixl, msitools;
  # osslsigncode checks wintun.dll's signature: installers/windows/wintun.sh)
  wine wine64 wixl osslsigncode
  # the end-to-end tests run the CLI as test users (setpriv) and create them (useradd)
  passwd
  # keys in the OS keyring: libdbus to build the Secret Service client (keyring crate), and a
  # headless session bus with gnome-keyring for its tests; minisign for the bundle interop test
  libdbus-1-dev pkg-config dbus-daemon gnome-keyring minisign
  # the helper's systemd-resolved backend is tested against a python-dbusmock stand-in for
  # org.freedesktop.resolve1 on a private dbus-daemon (helper/src/dns/resolved.rs), and its
  # sleep and resume against dbusmock's logind template, driven by gdbus (tests/e2e/tests/sleep.rs)
  python3-dbusmock libglib2.0-bin
  # the desktop app: Tauri's build dependencies (its tray is D-Bus only, no library), and the
  # GUI test's world (Xvfb, WebKit's WebDriver, X11 and D-Bus tools for the window, the tray
  # and deep links)
  libwebkit2gtk-4.1-dev librsvg2-dev libxdo-dev libssl-dev
  xvfb webkit2gtk-driver x11-utils python3-xlib libglib2.0-bin desktop-file-utils
  # installers/linux/check.sh: systemd-analyze and systemd-sysusers read the service files
  systemd shared-mime-info
  # npm run package (installers/linux/package.sh): dpkg-shlibdeps, rpmbuild, lintian; and
  # tests/packages/run.sh: a booted Debian in systemd-nspawn from a debootstrap root file system,
  # and an SSH client that logs in to it from outside
  dpkg-dev rpm lintian systemd-container debootstrap openssh-client
  # installers/macos/check.sh: the pkg, postinstall and uninstall scripts are linted, and the
  # macOS CI workflow is parsed
  shellcheck python3-yaml
  # tests/e2e/tests/network.rs: NAT rebinding flushes the router's connection tracking
  conntrack
)
# npm runs the scripts in package.json; any node install that gives `npm` is fine.
command -v npm >/dev/null || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  say "installed ${#missing[@]} package(s)"
else
  say "system packages: all present"
fi

if [ "$bench" = 1 ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  if command -v boringtun-cli >/dev/null; then
    say "boringtun-cli: present ($(command -v boringtun-cli))"
  else
    command -v cargo >/dev/null || { say "--bench needs cargo (rustup) on PATH"; exit 1; }
    say "building boringtun-cli with cargo install (a few minutes)..."
    cargo install boringtun-cli --locked --quiet
    say "boringtun-cli: installed ($(command -v boringtun-cli))"
  fi
fi

# tauri-driver (WebDriver for the desktop app's end-to-end test) is a crate, not a Debian package.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tauri-driver >/dev/null && command -v cargo >/dev/null; then
  say "building tauri-driver with cargo install (about a minute)..."
  cargo install tauri-driver --locked --quiet
fi

# Tools that must be callable now (catches a broken install early).
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for t in ip wg wireguard-go nft ping tcpdump dnsmasq iperf3 jq pgrep killall setsid timeout \
  dbus-run-session gnome-keyring-daemon minisign dbus-daemon rpmbuild lintian systemd-nspawn \
  debootstrap dpkg-shlibdeps gdbus ssh ssh-keygen; do
  command -v "$t" >/dev/null || { say "missing after install: $t"; exit 1; }
done
/usr/bin/python3 -c 'import dbusmock' 2>/dev/null || { say "missing after install: python3 dbusmock"; exit 1; }
/usr/bin/python3 -c 'import Xlib, gi' 2>/dev/null || { say "missing after install: python3 Xlib or gi"; exit 1; }
