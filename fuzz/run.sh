#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time; exits non-zero if any target finds a crash
# (panic, abort, timeout, out-of-memory). Prints executions and speed per target.
#
#   fuzz/run.sh 60                      # 60 s per target
#   FUZZ_RUNS=10000000 fuzz/run.sh 3600 # stop each target after 10M executions (or 3600 s)
#   fuzz/run.sh 60 request              # only the named targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Runs on stable with `-s none` (no sanitizer;
# coverage instrumentation only), release mode with debug assertions and overflow checks. The committed
# seeds in fuzz/corpus/<target>/ are read, never written: what the fuzzer finds goes to
# fuzz/target/corpus/<target>/, crashing inputs to fuzz/artifacts/<target>/.
set -euo pipefail

secs="${1:?usage: fuzz/run.sh <seconds per target> [target...]}"
shift
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s none

runs_flag=()
if [ -n "${FUZZ_RUNS:-}" ]; then
    runs_flag=("-runs=${FUZZ_RUNS}")
fi

failed=0
summary=()
for t in "${targets[@]}"; do
    work="fuzz/target/corpus/$t"
    log="fuzz/target/logs/$t.log"
    mkdir -p "$work" "$(dirname "$log")"
    echo "== fuzzing $t for up to ${secs}s"
    set +e
    # dispatch keeps a broker's data in $TMPDIR; a crashed run cannot clean it up, so give each run its own.
    tmp="fuzz/target/tmp/$t"
    rm -rf "$tmp" && mkdir -p "$tmp"
    seeds="fuzz/corpus/$t"
    # dispatch takes the same frames as request.
    [ "$t" = dispatch ] && seeds="fuzz/corpus/request"
    TMPDIR="$PWD/$tmp" cargo fuzz run -s none "$t" "$work" "$seeds" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${runs_flag[@]}" >"$log" 2>&1
    rc=$?
    set -e
    rm -rf "$tmp"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        result="ok, 0 crashes"
    else
        result="FAILED (exit $rc): see $log and fuzz/artifacts/$t/"
        failed=1
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -20 || true
    fi
    summary+=("$(printf '%-14s %12s execs %8s exec/s  %s' "$t" "${execs:-?}" "${speed:-?}" "$result")")
done

echo "== fuzz summary (${secs}s per target${FUZZ_RUNS:+, at most $FUZZ_RUNS runs})"
printf '%s\n' "${summary[@]}"
exit "$failed"
