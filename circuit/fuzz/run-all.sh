#!/usr/bin/env bash
# Runs every cargo-fuzz target of trine-circuit and trine-directory (the
# fuzz crates in circuit/fuzz and directory/fuzz) for FUZZ_SECONDS (default
# 20) seconds each and fails if any of them crashes. Used by `make fuzz`;
# see docs/fuzzing.md.
#
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer: address (default) or none (~2.5x
#                   faster; trine-circuit itself has no unsafe code)
#   FUZZ_ARGS       extra libFuzzer flags for every target, e.g. "-jobs=2"
#   FUZZ_CRATES     which crates' targets to run (default "circuit directory")
#
# cargo-fuzz needs nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. Crash inputs land in
# CRATE/fuzz/artifacts/TARGET/.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-address}"
read -r -a user_args <<< "${FUZZ_ARGS:-}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz > /dev/null 2>&1 && ! cargo fuzz --version > /dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it (takes a few minutes)"
    cargo install cargo-fuzz --locked
fi

repo="$(cd "$fuzz_dir/../.." && pwd)"
read -r -a crates <<< "${FUZZ_CRATES:-circuit directory}"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
targets=()
failed=()
for crate in "${crates[@]}"; do
    cd "$repo/$crate"
    mapfile -t crate_targets < <(cargo fuzz list)
    if [ "${#crate_targets[@]}" -eq 0 ]; then
        echo "no fuzz targets found in $crate/fuzz" >&2
        exit 1
    fi
    for target in "${crate_targets[@]}"; do
        name="$crate/$target"
        targets+=("$name")
        # The stateful targets build a circuit (or votes) for every input,
        # so longer inputs cost little: do not start them short.
        extra=()
        case "$name" in
            circuit/relay_table | circuit/client_circuit | directory/compute) extra=(-len_control=0) ;;
        esac
        echo "=== $name: ${seconds}s (sanitizer: $sanitizer)"
        if ! cargo fuzz run --sanitizer "$sanitizer" "$target" -- \
            -max_total_time="$seconds" -print_final_stats=1 \
            "${extra[@]}" "${user_args[@]}" 2>&1 | tee "$logs/${crate}_$target.log"; then
            failed+=("$name")
        fi
    done
done

echo
echo "=== summary (${seconds}s per target)"
for name in "${targets[@]}"; do
    log="$logs/${name/\//_}.log"
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    rate="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    status=ok
    for bad in "${failed[@]}"; do
        [ "$bad" = "$name" ] && status=CRASHED
    done
    printf '%-26s %-8s %10s runs %8s exec/s\n' "$name" "$status" "${runs:-?}" "${rate:-?}"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in CRATE/fuzz/artifacts/; see docs/fuzzing.md)" >&2
    exit 1
fi
