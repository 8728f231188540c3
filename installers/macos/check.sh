#!/usr/bin/env bash
# Checks the macOS installer files with what runs here (nothing of macOS itself does):
#   installers/macos/check.sh
# - org.underpass.underpassd.plist: parsed by Python's plistlib, which must find a
#   LaunchDaemon that runs the bundled helper at load and keeps it alive; a copy broken on
#   purpose must fail the same check, so this check can fail;
# - build-pkg.sh, scripts/postinstall, uninstall.sh: `bash -n` and shellcheck;
# - .github/workflows/macos.yml: parsed as YAML; it must build, unit-test and build the pkg for
#   both Mac architectures (skipped on a Mac without PyYAML; the Linux run always checks it);
# - scripts/postinstall (as root): run against a scratch volume with stand-ins for the macOS tools
#   (dscl, dseditgroup, launchctl, BSD stat, chown to group wheel): it must refuse an app bundle that is not
#   root-owned, or that anyone can write to, before it starts anything, and must bootstrap the
#   daemon for a root-owned one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass() { echo "installers/macos: ok: $*"; }

check_plist() {
  python3 - "$1" <<'PY'
import plistlib, sys
with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f)
label = "org.underpass.underpassd"
assert p["Label"] == label, p.get("Label")
args = p["ProgramArguments"]
assert args[0] == "/Applications/Underpass.app/Contents/MacOS/underpassd", args
assert all(isinstance(a, str) for a in args), args
assert p["RunAtLoad"] is True and p["KeepAlive"] is True, "must start at boot and stay up"
assert p.get("UserName", "root") == "root"
PY
}
check_plist org.underpass.underpassd.plist
sed 's|<true/>|<yes/>|' org.underpass.underpassd.plist >"$tmp/broken.plist"
if check_plist "$tmp/broken.plist" 2>/dev/null; then
  echo "installers/macos: a broken plist passed; the check proves nothing"; exit 1
fi
sed 's|<key>KeepAlive</key>|<key>KeepAlivee</key>|' org.underpass.underpassd.plist >"$tmp/nokeep.plist"
if check_plist "$tmp/nokeep.plist" 2>/dev/null; then
  echo "installers/macos: a plist without KeepAlive passed; the check proves nothing"; exit 1
fi
pass "the LaunchDaemon plist parses (plistlib) and runs the bundled helper at load, kept alive"

for s in build-pkg.sh scripts/postinstall uninstall.sh; do
  bash -n "$s"
done
shellcheck build-pkg.sh scripts/postinstall uninstall.sh
pass "build-pkg.sh, postinstall and uninstall.sh pass bash -n and shellcheck"

if [ "$(id -u)" != 0 ]; then
  if [ "${CI:-}" = true ]; then echo "installers/macos: the postinstall test needs root" >&2; exit 1; fi
  echo "*** installers/macos: POSTINSTALL TEST SKIPPED: it needs root (chown) ***" >&2
else
  # Stand-ins for the macOS tools the postinstall calls; each logs its arguments.
  mkdir -p "$tmp/bin"
  for tool in dscl dseditgroup launchctl chown chmod; do
    # shellcheck disable=SC2016 # the stand-in's own "$*" and "$1 $2"
    printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n[ "$1 $2" != ". -read" ]\n' "$tool" "$tmp" >"$tmp/bin/$tool"
  done
  printf '#!/bin/sh\necho alice\n' >"$tmp/bin/stat"
  chmod +x "$tmp/bin/"*
  volume() {
    rm -rf "$tmp/vol" "$tmp/calls"
    mkdir -p "$tmp/vol/Applications/Underpass.app/Contents/MacOS" "$tmp/vol/Library/LaunchDaemons"
    : >"$tmp/vol/Applications/Underpass.app/Contents/MacOS/underpassd"
    cp org.underpass.underpassd.plist "$tmp/vol/Library/LaunchDaemons/"
    chown -R 0:0 "$tmp/vol"
    chmod -R go-w "$tmp/vol"
  }
  postinstall() { PATH="$tmp/bin:$PATH" bash scripts/postinstall /tmp/pkg / "$tmp/vol" 2>"$tmp/err"; }

  volume
  chown nobody "$tmp/vol/Applications/Underpass.app/Contents/MacOS/underpassd"
  if postinstall; then echo "installers/macos: postinstall accepted a bundle owned by nobody"; exit 1; fi
  grep -q "is not owned by root" "$tmp/err"
  [ ! -e "$tmp/calls" ] || { echo "installers/macos: postinstall acted before refusing"; exit 1; }
  volume
  chmod o+w "$tmp/vol/Applications/Underpass.app/Contents/MacOS"
  if postinstall; then echo "installers/macos: postinstall accepted a world-writable bundle"; exit 1; fi
  grep -q "writable by everyone" "$tmp/err"
  pass "postinstall refuses a bundle not owned by root, or writable by everyone, before acting"

  volume
  postinstall || { cat "$tmp/err"; exit 1; }
  grep -q "^dseditgroup -o create .* underpass$" "$tmp/calls"
  grep -q "^dseditgroup -o edit -a alice -t user underpass$" "$tmp/calls"
  grep -q "^launchctl bootstrap system $tmp/vol/Library/LaunchDaemons/org.underpass.underpassd.plist$" "$tmp/calls"
  pass "postinstall creates the group, admits the console user and bootstraps the daemon"
fi

if python3 -c 'import yaml' 2>/dev/null; then
  python3 - ../../.github/workflows/macos.yml <<'PY'
import sys, yaml
with open(sys.argv[1]) as f:
    w = yaml.safe_load(f)
job = w["jobs"]["macos"]
targets = {m["target"] for m in job["strategy"]["matrix"]["include"]}
assert targets == {"aarch64-apple-darwin", "x86_64-apple-darwin"}, targets
runs = "\n".join(s.get("run", "") for s in job["steps"])
for needed in ["cargo test", "cargo clippy", "-p underpass-gui", "installers/macos/build-pkg.sh",
               "installers/macos/check.sh"]:
    assert needed in runs, f"the macOS job does not run {needed}"
PY
  pass "the macOS CI job parses and builds, lints, tests and packages for both architectures"
elif [ "$(uname -s)" = Darwin ]; then
  echo "installers/macos: PyYAML missing on this Mac: the workflow is checked on Linux"
else
  echo "installers/macos: python3-yaml is missing (scripts/install-deps.sh installs it)"; exit 1
fi
