#!/usr/bin/env bash
# Builds dist/underpass-VERSION-x64.msi with wixl (Debian package `wixl`), from Windows binaries
# cross-built for x86_64-pc-windows-gnu (or given in BIN_DIR).
#
#   installers/windows/build-msi.sh [--no-build] [--test-without-wintun]
#
# wintun.dll (https://www.wintun.net, signed by WireGuard LLC) cannot be downloaded here: give
# its path in WINTUN_DLL. Without it the build fails, unless --test-without-wintun says this MSI
# is only for the Wine test (which cannot load Wintun anyway) and must never be shipped; its
# file name then says so. The app (underpass-gui.exe) is included when APP_EXE points at it
# (CI builds it on a Windows runner); the Tauri app is not cross-built here.
# Also: DEPENDENCIES=no leaves out the BFE/NSI service dependencies (Wine has neither service).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

build=1 wintun_required=1
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    --test-without-wintun) wintun_required=0 ;;
    *) echo "build-msi: unknown option $a" >&2; exit 2 ;;
  esac
done
command -v wixl >/dev/null || { echo "build-msi: wixl missing (apt-get install wixl)" >&2; exit 1; }

target=x86_64-pc-windows-gnu
profile=${MSI_PROFILE:-release}
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/$target/$profile}
if [ "$build" = 1 ] && [ -z "${BIN_DIR:-}" ]; then
  flag=(); [ "$profile" = release ] && flag=(--release)
  cargo build --locked --target "$target" "${flag[@]}" -p underpassd -p underpass-cli
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$bin/underpassd.exe" "$bin/underpass.exe" "$stage/"
wintun=no app=no suffix=""
if [ -n "${WINTUN_DLL:-}" ]; then
  cp "$WINTUN_DLL" "$stage/wintun.dll"; wintun=yes
elif [ "$wintun_required" = 1 ]; then
  echo "build-msi: set WINTUN_DLL to wintun.dll (amd64) from wintun.net; the tunnel needs it" >&2
  exit 1
else
  suffix="-wine-test-without-wintun"
fi
if [ -n "${APP_EXE:-}" ]; then cp "$APP_EXE" "$stage/underpass-gui.exe"; app=yes; fi

mkdir -p dist
out="$PWD/dist/underpass-$version-x64$suffix.msi"
cp installers/windows/underpass.wxs "$stage/"
# wixl finds the files relative to the directory it runs in.
(cd "$stage" && wixl -a x64 -D Version="$version" -D Wintun="$wintun" -D App="$app" \
  -D Dependencies="${DEPENDENCIES:-yes}" -o "$out" underpass.wxs)
out=dist/$(basename "$out")
echo "build-msi: wrote $out (wintun: $wintun, app: $app)"
