#!/usr/bin/env bash
# build-initramfs.sh [--modules DIR] [OUT] — the initramfs of flint's one-shot guests (README
# "One-shot guests"): an uncompressed newc cpio archive (the kernel unpacks it without
# decompressing, which matters where the guest kernel is emulated) holding the tree
# root-tree.sh describes: flint-init as /init, busybox-static, /dev/console.
#
# OUT defaults to images/out/initramfs.cpio. --modules DIR packs DIR's virtio modules and
# load-order (images/linux/fetch-debian-kernel.sh writes them to images/linux/out/modules) for
# Debian's stock kernel, which builds virtio as modules; that variant's OUT defaults to
# images/out/initramfs-stock.cpio. Installs busybox-static and cpio with apt-get when missing
# (root). Idempotent: OUT is only replaced when its content changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=images/root-tree.sh
. "$here/root-tree.sh"

modules=
if [ "${1:-}" = --modules ]; then
    modules=${2:?--modules needs a directory}
    shift 2
fi
out=${1:-$here/out/initramfs${modules:+-stock}.cpio}

root_tree_need busybox-static cpio
stage=$(mktemp -d)
trap 'rm -rf "$stage" "$stage.cpio"' EXIT
stage_root_tree "$stage" "$modules"
mkdir -p "$(dirname "$out")"
pack_tree "$stage" > "$stage.cpio"
replace_if_changed "$stage.cpio" "$out"
