#!/usr/bin/env bash
# Downloads the agent packages pinned in scripts/agent-packages.txt into hydration/payload/ (docs/hydration.md,
# "Bundled agents"). Idempotent: a file already there with the pinned checksum is kept. Needs apt-get (any
# Debian or Ubuntu machine); runs `apt-get update` once when the package lists lack a pinned version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
payload="$here/../hydration/payload"
mkdir -p "$payload"
work=$(mktemp -d)
# apt downloads as its unprivileged user _apt when it can write the folder
{ [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1 && chown _apt "$work"; } || true
trap 'rm -rf "$work"' EXIT
updated=""
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
while read -r name version sha256; do
  case "$name" in ''|'#'*) continue ;; esac
  file="${name}_${version//:/%3a}_all.deb"
  if [ -f "$payload/$file" ] && echo "$sha256  $payload/$file" | sha256sum -c --quiet - 2>/dev/null; then
    continue
  fi
  if ! apt-cache show "$name=$version" >/dev/null 2>&1 && [ -z "$updated" ]; then
    $sudo apt-get update -qq
    updated=1
  fi
  (cd "$work" && apt-get download -qq "$name=$version") || {
    echo "error: apt-get download $name=$version failed: the pinned version may have left the archive;" >&2
    echo "       pin the current one (apt-cache show $name) in scripts/agent-packages.txt" >&2
    exit 1
  }
  got=$(ls "$work"/"${name}"_*.deb)
  if ! echo "$sha256  $got" | sha256sum -c --quiet - ; then
    echo "error: $(basename "$got") does not match the SHA-256 pinned in scripts/agent-packages.txt" >&2
    exit 1
  fi
  # Remove other versions of the same package so the toolkit bundles exactly the pinned one.
  rm -f "$payload/${name}"_*.deb
  mv "$got" "$payload/$file"
  echo "bundled $file"
done < "$here/agent-packages.txt"
