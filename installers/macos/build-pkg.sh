#!/usr/bin/env bash
# Builds dist/Underpass-VERSION.pkg on a Mac (Xcode command-line tools, Rust, Node):
#   installers/macos/build-pkg.sh [--target aarch64-apple-darwin|x86_64-apple-darwin]
# The app bundle comes from `tauri build --bundles app`; underpassd goes inside it
# (Contents/MacOS/underpassd), the LaunchDaemon plist into /Library/LaunchDaemons, and the
# postinstall (scripts/postinstall) checks ownership before it starts anything.
# pkgbuild and productbuild exist only on macOS: elsewhere this script refuses to run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
target=$(rustc -vV | sed -n 's/^host: //p')
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=$2; shift 2 ;;
    *) echo "build-pkg: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$(uname -s)" != Darwin ] || ! command -v pkgbuild >/dev/null; then
  echo "build-pkg: pkgbuild and productbuild are macOS tools; run this on a Mac" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release --locked --target "$target" -p underpassd -p underpass-cli
npm install --no-audit --no-fund --loglevel=error
npx tauri build --target "$target" --bundles app

app="$CARGO_TARGET_DIR/$target/release/bundle/macos/Underpass.app"
[ -d "$app" ] || { echo "build-pkg: $app was not built" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/Applications" "$root/Library/LaunchDaemons" "$root/usr/local/bin"
cp -R "$app" "$root/Applications/"
cp "$CARGO_TARGET_DIR/$target/release/underpassd" "$root/Applications/Underpass.app/Contents/MacOS/"
cp "$CARGO_TARGET_DIR/$target/release/underpass" "$root/usr/local/bin/"
cp installers/macos/org.underpass.underpassd.plist "$root/Library/LaunchDaemons/"
mkdir -p "$root/Library/Application Support/Underpass"
cp installers/macos/uninstall.sh "$root/Library/Application Support/Underpass/"
chmod 0644 "$root/Library/LaunchDaemons/org.underpass.underpassd.plist"

mkdir -p dist
pkgbuild --root "$root" --scripts installers/macos/scripts \
  --identifier org.underpass.pkg --version "$version" --install-location / \
  --ownership recommended "$work/underpass-component.pkg"
productbuild --package "$work/underpass-component.pkg" --identifier org.underpass.pkg \
  --version "$version" "dist/Underpass-$version.pkg"
echo "build-pkg: wrote dist/Underpass-$version.pkg"
