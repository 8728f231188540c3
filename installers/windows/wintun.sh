#!/usr/bin/env bash
# Prints the path of a verified wintun.dll (amd64) for the MSI, fetching it once into a cache.
#
#   installers/windows/wintun.sh      -> .../wintun.dll   (UNDERPASS_CACHE: another cache dir)
#
# wintun.net cannot be reached from here, but crates.io can, and the `wintun` crate ships
# WireGuard LLC's signed prebuilt DLLs unmodified (wintun/bin/<arch>/wintun.dll). Three checks
# stand between that download and the MSI:
#  1. the .crate's SHA-256 is the one crates.io's index lists for wintun 0.5.1 (as in a Cargo.lock);
#  2. the DLL's SHA-256 is pinned below (Wintun 0.14, FileVersion 0.14);
#  3. its Authenticode signature verifies offline (osslsigncode, Debian's CA bundle) and the
#     signer is WireGuard LLC. No CRL is fetched: the signature is time-stamped (2021-10-17).
# A file that fails any check is deleted and the script fails naming the check.
set -euo pipefail

crate=wintun-0.5.1
crate_sha256=da99be64b5aa3de869c16977994314d0759a698d9a73ab0a5b1d52e2282033ae
dll_sha256=e5da8447dc2c320edc0fc52fa01885c103de8c118481f683643cacc3220dafce
signer="/O=WireGuard LLC/CN=WireGuard LLC"
cache=${UNDERPASS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/underpass}/wintun-0.14-amd64
dll=$cache/wintun.dll

fail() { echo "wintun: $*" >&2; rm -f "$dll"; exit 1; }
for t in curl osslsigncode sha256sum tar; do
  command -v "$t" >/dev/null || fail "$t missing (scripts/install-deps.sh)"
done

if [ ! -f "$dll" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -sSfL --retry 3 -o "$tmp/$crate.crate" "https://static.crates.io/crates/wintun/$crate.crate" \
    || fail "could not download $crate.crate from crates.io"
  echo "$crate_sha256  $tmp/$crate.crate" | sha256sum -c --quiet - >/dev/null 2>&1 \
    || fail "$crate.crate: SHA-256 is not the one crates.io's index lists"
  tar -xzf "$tmp/$crate.crate" -C "$tmp" "$crate/wintun/bin/amd64/wintun.dll"
  mv "$tmp/$crate/wintun/bin/amd64/wintun.dll" "$dll.part"
  mv "$dll.part" "$dll"
fi

echo "$dll_sha256  $dll" | sha256sum -c --quiet - >/dev/null 2>&1 \
  || fail "$dll: SHA-256 is not the pinned one of Wintun 0.14 (amd64)"
ca=/etc/ssl/certs/ca-certificates.crt
report=$(osslsigncode verify -in "$dll" -ignore-cdp -ignore-crl -CAfile "$ca" -TSA-CAfile "$ca" 2>&1) \
  || fail "$dll: Authenticode signature does not verify: $(tail -3 <<<"$report" | tr '\n' ' ')"
grep -q "Subject: .*$signer\$" <<<"$report" || fail "$dll: not signed by WireGuard LLC"
echo "$dll"
