#!/bin/sh
# Builds the probe standalone, exactly as vmm/build.rs does, for debugging:
#   images/probe/build.sh [OUTPUT]      (default /tmp/probe.elf)
# then e.g. `objdump -d OUTPUT`, or boot it under QEMU (see README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd -P)
out=${1:-/tmp/probe.elf}
"${RUSTC:-rustc}" --edition=2021 --crate-type=bin --crate-name=probe \
    --target=x86_64-unknown-linux-gnu \
    -Copt-level=3 -Cpanic=abort -Crelocation-model=static \
    -Ctarget-cpu=x86-64 -Cdebuginfo=0 -Ccodegen-units=1 \
    -Cforce-unwind-tables=no -Cstrip=debuginfo \
    -Clink-arg=-nostdlib -Clink-arg=-static -Clink-arg=-no-pie \
    -Clink-arg=-Wl,--build-id=none \
    "-Clink-arg=-T$here/link.ld" "--remap-path-prefix=$here=probe" \
    -o "$out" "$here/src/main.rs"
ls -l "$out"
