#!/usr/bin/env bash
# build-initramfs.sh [OUT] — the initramfs of flint's one-shot guests (README "One-shot
# guests"): an uncompressed newc cpio archive (the kernel unpacks it without decompressing,
# which matters where the guest kernel is emulated) holding
#   /init            flint-init (images/src/bin/flint_init.rs), static, stripped
#   /bin/busybox     Debian's busybox-static, with a symlink per applet in /bin
#   /dev/console     the console node the kernel opens for init (needs root to create)
#   /dev /proc /sys /tmp /root /flint   empty directories
# OUT defaults to images/out/initramfs.cpio. Installs busybox-static and cpio with apt-get
# when missing (root). Idempotent: OUT is only replaced when its content changes.
#
# Environment: CARGO_TARGET_DIR is honoured; FLINT_INIT=/path/to/flint-init skips cargo.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$here/out/initramfs.cpio}

need=()
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-initramfs.sh: need root to install ${need[*]} (or install them yourself)" >&2
        exit 1
    fi
    echo "build-initramfs.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${need[@]}"; }
fi
busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')

init=${FLINT_INIT:-}
if [ -z "$init" ]; then
    (cd "$repo" && cargo build -q --profile init -p images --bin flint-init)
    init=${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/init/flint-init
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,root,flint,etc}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
ln -s bin "$stage/sbin"
mkdir -p "$stage/usr"
ln -s ../bin "$stage/usr/bin"
ln -s ../bin "$stage/usr/sbin"
strip --strip-all -o "$stage/init" "$init"
if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$stage/dev/console" c 5 1
else
    echo "build-initramfs.sh: not root: no /dev/console in the archive (init starts without stdio)" >&2
fi
mkdir -p "$(dirname "$out")"
# Same inputs, same bytes: every timestamp at the epoch.
find "$stage" -mindepth 1 -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort \
    | cpio --quiet -o -H newc --owner=0:0 --reproducible) > "$stage.cpio"
if cmp -s "$stage.cpio" "$out"; then
    rm -f "$stage.cpio"
    echo "build-initramfs.sh: $out up to date ($(stat -c %s "$out") bytes)"
else
    mv "$stage.cpio" "$out"
    echo "build-initramfs.sh: wrote $out ($(stat -c %s "$out") bytes)"
fi
