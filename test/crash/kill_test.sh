#!/usr/bin/env bash
# Crash-injection test (docs/RELIABILITY.md, "Crash injection").
#
# Kills `cllm train --save-every 1` with SIGKILL at every file-system step of
# a run (through the killshim LD_PRELOAD library), at every step of a resumed
# run after a first kill (two crashes in a row), and at random instants. After
# each kill the run folder must be usable: `eval`, `sample` and
# `train --resume` work, or, before the first checkpoint, all three refuse
# with one line and exit 2 and a fresh `train --out DIR` works there. Every
# chain of kills and resumes is continued to the end of the run; its final
# model.safetensors must be byte-identical to an uninterrupted run's, and the
# folder must hold no leftovers of the dead saves.
#
# usage: kill_test.sh CLLM KILLSHIM SOURCE_DIR
# Knobs (not CLLM_*: cllm rejects unknown CLLM_* variables):
#   KILL_TEST_SEED           seed of the random instants (printed)
#   KILL_TEST_STEPS          optimizer steps per run (default 4)
#   KILL_TEST_PAIR_BUDGET    most kills in resumed runs (default 150)
#   KILL_TEST_RANDOM_CHAINS  chains killed at random instants (default 30)
#   KILL_TEST_KEEP=1         keep the work folder (printed) for inspection
#   KILL_TEST_TMPDIR         where to work (default /dev/shm, else $TMPDIR or /tmp)
set -uo pipefail

[ $# -eq 3 ] || { echo "usage: $0 CLLM KILLSHIM SOURCE_DIR" >&2; exit 2; }
cllm=$(realpath "$1")
shim=$(realpath "$2")
src=$3
seed=${KILL_TEST_SEED:-20261201}
steps=${KILL_TEST_STEPS:-4}
pair_budget=${KILL_TEST_PAIR_BUDGET:-150}
random_chains=${KILL_TEST_RANDOM_CHAINS:-30}
min_kills=200
max_detailed=2 # failures of each kind shown with a folder listing; the rest get one line each

. "$(dirname "$0")/lib.sh"
clean_environment

# A SIGKILL loses nothing from the page cache, so the saves' fsyncs protect
# nothing here, and on a disk they take most of the time: work in memory.
base=${KILL_TEST_TMPDIR:-}
[ -n "$base" ] || { [ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm; }
work=$(mktemp -d "${base:-${TMPDIR:-/tmp}}/cllm-kill.XXXXXX") || exit 1
if [ "${KILL_TEST_KEEP:-0}" = 1 ]; then
    echo "work folder: $work"
else
    trap 'rm -rf "$work"' EXIT
fi
start_s=$SECONDS

corpus=$work/corpus.txt
head -c 16000 "$src/data/tinyshakespeare.txt" >"$corpus" || exit 1
train_flags=(--preset tiny --steps "$steps" --save-every 1 --seed 7 --eval-every 0 --sample-tokens 0 --quiet)

kills=0 kills_a=0 kills_b=0 kills_c=0 chains=0 unreached=0
unloadable=0 unresumable=0 bad_refusals=0 foreign=0 mismatched=0 strays=0 failures=0

# ---- running cllm ------------------------------------------------------------

ms_to_s() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_train MODE DIR SPEC [FLAGS...]: one `cllm train`, fresh (--out DIR) or
# resumed (--resume DIR). SPEC: "" runs it to its end; "count" logs every
# file-system step to $work/shim.log; "op:K" kills it before its K-th step;
# "time:MS" kills it MS milliseconds after its start. Sets rc; the output is
# in $work/train.out and $work/train.err.
run_train() {
    local mode=$1 dir=$2 spec=$3
    shift 3
    local cmd
    if [ "$mode" = fresh ]; then
        cmd=("$cllm" train "${train_flags[@]}" --out "$dir" "$@" "$corpus")
    else
        cmd=("$cllm" train --resume "$dir" --quiet "$@")
    fi
    rm -f "$work/shim.log"
    case "$spec" in
    "") "${cmd[@]}" ;;
    count) KILLSHIM_LOG=$work/shim.log LD_PRELOAD=$shim "${cmd[@]}" ;;
    op:*) KILLSHIM_AT=${spec#op:} KILLSHIM_LOG=$work/shim.log LD_PRELOAD=$shim "${cmd[@]}" ;;
    time:*) timeout -s KILL "$(ms_to_s "${spec#time:}")" "${cmd[@]}" ;;
    esac >"$work/train.out" 2>"$work/train.err" </dev/null
    rc=$?
}

# The file-system steps of the last counting run, with pids taken out of the
# temporary names so that two runs' logs compare line by line.
steps_logged() { cut -d' ' -f2- "$work/shim.log" | sed 's/\.tmp\.[0-9]*/.tmp.PID/g'; }

# Number of leading lines two files share.
common_prefix() {
    awk 'NR == FNR {a[NR] = $0; n1 = NR; next} !done && FNR <= n1 && a[FNR] == $0 {n = FNR; next} {done = 1} END {print n + 0}' "$1" "$2"
}

# ---- reporting ---------------------------------------------------------------

# fail COUNTER LABEL SPEC DIR MESSAGE: counts one failure of a kind and, for
# the first few of each kind in each phase, shows how to reproduce it and
# what the folder holds.
declare -A shown
fail() {
    local counter=$1 label=$2 spec=$3 dir=$4 msg=$5
    eval "$counter=\$(($counter + 1))"
    failures=$((failures + 1))
    echo "FAIL [$label] $msg"
    local kind="$counter ${label%% *}"
    shown[$kind]=$((${shown[$kind]:-0} + 1))
    [ "${shown[$kind]}" -le "$max_detailed" ] || return 0
    case "$spec" in
    op:*) [ -f "$work/kill.log" ] && echo "  killed before file-system step: $(grep ' KILL$' "$work/kill.log" | tail -1)" ;;
    esac
    echo "  chain: $chain_story"
    echo "  folder $dir:"
    list_folder "$dir"
    return 0
}

# ---- what a folder must look like ------------------------------------------

# A committed model must be one of the uninterrupted run's checkpoints.
is_reference_model() {
    local s
    for s in $(seq 1 "$steps"); do cmp -s "$1" "$work/ref/model.$s" && return 0; done
    return 1
}

# expect_refusal LABEL SPEC DIR WHAT CMD...: CMD must exit 2 with one line.
expect_refusal() {
    local label=$1 spec=$2 dir=$3 what=$4
    shift 4
    "$@" >/dev/null 2>"$work/check.err" </dev/null
    local code=$? lines
    lines=$(wc -l <"$work/check.err")
    if [ "$code" -ne 2 ] || [ "$lines" -ne 1 ]; then
        fail bad_refusals "$label" "$spec" "$dir" "no checkpoint yet: $what should refuse with one line, exit 2; got exit $code, $lines lines"
    fi
}

# check_after_kill LABEL SPEC DIR: what a reader and the next writer find.
# Returns 0 when the run continues with --resume, 1 when it starts afresh.
check_after_kill() {
    local label=$1 spec=$2 dir=$3
    rm -f "$work/check.err"
    if ! has_checkpoint "$dir"; then
        expect_refusal "$label" "$spec" "$dir" eval "$cllm" eval "$dir"
        expect_refusal "$label" "$spec" "$dir" sample "$cllm" sample "$dir" --tokens 4
        expect_refusal "$label" "$spec" "$dir" "train --resume" "$cllm" train --resume "$dir" --quiet
        return 1
    fi
    local broken=""
    "$cllm" eval "$dir" >/dev/null 2>"$work/check.err" </dev/null || broken="eval exit $?: $(head -1 "$work/check.err")"
    if [ -z "$broken" ]; then
        "$cllm" sample "$dir" --tokens 4 --seed 1 >/dev/null 2>"$work/check.err" </dev/null ||
            broken="sample exit $?: $(head -1 "$work/check.err")"
    fi
    [ -z "$broken" ] || fail unloadable "$label" "$spec" "$dir" "unloadable after the kill: $broken"
    if [ -z "$broken" ] && ! is_reference_model "$dir/model.safetensors"; then
        fail foreign "$label" "$spec" "$dir" "model.safetensors is none of the uninterrupted run's checkpoints"
    fi
    return 0
}

# chain LABEL PHASE DIR NEXT SPEC...: trains in DIR (NEXT: fresh or resume)
# once per SPEC, each killed as SPEC says, checking the folder after each
# kill, then once more to the end of the run; the end must match the
# uninterrupted run and leave no leftovers.
chain() {
    local label=$1 phase=$2 dir=$3 next=$4 spec
    shift 4
    chains=$((chains + 1))
    chain_story=""
    for spec in "$@" ""; do
        run_train "$next" "$dir" "$spec"
        rm -f "$work/kill.log"
        [ -f "$work/shim.log" ] && cp "$work/shim.log" "$work/kill.log"
        chain_story+="${chain_story:+ -> }$next${spec:+ killed at $spec}"
        if [ "$rc" -eq 137 ] && [ -n "$spec" ]; then
            kills=$((kills + 1))
            eval "kills_$phase=\$((kills_$phase + 1))"
            if check_after_kill "$label" "$spec" "$dir"; then next=resume; else next=fresh; fi
            continue
        fi
        if [ "$rc" -ne 0 ]; then
            chain_story+=" (exit $rc)"
            fail unresumable "$label" "$spec" "$dir" "train ($next) after the kill: exit $rc: $(head -1 "$work/train.err")"
            return
        fi
        case "$spec" in op:*) unreached=$((unreached + 1)) ;; esac
        break
    done
    if ! cmp -s "$dir/model.safetensors" "$work/ref/model.final"; then
        fail mismatched "$label" "$spec" "$dir" "the finished chain's model.safetensors differs from the uninterrupted run's"
    fi
    local left
    left=$(stray_files "$dir")
    [ -z "$left" ] || fail strays "$label" "$spec" "$dir" "leftovers after the next start: $(echo $left)"
}

# ---- the uninterrupted run -----------------------------------------------------

echo "cllm: $cllm"
echo "settings: cllm train ${train_flags[*]} --out DIR corpus (16000 bytes of data/tinyshakespeare.txt), OMP_NUM_THREADS=1"
mkdir -p "$work/ref"
t0=$(now_ms)
run_train fresh "$work/full" ""
run_ms=$(($(now_ms) - t0))
[ "$rc" -eq 0 ] || { echo "FAIL: the uninterrupted run exits $rc: $(head -1 "$work/train.err")"; exit 1; }
cp "$work/full/model.safetensors" "$work/ref/model.final"
# The model of every step, from a run stopped and resumed at each one.
for s in $(seq 1 "$steps"); do
    if [ "$s" -eq 1 ]; then run_train fresh "$work/stepwise" "" --stop-after 1; else run_train resume "$work/stepwise" "" --stop-after "$s"; fi
    [ "$rc" -eq 0 ] || { echo "FAIL: the run stopped at step $s exits $rc: $(head -1 "$work/train.err")"; exit 1; }
    cp "$work/stepwise/model.safetensors" "$work/ref/model.$s"
    if [ "$s" -eq 1 ]; then # how long a resumed run takes, for the random instants
        cp -a "$work/stepwise" "$work/probe"
        t0=$(now_ms)
        run_train resume "$work/probe" ""
        resume_ms=$(($(now_ms) - t0))
        rm -rf "$work/probe"
    fi
done
cmp -s "$work/ref/model.$steps" "$work/ref/model.final" ||
    { echo "FAIL: a run stopped and resumed at every step differs from the uninterrupted run"; exit 1; }

# ---- A: every file-system step of a fresh run ----------------------------------

rm -rf "$work/count"
run_train fresh "$work/count" count
[ "$rc" -eq 0 ] || { echo "FAIL: the counting run exits $rc"; exit 1; }
steps_logged >"$work/steps.full"
n_full=$(wc -l <"$work/steps.full")
echo "A: a run of $steps steps makes $n_full file-system steps ($(cut -d' ' -f1 "$work/steps.full" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')); killing before each"
for k in $(seq 1 "$n_full"); do
    rm -rf "$work/a"
    chain "A k=$k" a "$work/a" fresh "op:$k"
done

# ---- B: a first kill during the save of step 2, a second in the resumed run --

# The save of step 2 is where a run stopped after step 1 and one stopped after
# step 2 part ways.
for s in 1 2; do
    rm -rf "$work/count"
    run_train fresh "$work/count" count --stop-after "$s"
    [ "$rc" -eq 0 ] || { echo "FAIL: the counting run stopped at step $s exits $rc"; exit 1; }
    steps_logged >"$work/steps.stop$s"
done
save2_from=$(($(common_prefix "$work/steps.full" "$work/steps.stop1") + 1))
save2_to=$(wc -l <"$work/steps.stop2")
[ "$save2_from" -ge 1 ] && [ "$save2_to" -ge "$save2_from" ] || { echo "FAIL: cannot find the save of step 2 ($save2_from..$save2_to)"; exit 1; }
n_first=$((save2_to - save2_from + 1))
per_first=$(((pair_budget + n_first - 1) / n_first))
echo "B: the save of step 2 is file-system steps $save2_from..$save2_to; a first kill before each, then up to $per_first kills at the steps of the resumed run"
i=0
for k1 in $(seq "$save2_from" "$save2_to"); do
    rm -rf "$work/state"
    run_train fresh "$work/state" "op:$k1"
    [ "$rc" -eq 137 ] || { echo "FAIL: the kill before step $k1 did not happen (exit $rc)"; exit 1; }
    rm -rf "$work/count"
    cp -a "$work/state" "$work/count"
    run_train resume "$work/count" count --stop-after 3
    if [ "$rc" -ne 0 ]; then
        # The resume itself fails: A reports this state; count it once here.
        chain_story="fresh killed at op:$k1 -> resume (exit $rc)"
        fail unresumable "B k1=$k1" "op:$k1" "$work/state" "train --resume after one kill: exit $rc: $(head -1 "$work/train.err")"
        continue
    fi
    n_resumed=$(wc -l <"$work/shim.log")
    stride=$(((n_resumed + per_first - 1) / per_first))
    for k2 in $(seq $((1 + i % stride)) "$stride" "$n_resumed"); do
        rm -rf "$work/b"
        cp -a "$work/state" "$work/b"
        chain "B k1=$k1 k2=$k2" b "$work/b" resume "op:$k2"
    done
    i=$((i + 1))
done

# ---- C: random instants ----------------------------------------------------------

# Delays up to a little more than a run takes: a fresh one for the first
# kill, a resumed one after it.
fresh_max=$((run_ms + run_ms / 4 + 1))
resume_max=$((resume_ms + resume_ms / 4 + 1))
RANDOM=$seed
echo "C: $random_chains chains killed after random delays (seed $seed): the fresh run after 1..$fresh_max ms, then up to two resumed runs after 1..$resume_max ms"
for c in $(seq 1 "$random_chains"); do
    d1=$((1 + RANDOM % fresh_max)) d2=$((1 + RANDOM % resume_max)) d3=$((1 + RANDOM % resume_max))
    rm -rf "$work/c"
    chain "C$c delays $d1,$d2,$d3 ms" c "$work/c" fresh "time:$d1" "time:$d2" "time:$d3"
done

# ---- summary --------------------------------------------------------------------

elapsed=$((SECONDS - start_s))
echo "kills: $kills (A $kills_a at every file-system step of a fresh run, B $kills_b in runs resumed after a first kill, C $kills_c at random instants); chains: $chains; kill points not reached: $unreached"
echo "unloadable: $unloadable, unresumable: $unresumable, bad refusals: $bad_refusals, foreign models: $foreign, mismatched finals: $mismatched, strays: $strays; ${elapsed} s"
status=0
[ "$failures" -eq 0 ] || status=1
if [ "$kills" -lt "$min_kills" ]; then
    echo "FAIL: only $kills kills (at least $min_kills)"
    status=1
fi
[ "$status" -eq 0 ] && echo "crash injection: passed"
exit "$status"
