#!/usr/bin/env bash
# `npm run package`: builds the installable packages for this OS into dist/. One line per OS;
# each installer script documents its own options (passed through).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "$(uname -s)" in
  Linux)
    bash installers/linux/package.sh "$@"
    # The Windows MSI is cross-built here too (mingw-w64, wixl), app included.
    bash installers/windows/build-msi.sh
    ;;
  *) echo "package: no packages for $(uname -s) yet" >&2; exit 1 ;;
esac
