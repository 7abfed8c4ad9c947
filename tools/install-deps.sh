#!/usr/bin/env bash
# Installs the Debian packages a make target needs, and only those missing.
# Usage: tools/install-deps.sh GROUP...   (groups: test demo proto)
# Needs root (or sudo) only when something is missing.
set -euo pipefail

declare -A groups=(
  # go test ./... : protoc checks that the committed generated code is current.
  # iproute2: the multi-host test puts hosts in network namespaces.
  # xfsprogs: agent/snapshot tests its reflink path on an XFS loop filesystem.
  # tgt, qemu-system-x86, qemu-block-extra (qemu's iSCSI initiator),
  # linux-image-amd64 and kmod: tools/lab boots a guest kernel wired to a
  # tgt tape library, the only place SG_IO runs (the host has no SCSI).
  [test]="protobuf-compiler iproute2 xfsprogs tgt qemu-system-x86 qemu-block-extra linux-image-amd64 kmod"
  # make demo: Go builds everything; nothing else is needed yet.
  [demo]=""
  [proto]="protobuf-compiler"
)

want=()
for g in "$@"; do
  if [[ -z "${groups[$g]+set}" ]]; then
    echo "install-deps: unknown group '$g' (known: ${!groups[*]})" >&2
    exit 2
  fi
  for p in ${groups[$g]}; do want+=("$p"); done
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
