#!/usr/bin/env bash
# Builds the benchmark peers from ../shared/peers (outside this repository):
# the raw-KVM "floor" program and the trivial PVH guest, into OUTDIR
# (default: target/peers). Needs gcc and nasm (apt-get install nasm).
#
#   images/peers.sh [OUTDIR]
#   flint bench --floor OUTDIR/floor --peer-guest OUTDIR/guest.elf
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${FLINT_PEERS_SRC:-$root/../shared/peers}"
out="${1:-$root/target/peers}"
if [ ! -d "$src" ]; then
    echo "peers.sh: no peers at $src (set FLINT_PEERS_SRC)" >&2
    exit 1
fi
command -v nasm >/dev/null || { echo "peers.sh: nasm is missing (apt-get install nasm)" >&2; exit 1; }
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"/
chmod -R u+w "$work"
make -s -C "$work/floor"
sh "$work/guest/build.sh" >/dev/null
cp "$work/floor/floor" "$work/guest/guest.elf" "$out"/
echo "peers.sh: built $out/floor and $out/guest.elf"
