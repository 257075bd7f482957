#!/usr/bin/env bash
# Build the libFuzzer targets of fuzz/ and run each for SECONDS (default
# 60), then print a table of executions, coverage and outcome per target.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds with plain cargo and the flags `cargo fuzz build` uses (cargo-fuzz
# 0.13: SanitizerCoverage, AddressSanitizer, debug assertions and overflow
# checks), so cargo-fuzz need not be installed; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take -Zsanitizer. Environment:
#   FLINT_FUZZ_SANITIZER=none   no AddressSanitizer (about 2x faster)
#   FLINT_FUZZ_ARGS="..."       extra libFuzzer options (e.g. -max_len=8192;
#                               for two cores, run two scripts on different
#                               targets rather than -jobs, whose output the
#                               table cannot read)
#
# Each target grows its working corpus fuzz/work/<target> (not committed),
# starting from the seeds in fuzz/corpus/<target>; a crash leaves its input
# in fuzz/artifacts/<target>/ and makes the script exit 1 (after the other
# targets ran). Reproduce one with
#   fuzz/target/address/x86_64-unknown-linux-gnu/release/<target> <crash file>
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(virtio_block virtio_net virtio_console virtio_mmio kernel_loader config)
fi
triple=x86_64-unknown-linux-gnu

flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
    -Ccodegen-units=1
)
sanitizer=${FLINT_FUZZ_SANITIZER:-address}
if [ "$sanitizer" = address ]; then
    flags+=(-Zsanitizer=address)
fi
# One build folder per sanitizer, so switching does not rebuild everything.
target_dir=target/$sanitizer
echo "fuzz/run.sh: building ${targets[*]}" >&2
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" \
    cargo build --release --target "$triple" --target-dir "$target_dir" "${bins[@]}"

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    echo "fuzz/run.sh: $t for ${seconds}s" >&2
    rc=0
    # shellcheck disable=SC2086 # FLINT_FUZZ_ARGS is a list of options
    "$target_dir/$triple/release/$t" -max_total_time="$seconds" -timeout=10 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        ${FLINT_FUZZ_ARGS:-} "work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
    # The last status line: "#N DONE cov: C ft: F corp: K/S ... exec/s: E".
    line=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$line")
    rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    if ((rc == 0)); then
        result=ok
    else
        result="CRASH (exit $rc; see $log)"
        status=1
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -n 5 >&2 || true
    fi
    summary+=("$(printf '%-15s %12s %9s %7s %8s %7s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

printf '\n%-15s %12s %9s %7s %8s %7s  %s\n' target execs exec/s cov ft corpus result
printf '%s\n' "${summary[@]}"
exit "$status"
