#!/usr/bin/env bash
# Builds dist/underpass-VERSION-x64.msi with wixl (Debian package `wixl`), from Windows binaries
# cross-built for x86_64-pc-windows-gnu (or given in BIN_DIR).
#
#   installers/windows/build-msi.sh [--no-build] [--no-app]
#
# It holds the helper, the CLI, the app (underpass-gui.exe, with the front end embedded) and
# wintun.dll beside the helper. wintun.dll is WireGuard LLC's signed build, fetched and checked
# by wintun.sh (WINTUN_DLL gives another path). A gnu-built app imports WebView2Loader.dll, so
# Microsoft's loader from the webview2-com-sys crate (checksummed by Cargo.lock) goes beside it;
# an msvc-built one (APP_EXE, from a Windows runner) links the loader statically and gets none.
# --no-app leaves the app out (the Wine test, which cannot run WebView2 anyway, skips its
# build). Also: DEPENDENCIES=no leaves out the BFE/NSI service dependencies (Wine has neither),
# MSI_OUT names another output file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

build=1 app=yes
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    --no-app) app=no ;;
    *) echo "build-msi: unknown option $a" >&2; exit 2 ;;
  esac
done
for t in wixl jq x86_64-w64-mingw32-objdump x86_64-w64-mingw32-strip; do
  command -v "$t" >/dev/null || { echo "build-msi: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done

target=x86_64-pc-windows-gnu
profile=${MSI_PROFILE:-release}
bin=${BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/$target/$profile}
if [ "$build" = 1 ] && [ -z "${BIN_DIR:-}" ]; then
  flag=(); [ "$profile" = release ] && flag=(--release)
  cargo build --locked --target "$target" "${flag[@]}" -p underpassd -p underpass-cli
  if [ "$app" = yes ] && [ -z "${APP_EXE:-}" ]; then
    # The front end embedded through tauri's custom-protocol feature, as on Linux.
    npm run -s ui:build >/dev/null
    cargo build --locked --target "$target" "${flag[@]}" -p underpass-gui --features tauri/custom-protocol
  fi
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$bin/underpassd.exe" "$bin/underpass.exe" "$stage/"
cp "${WINTUN_DLL:-$(bash installers/windows/wintun.sh)}" "$stage/wintun.dll"
loader=no
if [ "$app" = yes ]; then
  cp "${APP_EXE:-$bin/underpass-gui.exe}" "$stage/underpass-gui.exe"
  imports=$(x86_64-w64-mingw32-objdump -p "$stage/underpass-gui.exe")
  if grep -qi 'DLL Name: WebView2Loader.dll' <<<"$imports"; then
    sys=$(cargo metadata --locked --format-version 1 --filter-platform "$target" \
      | jq -r '.packages[] | select(.name == "webview2-com-sys") | .manifest_path')
    cp "$(dirname "$sys")/x64/WebView2Loader.dll" "$stage/"
    loader=yes
  fi
fi
# The release profile keeps line tables for Linux's backtraces; the MSI ships stripped files.
for exe in "$stage"/underpass*.exe; do x86_64-w64-mingw32-strip --strip-unneeded "$exe"; done

out=${MSI_OUT:-$PWD/dist/underpass-$version-x64.msi}
mkdir -p "$(dirname "$out")"
cp installers/windows/underpass.wxs "$stage/"
# wixl finds the files relative to the directory it runs in.
(cd "$stage" && wixl -a x64 -D Version="$version" -D App="$app" -D Loader="$loader" \
  -D Dependencies="${DEPENDENCIES:-yes}" -o "$out" underpass.wxs)
echo "build-msi: wrote $out (app: $app, WebView2Loader.dll: $loader)"
