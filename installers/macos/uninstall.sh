#!/bin/bash
# Removes Underpass from a Mac (documented in README.md, "macOS"):
#   sudo "/Library/Application Support/Underpass/uninstall.sh"
# Stops the helper (which restores DNS and routes on the way out), removes its PF anchor and
# releases its PF reference (so PF returns to the state it had), then deletes every file the
# pkg installed, the helper's state and the group. Profiles in users' home folders and their
# Keychain items are left alone.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "uninstall: run it with sudo" >&2; exit 1; }
label=org.underpass.underpassd
anchor=underpass
token_file=/var/run/underpassd.pf.json

launchctl bootout "system/$label" 2>/dev/null || true
rm -f "/Library/LaunchDaemons/$label.plist"

# The kill switch outlives the helper on purpose: take it down explicitly.
pfctl -a "$anchor" -F all 2>/dev/null || true
if [ -f "$token_file" ]; then
  token=$(sed -n 's/.*"token":\([0-9]*\).*/\1/p' "$token_file")
  [ -z "$token" ] || pfctl -X "$token" 2>/dev/null || true
fi
# Reload the system's own ruleset, which has no reference to our anchor.
pfctl -q -f /etc/pf.conf 2>/dev/null || true

rm -rf /Applications/Underpass.app /usr/local/bin/underpass /var/db/underpass \
  /var/run/underpass "$token_file" /var/run/underpassd.routes.json /var/log/underpassd.log
if dscl . -read /Groups/underpass >/dev/null 2>&1; then
  dseditgroup -o delete underpass
fi
pkgutil --forget org.underpass.pkg >/dev/null 2>&1 || true
rm -rf "/Library/Application Support/Underpass"
echo "uninstall: Underpass is removed"
