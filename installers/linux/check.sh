#!/usr/bin/env bash
# Checks the Linux installer files with the tools that read them on a real system:
#   installers/linux/check.sh TARGET_DIR    (where cargo put underpassd)
# - underpassd.service: `systemd-analyze verify` (ExecStart pointed at the built binary), and
#   a copy broken on purpose must fail it, so this check can fail;
# - underpass.sysusers: systemd-sysusers creates the group in a scratch root;
# - underpass.desktop: desktop-file-validate;
# - underpass-mime.xml: update-mime-database, then *.underpass maps to application/x-underpass.
# The service itself is never started here (systemd is not PID 1 on the test machines).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
target=${1:?usage: check.sh TARGET_DIR}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok=0
pass() { echo "installers: ok: $*"; ok=$((ok + 1)); }

sed "s|^ExecStart=/usr/sbin/underpassd|ExecStart=$target/debug/underpassd|" underpassd.service >"$tmp/underpassd.service"
grep -q "^ExecStart=$target/" "$tmp/underpassd.service"
out=$(systemd-analyze verify --man=no "$tmp/underpassd.service" 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "installers: systemd-analyze has remarks:"; echo "$out"; exit 1; }
pass "underpassd.service verifies"
sed 's/^RestrictAddressFamilies=.*/RestrictAddressFamilies=AF_BOGUS/' "$tmp/underpassd.service" >"$tmp/broken.service"
if systemd-analyze verify --man=no "$tmp/broken.service" >/dev/null 2>&1 &&
  [ -z "$(systemd-analyze verify --man=no "$tmp/broken.service" 2>&1)" ]; then
  echo "installers: a broken unit passed systemd-analyze verify; the check proves nothing"; exit 1
fi
pass "a unit broken on purpose is caught"

mkdir -p "$tmp/root/etc"; : >"$tmp/root/etc/group"; : >"$tmp/root/etc/passwd"
systemd-sysusers --root="$tmp/root" "$PWD/underpass.sysusers" >/dev/null 2>&1
grep -q '^underpass:' "$tmp/root/etc/group"
pass "underpass.sysusers creates group underpass"

desktop-file-validate underpass.desktop
grep -q '^MimeType=x-scheme-handler/underpass;application/x-underpass;$' underpass.desktop
grep -q '^Exec=underpass-gui %u$' underpass.desktop
pass "underpass.desktop validates and claims underpass:// and .underpass"

mkdir -p "$tmp/mime/packages"; cp underpass-mime.xml "$tmp/mime/packages/"
update-mime-database "$tmp/mime" >/dev/null 2>&1
grep -q '^application/x-underpass:\*\.underpass$' "$tmp/mime/globs"
pass "underpass-mime.xml maps *.underpass to application/x-underpass"

echo "$ok passed, 0 failed"
