#!/usr/bin/env bash
# Rewrites assets/flags/ from Debian's iso-flags-svg (public domain; upstream: Linux Mint's
# "flags"): the 4:3 flag of every country in crates/profile/src/location.rs (COUNTRIES),
# shrunk by scour (metadata, ids and comments removed, 3 significant digits). Not part of
# `npm test`: the SVGs are committed; run this only to take a newer package.
# `assets/flags/unknown.svg` (the "unknown location" globe) is our own and left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v scour >/dev/null || apt-get install -y -q scour
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download iso-flags-svg && dpkg-deb -x iso-flags-svg_*.deb x)
src="$work/x/usr/share/iso-flags-svg/country-4x3"
codes=$(sed -n '/^pub const COUNTRIES/,/^];/p' crates/profile/src/location.rs |
  grep -o '("[A-Z][A-Z]"' | tr -d '("' | tr 'A-Z' 'a-z')
find assets/flags -name '??.svg' -delete
for c in $codes; do
  [ -f "$src/$c.svg" ] || { echo "flags: iso-flags-svg has no $c.svg" >&2; exit 1; }
  printf '%s\n' "$c"
done | xargs -P "$(nproc)" -I{} scour -q -i "$src/{}.svg" -o "assets/flags/{}.svg" \
  --enable-viewboxing --enable-id-stripping --enable-comment-stripping --shorten-ids \
  --remove-metadata --remove-descriptive-elements --strip-xml-prolog --no-line-breaks \
  --set-precision=3
cp "$work/x/usr/share/doc/iso-flags-svg/copyright" assets/flags/COPYING.debian
echo "flags: $(ls assets/flags/??.svg | wc -l) flags in assets/flags"
