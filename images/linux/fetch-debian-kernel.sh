#!/usr/bin/env bash
# fetch-debian-kernel.sh [OUTDIR] — fetch Debian's stock cloud kernel for flint's real-kernel
# tests and extract its ELF vmlinux with our own extractor (images/src/vmlinux).
#
# OUTDIR (default images/linux/out) receives:
#   bzImage      boot/vmlinuz-* from the package, unchanged
#   vmlinux      the ELF kernel inside it (cargo run -p images --bin extract-vmlinux)
#   config       boot/config-* from the package
#   modules/     the virtio modules (Debian builds virtio as modules) and load-order
#   VERSION      PACKAGE=, PACKAGE_VERSION=, KERNEL_RELEASE=, COMPRESSION=, *_SHA256=
#
# Cached: if OUTDIR/VERSION names the package and version apt offers now and the files match
# their checksums, nothing is downloaded. Runs unattended as root (apt-get update/install only
# when needed); as another user, apt lists must already exist and the tools be installed.
#
# Environment:
#   FLINT_KERNEL_META  metapackage to resolve (default linux-image-cloud-amd64)
#   FLINT_KERNEL_PKG   exact image package to fetch instead of resolving the metapackage
#   EXTRACT_VMLINUX    a prebuilt extract-vmlinux binary (default: cargo run, honouring
#                      CARGO_TARGET_DIR)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
outdir=${1:-$here/out}
meta=${FLINT_KERNEL_META:-linux-image-cloud-amd64}
export DEBIAN_FRONTEND=noninteractive
start=$SECONDS

# Decompressor command → Debian package (see Compression::debian_package).
declare -A tool_pkg=([gzip]=gzip [xz]=xz-utils [lzma]=xz-utils [zstd]=zstd [lz4]=lz4
                     [bzip2]=bzip2 [lzop]=lzop)
# Virtio modules worth keeping, in load order (dependencies first).
virtio_modules=(
    net/core/failover.ko drivers/net/net_failover.ko
    drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_mmio.ko
    drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
    drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko drivers/char/virtio_console.ko
    drivers/net/virtio_net.ko drivers/char/hw_random/virtio-rng.ko
)

say() { printf 'fetch-debian-kernel: %s\n' "$*"; }
die() { printf 'fetch-debian-kernel: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "needs root to run: $* (run as root, or install what it needs first)"
    fi
}

apt_update() {
    say "apt-get update"
    as_root apt-get -q -o=Dpkg::Use-Pty=0 update >/dev/null
}

# Sets $pkg and $ver to the image package apt offers now.
resolve() {
    if [ -n "${FLINT_KERNEL_PKG:-}" ]; then
        pkg=$FLINT_KERNEL_PKG
    else
        pkg=$(apt-cache depends "$meta" 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^<?linux-image-/ { gsub(/[<>]/, "", $2); print $2; exit }')
        [ -n "$pkg" ] || return 1
    fi
    ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
    [ -n "$ver" ]
}

size_of() { stat -c %s "$1"; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
field() { sed -n "s/^$1=//p" "$outdir/VERSION" 2>/dev/null; }

# True if OUTDIR already holds intact output for $pkg $ver.
cached() {
    [ -f "$outdir/VERSION" ] && [ -s "$outdir/bzImage" ] && [ -s "$outdir/vmlinux" ] &&
        [ "$(field PACKAGE)" = "$pkg" ] && [ "$(field PACKAGE_VERSION)" = "$ver" ] &&
        [ "$(sha_of "$outdir/bzImage")" = "$(field BZIMAGE_SHA256)" ] &&
        [ "$(sha_of "$outdir/vmlinux")" = "$(field VMLINUX_SHA256)" ]
}

show() {
    say "$1 $(field PACKAGE) $(field PACKAGE_VERSION) (kernel $(field KERNEL_RELEASE)," \
        "$(field COMPRESSION)) in $outdir:"
    for f in bzImage vmlinux config; do
        printf '  %-9s %10s bytes\n' "$f" "$(size_of "$outdir/$f")"
    done
    local modules=("$outdir"/modules/*.ko)
    printf '  modules/  %s\n' "${modules[*]##*/}"
    say "done in $((SECONDS - start)) s"
}

# Installs the decompressors that are missing (all are small; the extractor picks one).
ensure_tools() {
    local missing=()
    for tool in "${!tool_pkg[@]}"; do
        command -v "$tool" >/dev/null || missing+=("${tool_pkg[$tool]}")
    done
    command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this script needs a Debian host"
    [ ${#missing[@]} -eq 0 ] && return
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    say "apt-get install ${missing[*]}"
    as_root apt-get -q -y -o=Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}" \
        >/dev/null
}

extractor() {
    if [ -n "${EXTRACT_VMLINUX:-}" ]; then
        "$EXTRACT_VMLINUX" "$@"
    else
        cargo run --quiet --manifest-path "$repo/Cargo.toml" -p images --bin extract-vmlinux -- "$@"
    fi
}

apt_download() {
    # As root, apt drops to the _apt user, which cannot write to our private temp dir.
    local sandbox=()
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$work" && apt-get -q "${sandbox[@]}" download "$pkg=$ver" >/dev/null)
}

# Downloads $pkg=$ver into $work; on failure refreshes stale apt lists once and re-resolves.
download() {
    apt_download 2>/dev/null && return
    apt_update
    resolve || die "cannot resolve $meta after apt-get update"
    cached && { show "up to date:"; exit 0; }
    apt_download || die "apt-get download $pkg=$ver failed"
}

install_modules() {
    local root=$1 release=$2 order=()
    rm -rf "$outdir/modules"
    mkdir -p "$outdir/modules"
    for m in "${virtio_modules[@]}"; do
        local src=$root/lib/modules/$release/kernel/$m
        [ -f "$src" ] || continue
        cp "$src" "$outdir/modules/"
        order+=("$(basename "$m")")
    done
    printf '%s\n' "${order[@]}" >"$outdir/modules/load-order"
}

main() {
    if ! resolve; then
        apt_update
        resolve || die "apt has no package $meta (or what it depends on); is this Debian?"
    fi
    say "$meta -> $pkg $ver"
    if cached; then
        show "up to date:"
        return
    fi
    ensure_tools
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    download
    local deb
    deb=$(ls "$work"/*.deb)
    say "downloaded $(basename "$deb") ($(size_of "$deb") bytes)"
    dpkg-deb -x "$deb" "$work/root"
    local vmlinuz=("$work"/root/boot/vmlinuz-*)
    if [ ${#vmlinuz[@]} -ne 1 ] || [ ! -f "${vmlinuz[0]}" ]; then
        die "$pkg has no single boot/vmlinuz-*"
    fi
    local release=${vmlinuz[0]##*/vmlinuz-}

    mkdir -p "$outdir"
    rm -f "$outdir/VERSION"
    cp "${vmlinuz[0]}" "$outdir/bzImage.tmp" && mv "$outdir/bzImage.tmp" "$outdir/bzImage"
    cp "$work/root/boot/config-$release" "$outdir/config"
    local report
    report=$(extractor "$outdir/bzImage" "$outdir/vmlinux") || die "extract-vmlinux failed"
    printf '%s\n' "$report"
    install_modules "$work/root" "$release"
    {
        echo "PACKAGE=$pkg"
        echo "PACKAGE_VERSION=$ver"
        echo "KERNEL_RELEASE=$release"
        echo "COMPRESSION=$(sed -n 's/^payload: \([a-z0-9]*\) .*/\1/p' <<<"$report")"
        echo "BZIMAGE_SHA256=$(sha_of "$outdir/bzImage")"
        echo "VMLINUX_SHA256=$(sha_of "$outdir/vmlinux")"
    } >"$outdir/VERSION.tmp"
    mv "$outdir/VERSION.tmp" "$outdir/VERSION"
    show "fetched"
}

main
