#!/usr/bin/env bash
# build-debian-rootfs.sh [OUT] — a Debian root image for `flint run --rootfs` (README "Your
# own root image"): Debian bookworm's minbase (mmdebstrap, from the host's configured mirror)
# with flint-init as /init, as an ext4 image made with `mkfs.ext4 -d`. It shows that a
# distribution's own userland (dynamically linked, dpkg, dash) runs as a one-shot guest with
# nothing of flint's but /init.
#
# OUT defaults to images/out/debian.ext4. Needs root (mmdebstrap, and apt-get to install it
# and e2fsprogs when missing). Rebuilt only when flint-init or the suite changes
# (OUT.key); FLINT_DEBIAN_SUITE overrides the suite (default bookworm).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=images/root-tree.sh
. "$here/root-tree.sh"
out=${1:-$here/out/debian.ext4}
suite=${FLINT_DEBIAN_SUITE:-bookworm}

root_tree_need mmdebstrap e2fsprogs
init=$(flint_init_binary)
key="$suite $(sha256sum "$init" | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    echo "build-debian-rootfs.sh: $out up to date"
    exit 0
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage" "$stage.ext4"' EXIT
start=$SECONDS
mmdebstrap --quiet --variant=minbase "$suite" "$stage/root"
strip --strip-all -o "$stage/root/init" "$init"
kib=$(du -sk --apparent-size "$stage/root" | cut -f1)
mib=$(( (kib * 5 / 4 + 65536 + 1023) / 1024 ))
truncate -s "${mib}M" "$stage.ext4"
mkfs.ext4 -q -F -L flint-debian -O ^has_journal -m 0 -d "$stage/root" "$stage.ext4"
mkdir -p "$(dirname "$out")"
mv "$stage.ext4" "$out"
echo "$key" > "$out.key"
echo "build-debian-rootfs.sh: wrote $out ($mib MiB, $suite minbase) in $((SECONDS - start)) s"
