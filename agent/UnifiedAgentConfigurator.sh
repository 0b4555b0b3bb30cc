#!/bin/sh
# Registers the installed agent with the control plane and starts it:
#   UnifiedAgentConfigurator.sh -i <control plane URL or address> -P <passphrase file> [-k <function key file>]
#                               [-m <machine id>] [-d <disk id>=<device or image path> ...]
# Exit codes: 0 registered and started, 2 bad arguments, 20 registration refused or unreachable.
set -u
BIN=$(cd "$(dirname "$0")" && pwd)
ENDPOINT=
PASSFILE=
MACHINE=
KEYFILE=
DISKS=
while getopts "i:P:k:m:d:" opt; do
  case $opt in
    i) ENDPOINT=$OPTARG ;;
    P) PASSFILE=$OPTARG ;;
    k) KEYFILE=$OPTARG ;;
    m) MACHINE=$OPTARG ;;
    d) DISKS="$DISKS $OPTARG" ;;
    *) echo "usage: UnifiedAgentConfigurator.sh -i <endpoint> -P <passphrase file> [-m <machine id>] [-d <disk id>=<path>]" >&2; exit 2 ;;
  esac
done
[ -n "$ENDPOINT" ] && [ -r "$PASSFILE" ] || { echo "ERROR: -i and a readable -P file are required" >&2; exit 2; }
set -- register --endpoint "$ENDPOINT" --passphrase-file "$PASSFILE"
[ -n "$KEYFILE" ] && set -- "$@" --key-file "$KEYFILE"
[ -n "$MACHINE" ] && set -- "$@" --machine-id "$MACHINE"
# Disk ids and paths are plain (ids: letters, digits, . _ -; absolute paths without spaces).
for d in $DISKS; do set -- "$@" --disk "$d"; done
python3 "$BIN/asr_agent.py" "$@" || exit 20
"$BIN/svagent" start
