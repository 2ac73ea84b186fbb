#!/usr/bin/env bash
# Runs the fuzz targets built in BUILD_DIR (cmake -DCLLM_FUZZ=ON, CC=clang)
# for SECONDS each, as many at once as there are cores, starting from the
# committed seeds (test/fuzz/seeds/<target>; never modified: new inputs go to
# BUILD_DIR/fuzz-corpus/<target>). Fails if any target reports a crash, a
# hang (-timeout), a leak, a sanitizer error or memory use over the limits.
#   test/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]    (default: every target)
# A finding is saved as BUILD_DIR/fuzz-artifacts/<target>-crash-<sha1> (or
# leak-, timeout-, oom-); reproduce it with BUILD_DIR/fuzz_<target> FILE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}" && pwd)
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors checkpoint tokenizer_file tokenizer_roundtrip tokenizer_train hf_tokenizer json config metrics plot)
fi
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"
# fontconfig (under cairo, fuzz_plot) keeps process-lifetime caches: the same
# suppression as the ASan test stage.
export LSAN_OPTIONS="suppressions=$here/../../.ci/lsan.supp:print_suppressions=0"
# Most targets write each input as a file in a scratch folder under $TMPDIR:
# memory, where there is a tmpfs, keeps the disk out of the figures.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

run_one() {
    local t=$1 log=$build/fuzz-logs/$1.log
    mkdir -p "$build/fuzz-corpus/$t"
    # -timeout: one input taking over 10 s is a hang. -rss_limit_mb and
    # -malloc_limit_mb: an input making the loader allocate over 2 GB is a
    # finding too (a file must not make cllm allocate what it does not hold).
    if "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" \
        "$build/fuzz-corpus/$t" "$here/seeds/$t" >"$log" 2>&1; then
        local last
        last=$(grep -aE '^#[0-9]+' "$log" | tail -1)
        echo "fuzz_$t: ok: $(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs," \
            "$(grep -ao 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$') exec/s," \
            "$(grep -o 'cov: [0-9]*' <<<"$last") $(grep -o 'ft: [0-9]*' <<<"$last")" \
            "$(grep -o 'corp: [0-9]*' <<<"$last")"
    else
        echo "fuzz_$t: FAILED (log $log):"
        grep -aE 'ERROR|SUMMARY|property broken|==[0-9]+==' "$log" | head -20
        ls "$build/fuzz-artifacts/$t-"* 2>/dev/null
        return 1
    fi
}

failed=0
running=0
for t in "${targets[@]}"; do
    [ -x "$build/fuzz_$t" ] || { echo "run.sh: no $build/fuzz_$t (build the fuzz target)" >&2; exit 1; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$(nproc)" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
[ "$failed" = 0 ] || { echo "run.sh: a fuzz target found a problem" >&2; exit 1; }
echo "run.sh: ${#targets[@]} targets, ${seconds} s each: no crash, hang, leak or sanitizer report"
