#!/usr/bin/env bash
# A save that cannot be written (docs/RELIABILITY.md, "Crash injection"):
#   tmpfs  the run folder is on a small tmpfs filled to the brim: ENOSPC
#   fsize  the resumed run writes under `ulimit -f` smaller than its
#          checkpoint files: EFBIG (cllm ignores SIGXFSZ, so the write fails
#          instead of the signal killing the process)
# Either way the process must end with one line on stderr and exit 1; the
# previous checkpoint stays loadable and unchanged; the next start (with the
# space back) leaves no temporaries and ends bitwise equal to an
# uninterrupted run. Where `mount -t tmpfs` is refused (not root, or a
# sandbox), the tmpfs case prints why and exits 77, which CTest reports as
# skipped.
#
# usage: disk_full_test.sh tmpfs|fsize CLLM SOURCE_DIR
set -uo pipefail

[ $# -eq 3 ] || { echo "usage: $0 tmpfs|fsize CLLM SOURCE_DIR" >&2; exit 2; }
mode=$1
cllm=$(realpath "$2")
src=$3
. "$(dirname "$0")/lib.sh"
clean_environment

work=$(mktemp -d "${TMPDIR:-/tmp}/cllm-full.XXXXXX") || exit 1
mounted=""
cleanup() {
    [ -z "$mounted" ] || umount "$mounted"
    rm -rf "$work"
}
trap cleanup EXIT

corpus=$work/corpus.txt
head -c 16000 "$src/data/tinyshakespeare.txt" >"$corpus" || exit 1
train_flags=(--preset tiny --steps 4 --save-every 1 --seed 7 --eval-every 0 --sample-tokens 0 --quiet)
failures=0
fail() {
    echo "FAIL [$mode] $*"
    failures=$((failures + 1))
}

# The end every run here must reach.
"$cllm" train "${train_flags[@]}" --out "$work/ref" "$corpus" >/dev/null 2>"$work/err" ||
    { echo "FAIL: the uninterrupted run: $(head -1 "$work/err")"; exit 1; }

# make_room KB: the tmpfs gets exactly KB free; without_room: its space back.
make_room() {
    rm -f "$mounted/filler"
    dd if=/dev/zero of="$mounted/filler" bs=64k 2>/dev/null
    local avail
    avail=$(df -k --output=avail "$mounted" | tail -1 | tr -d ' ')
    [ "$avail" -eq 0 ] || { fail "the tmpfs still has $avail KB free after filling it"; return; }
    truncate -s "-$1K" "$mounted/filler"
}
without_room() { rm -f "$mounted/filler"; }

# train_short_of_room MODE FLAGS...: one `cllm train` whose save cannot be
# written; sets code and checks that it ends with one line and exit 1.
train_short_of_room() {
    case "$mode" in
    tmpfs) "$cllm" train "$@" >/dev/null 2>"$work/err" ;;
    fsize) (ulimit -f "$limit_kb" && exec "$cllm" train "$@") >/dev/null 2>"$work/err" ;;
    esac
    code=$?
    local lines why=""
    lines=$(wc -l <"$work/err")
    echo "  the failed save: exit $code, stderr: $(head -3 "$work/err")"
    [ "$code" -eq $((128 + 25)) ] && why=" (killed by SIGXFSZ: cllm must ignore it so that the write fails with EFBIG)"
    if [ "$code" -ne 1 ] || [ "$lines" -ne 1 ]; then
        fail "a save that cannot be written must end with one line and exit 1; got exit $code, $lines lines$why"
    fi
    echo "  left in the folder right after it:"
    list_folder "$dir"
}

# finish NEXT: with the space back, the next start (NEXT: fresh or resume)
# cleans up and ends the run exactly.
finish() {
    [ "$mode" = tmpfs ] && without_room
    local cmd=("$cllm" train --resume "$dir" --quiet)
    [ "$1" = fresh ] && cmd=("$cllm" train "${train_flags[@]}" --out "$dir" "$corpus")
    if "${cmd[@]}" >/dev/null 2>"$work/err"; then
        cmp -s "$dir/model.safetensors" "$work/ref/model.safetensors" ||
            fail "the finished run differs from the uninterrupted run"
        local left
        left=$(stray_files "$dir")
        [ -z "$left" ] || fail "leftovers after the next start: $(echo $left)"
    else
        fail "train ($1) with the space back: $(head -1 "$work/err")"
    fi
}

# refuses WHAT CMD...: before the first checkpoint, CMD refuses with one line, exit 2.
refuses() {
    local what=$1
    shift
    "$@" >/dev/null 2>"$work/err" </dev/null
    local code=$? lines
    lines=$(wc -l <"$work/err")
    [ "$code" -eq 2 ] && [ "$lines" -eq 1 ] ||
        fail "no checkpoint yet: $what should refuse with one line, exit 2; got exit $code, $lines lines: $(head -1 "$work/err")"
}

case "$mode" in
tmpfs)
    mkdir "$work/mnt"
    if ! mount -t tmpfs -o size=8m tmpfs "$work/mnt" 2>"$work/err"; then
        echo "SKIP: disk full on a tmpfs: mount -t tmpfs is refused here: $(head -1 "$work/err")"
        exit 77
    fi
    mounted=$work/mnt
    dir=$work/mnt/run
    ;;
fsize) dir=$work/run ;;
*) echo "usage: $0 tmpfs|fsize CLLM SOURCE_DIR" >&2; exit 2 ;;
esac

# 1. The first save cannot be written: there is no checkpoint to read, a
# fresh start works once there is room. On the tmpfs, the room is one page
# short of what the run up to its first checkpoint takes, so the save fails
# at its very last file.
echo "the first save cannot be written:"
case "$mode" in
tmpfs)
    "$cllm" train "${train_flags[@]}" --out "$mounted/probe" --stop-after 1 "$corpus" >/dev/null 2>&1
    needed_kb=$(df -k --output=used "$mounted" | tail -1 | tr -d ' ')
    rm -rf "$mounted/probe"
    echo "  the run up to its first checkpoint takes $needed_kb KB of the tmpfs; $((needed_kb - 4)) KB free"
    make_room $((needed_kb - 4))
    ;;
fsize)
    limit_kb=$(($(stat -L -c %s "$work/ref/model.safetensors") / 1024 / 2))
    echo "  ulimit -f $limit_kb (KB): half the model file"
    ;;
esac
train_short_of_room "${train_flags[@]}" --out "$dir" "$corpus"
if has_checkpoint "$dir"; then
    "$cllm" eval "$dir" >/dev/null 2>"$work/err" || fail "a checkpoint is committed but eval fails: $(head -1 "$work/err")"
    finish resume
else
    refuses eval "$cllm" eval "$dir"
    refuses sample "$cllm" sample "$dir" --tokens 4
    refuses "train --resume" "$cllm" train --resume "$dir" --quiet
    finish fresh
fi

# 2. A later save cannot be written: the checkpoint before it stays, whole.
echo "a later save cannot be written:"
rm -rf "$dir"
"$cllm" train "${train_flags[@]}" --out "$dir" --stop-after 2 "$corpus" >/dev/null 2>"$work/err" ||
    { echo "FAIL: the run stopped after step 2: $(head -1 "$work/err")"; exit 1; }
cp "$dir/model.safetensors" "$work/model.2"
if [ "$mode" = tmpfs ]; then make_room 48; echo "  48 KB free"; fi
train_short_of_room --resume "$dir" --quiet
"$cllm" eval "$dir" >/dev/null 2>"$work/err" || fail "eval after the failed save: $(head -1 "$work/err")"
"$cllm" sample "$dir" --tokens 4 >/dev/null 2>"$work/err" || fail "sample after the failed save: $(head -1 "$work/err")"
cmp -s "$dir/model.safetensors" "$work/model.2" || fail "model.safetensors is no longer the checkpoint of step 2"
finish resume

if [ "$failures" -ne 0 ]; then
    echo "folder at the end:"
    list_folder "$dir"
    exit 1
fi
echo "disk full ($mode): passed"
