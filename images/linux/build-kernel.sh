#!/usr/bin/env bash
# build-kernel.sh [OUTDIR] — build flint's minimal x86_64 guest kernel from Debian's
# linux-source-6.1: `make allnoconfig` plus images/linux/flint.config, with the patches in
# images/linux/patches/ applied (see images/linux/README.md for what each one is for).
#
# OUTDIR (default images/linux/out-flint) receives:
#   vmlinux   the ELF kernel (PVH note; flint run --kernel OUTDIR/vmlinux)
#   config    its .config
#   VERSION   KEY=, SOURCE_VERSION=, KERNEL_RELEASE=, VMLINUX_SHA256=, BUILD_SECONDS=
#
# Cached and idempotent: the build is keyed by a hash of flint.config, the patches and the
# linux-source-6.1 package version, and kept in $FLINT_KERNEL_CACHE (default
# ~/.cache/flint/kernel/KEY). A second run with the same key copies the cached vmlinux and
# builds nothing. Installs linux-source-6.1 and the build tools with apt-get when missing
# (root).
#
# Environment:
#   FLINT_KERNEL_CACHE  cache directory (default ${XDG_CACHE_HOME:-~/.cache}/flint/kernel)
#   FLINT_KERNEL_JOBS   make -j (default: nproc)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=${1:-$here/out-flint}
cache=${FLINT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flint/kernel}
jobs=${FLINT_KERNEL_JOBS:-$(nproc)}
pkg=linux-source-6.1
start=$(date +%s)

need=()
dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
for tool in make:make gcc:gcc flex:flex bison:bison bc:bc perl:perl xz:xz-utils patch:patch; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-kernel.sh: need root to install ${need[*]} (or install them yourself)" >&2
        exit 1
    fi
    echo "build-kernel.sh: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${need[@]}"; }
fi

src_version=$(dpkg-query -W -f='${Version}' "$pkg")
key=$( { echo "$pkg $src_version"; cat "$here/flint.config" "$here"/patches/*.patch; } \
    | sha256sum | cut -c1-16)
dir=$cache/$key
mkdir -p "$outdir" "$cache"
# One build per key at a time (two test runs on one machine share the cache).
exec 9>"$dir.lock"
flock 9

if [ ! -s "$dir/vmlinux" ]; then
    echo "build-kernel.sh: building $key ($pkg $src_version) in $dir"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    tar -C "$dir.tmp" -xf "/usr/src/$pkg.tar.xz"
    tree=$dir.tmp/$pkg
    for p in "$here"/patches/*.patch; do
        patch -d "$tree" -p1 --quiet --forward < "$p"
    done
    make -C "$tree" -s ARCH=x86_64 KCONFIG_ALLCONFIG="$here/flint.config" allnoconfig
    # Every line of the fragment must survive Kconfig's dependency resolution.
    bad=0
    while IFS= read -r line; do
        case $line in
            CONFIG_*=*) want=$line ;;
            "# CONFIG_"*" is not set") want=$line ;;
            *) continue ;;
        esac
        name=${want#\# }; name=${name%%[= ]*}
        if [[ $want == \#* ]]; then
            grep -q "^$name=" "$tree/.config" && { echo "  $name: wanted off, is on" >&2; bad=1; }
        else
            grep -qx "$want" "$tree/.config" || { echo "  $want: not in .config" >&2; bad=1; }
        fi
    done < "$here/flint.config"
    ((bad == 0)) || { echo "build-kernel.sh: flint.config does not hold (above)" >&2; exit 1; }
    build_start=$(date +%s)
    make -C "$tree" -s ARCH=x86_64 -j"$jobs" vmlinux
    build_seconds=$(($(date +%s) - build_start))
    cp "$tree/vmlinux" "$dir.tmp/vmlinux"
    cp "$tree/.config" "$dir.tmp/config"
    {
        echo "KEY=$key"
        echo "SOURCE_VERSION=$src_version"
        echo "KERNEL_RELEASE=$(make -C "$tree" -s ARCH=x86_64 kernelrelease)"
        echo "VMLINUX_SHA256=$(sha256sum "$dir.tmp/vmlinux" | cut -d' ' -f1)"
        echo "BUILD_SECONDS=$build_seconds"
    } > "$dir.tmp/VERSION"
    # The tree is not kept: a new key starts from a fresh source tree anyway.
    rm -rf "$tree"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
else
    echo "build-kernel.sh: cached $key ($pkg $src_version)"
fi

for f in vmlinux config VERSION; do
    cmp -s "$dir/$f" "$outdir/$f" 2>/dev/null || cp "$dir/$f" "$outdir/$f"
done
# shellcheck disable=SC1091
. "$outdir/VERSION"
echo "build-kernel.sh: $outdir/vmlinux $(stat -c %s "$outdir/vmlinux") bytes," \
    "kernel $KERNEL_RELEASE, compiled in ${BUILD_SECONDS} s; this run took $(($(date +%s) - start)) s"
