#!/usr/bin/env bash
# Static analysis of infra/ with checkov, in its own virtualenv.
#
# checkov pins many libraries (boto3, packaging, networkx, ...) that conflict with the app's
# requirements, so it lives in .venv-checkov, built from requirements-checkov.txt. The venv is
# (re)built only when that file changes, so a second run costs only the scan.
#
# Usage: scripts/checkov.sh [extra checkov args]     e.g. scripts/checkov.sh --output json
# Exit status: checkov's (non-zero when any check fails or a file does not parse).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
REQS="$ROOT/requirements-checkov.txt"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.requirements.sha256"

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/checkov" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; install Python 3.11" >&2; exit 1; }
    echo "checkov.sh: building $VENV from requirements-checkov.txt" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # pip's exit status is kept; only the index's noise about absent local mirrors is filtered.
    pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
    pip install -q --no-deps -r "$REQS" || { echo "error: installing checkov failed" >&2; exit 1; }
    # --no-deps installs exactly the lock; pip check proves the lock is complete and consistent.
    "$VENV/bin/python" -m pip check >&2
    echo "$want" > "$STAMP"
fi

# BC_SKIP_MAPPING / --skip-download: no calls to the vendor's platform; the scan is fully offline.
export BC_SKIP_MAPPING=TRUE
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
cd "$ROOT"
exec "$VENV/bin/checkov" --directory infra --framework bicep --skip-download --compact --quiet "$@"
