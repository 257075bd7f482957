#!/bin/sh
# Builds the probe standalone, exactly as vmm/build.rs does, for debugging:
#   images/probe/build.sh [OUTPUT]      (default /tmp/probe.elf)
# then e.g. `objdump -d OUTPUT`, or boot it under QEMU (see README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/probe.elf}
"${RUSTC:-rustc}" --edition 2021 --crate-type bin --crate-name probe \
    --target x86_64-unknown-linux-gnu \
    -C opt-level=2 -C panic=abort -C relocation-model=static \
    -C target-cpu=x86-64 -C debuginfo=0 -C codegen-units=1 \
    -C force-unwind-tables=no -C strip=debuginfo \
    -C link-arg=-nostdlib -C link-arg=-static -C link-arg=-no-pie \
    -C "link-arg=-T$here/link.ld" -C link-arg=-Wl,--build-id=none \
    -o "$out" "$here/src/main.rs"
ls -l "$out"
