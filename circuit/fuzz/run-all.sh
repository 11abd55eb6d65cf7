#!/usr/bin/env bash
# Runs every cargo-fuzz target of trine-circuit for FUZZ_SECONDS (default 20)
# seconds each and fails if any of them crashes. Used by `make fuzz`; see
# docs/fuzzing.md.
#
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer: address (default) or none (~2.5x
#                   faster; trine-circuit itself has no unsafe code)
#   FUZZ_ARGS       extra libFuzzer flags for every target, e.g. "-jobs=2"
#
# cargo-fuzz needs nightly-only rustc flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. Crash inputs land in
# circuit/fuzz/artifacts/TARGET/.
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

cd "$fuzz_dir/.."
mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
    # The stateful targets build a circuit for every input, so longer inputs
    # (more steps per circuit) cost little: do not start them short.
    extra=()
    case "$target" in
        relay_table | client_circuit) extra=(-len_control=0) ;;
    esac
    echo "=== $target: ${seconds}s (sanitizer: $sanitizer)"
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        "${extra[@]}" "${user_args[@]}" 2>&1 | tee "$logs/$target.log"; then
        failed+=("$target")
    fi
done

echo
echo "=== summary (${seconds}s per target)"
for target in "${targets[@]}"; do
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logs/$target.log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    rate="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$logs/$target.log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    status=ok
    for bad in "${failed[@]}"; do
        [ "$bad" = "$target" ] && status=CRASHED
    done
    printf '%-16s %-8s %10s runs %8s exec/s\n' "$target" "$status" "${runs:-?}" "${rate:-?}"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in circuit/fuzz/artifacts/; see docs/fuzzing.md)" >&2
    exit 1
fi
