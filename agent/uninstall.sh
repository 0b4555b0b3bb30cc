#!/bin/sh
# Stops the agent and removes everything the installer wrote under the install location.
BIN=$(cd "$(dirname "$0")" && pwd)
DIR=$(cd "$BIN/../.." && pwd)
"$BIN/svagent" stop >/dev/null 2>&1 || true
rm -rf "$DIR/Vx"
rmdir "$DIR" 2>/dev/null || true
