# root-tree.sh — sourced by build-initramfs.sh, build-rootfs.sh and build-debian-rootfs.sh:
# flint-init, and the file tree of a one-shot guest's root, the same in the first two images.
#   /init            flint-init (images/src/bin/flint_init/), static, stripped
#   /bin/busybox     Debian's busybox-static, with a symlink per applet in /bin
#   /dev/console     the console node the kernel opens for init (needs root to create)
#   /dev /proc /sys /tmp /root /flint /etc   empty directories
#   /lib/modules/    with --modules DIR only: DIR's *.ko files and its load-order (the
#                    stock-kernel variant; flint-init loads them in that order)
# root_tree_need installs the packages a script names with apt-get when missing (root).
# flint_init_binary honours CARGO_TARGET_DIR; FLINT_INIT=/path/to/flint-init skips cargo.

root_tree_need() { # PACKAGE... : install the missing ones
    local need=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    ((${#need[@]})) || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "$(basename "$0"): need root to install ${need[*]} (or install them yourself)" >&2
        exit 1
    fi
    echo "$(basename "$0"): installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${need[@]}"; }
}

# flint_init_binary : print the path of flint-init, built with the size-optimised profile.
flint_init_binary() {
    local repo
    if [ -n "${FLINT_INIT:-}" ]; then
        echo "$FLINT_INIT"
        return
    fi
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    (cd "$repo" && cargo build -q --profile init -p images --bin flint-init)
    echo "${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/init/flint-init"
}

# pack_tree STAGE : STAGE as a reproducible newc cpio archive, on stdout.
pack_tree() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort \
        | cpio --quiet -o -H newc --owner=0:0 --reproducible)
}

# stage_root_tree STAGE [MODULES_DIR]
stage_root_tree() {
    local stage=$1 modules=${2:-} busybox init applet
    busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
    init=$(flint_init_binary)
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
        echo "$(basename "$0"): not root: no /dev/console in the image (init starts without stdio)" >&2
    fi
    if [ -n "$modules" ]; then
        [ -f "$modules/load-order" ] || { echo "$(basename "$0"): $modules/load-order: missing" >&2; exit 1; }
        mkdir -p "$stage/lib/modules"
        # PCI transports and the RNG are of no use on flint's bus: loading them costs boot time.
        grep -Ev '^(virtio_pci|virtio-rng)' "$modules/load-order" > "$stage/lib/modules/load-order"
        while read -r ko; do
            cp "$modules/$ko" "$stage/lib/modules/$ko"
        done < "$stage/lib/modules/load-order"
    fi
    # Same inputs, same bytes: every timestamp at the epoch.
    find "$stage" -mindepth 1 -exec touch -h -d @0 {} +
}

# replace_if_changed NEW OUT : move NEW to OUT unless OUT already has these bytes.
replace_if_changed() {
    if cmp -s "$1" "$2"; then
        rm -f "$1"
        echo "$(basename "$0"): $2 up to date ($(stat -c %s "$2") bytes)"
    else
        mv "$1" "$2"
        echo "$(basename "$0"): wrote $2 ($(stat -c %s "$2") bytes)"
    fi
}
