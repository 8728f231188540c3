#!/usr/bin/env bash
# `npm run package`: builds the installable packages for this OS into dist/. One line per OS;
# each installer script documents its own options (passed through).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "$(uname -s)" in
  Linux)
    bash installers/linux/package.sh "$@"
    # The Windows MSI is cross-built here too (wixl), with the wintun.dll that must ship beside
    # the helper; that DLL cannot be downloaded from this machine, so it is given by path.
    if [ -n "${WINTUN_DLL:-}" ]; then
      bash installers/windows/build-msi.sh
    else
      echo "package: no MSI: set WINTUN_DLL=/path/to/wintun.dll (amd64, from wintun.net) to build it" >&2
    fi
    ;;
  *) echo "package: no packages for $(uname -s) yet" >&2; exit 1 ;;
esac
