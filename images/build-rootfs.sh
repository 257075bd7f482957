#!/usr/bin/env bash
# build-rootfs.sh [OUT] — the root image of flint's one-shot guests for `flint run --rootfs`
# (README "One-shot guests"): an ext4 image of the tree root-tree.sh describes (flint-init as
# /init, busybox-static, /dev/console), made with `mkfs.ext4 -d` (no loop mount, no root
# needed for the image itself). No journal: flint attaches it read-only and flint-init lays a
# RAM overlay over it, so nothing ever writes it.
#
# OUT defaults to images/out/rootfs.ext4. Installs busybox-static and e2fsprogs with apt-get
# when missing (root). Idempotent: OUT is rebuilt only when the tree changes (OUT.tree-sha256
# holds the hash of the tree as a reproducible cpio archive; mke2fs 1.47.0 stamps inodes with
# the current time, so the image's own bytes differ from one build to the next).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=images/root-tree.sh
. "$here/root-tree.sh"
out=${1:-$here/out/rootfs.ext4}

root_tree_need busybox-static e2fsprogs cpio
stage=$(mktemp -d)
trap 'rm -rf "$stage" "$stage.ext4"' EXIT
stage_root_tree "$stage"
key=$(pack_tree "$stage" | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.tree-sha256" 2>/dev/null)" = "$key" ]; then
    echo "build-rootfs.sh: $out up to date ($(stat -c %s "$out") bytes)"
    exit 0
fi
# Content plus a quarter for metadata, and 1 MiB of room, in whole MiB.
kib=$(du -sk --apparent-size "$stage" | cut -f1)
mib=$(( (kib * 5 / 4 + 1024 + 1023) / 1024 ))
uuid=8a1f0e6c-5d2b-4c3a-9e7f-f1a7f1a7f1a7
mkdir -p "$(dirname "$out")"
truncate -s "${mib}M" "$stage.ext4"
mkfs.ext4 -q -F -L flint-root -U "$uuid" -E "hash_seed=$uuid" \
    -O ^has_journal -m 0 -b 4096 -d "$stage" "$stage.ext4"
mv "$stage.ext4" "$out"
echo "$key" > "$out.tree-sha256"
echo "build-rootfs.sh: wrote $out ($(stat -c %s "$out") bytes)"
