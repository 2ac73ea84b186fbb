# Shared by the crash tests (kill_test.sh, disk_full_test.sh).

# Whatever the caller exported must not configure cllm or the kill shim; one
# thread, so that the runs are cheap and need no more than one core.
clean_environment() {
    local var
    for var in $(compgen -e); do
        case "$var" in CLLM_* | OMP_* | KILLSHIM_*) unset "$var" ;; esac
    done
    export OMP_NUM_THREADS=1
}

# A checkpoint is committed: the `latest` pointer of the checkpoint protocol,
# or the plain model.safetensors of the folders written before it (a
# dangling model.safetensors symlink does not count).
has_checkpoint() { [ -e "$1/latest" ] || [ -e "$1/model.safetensors" ]; }

# Leftovers of dead saves: temporaries, and checkpoint folders that `latest`
# does not name. Prints one per line.
stray_files() {
    local dir=$1 target="" d
    [ -L "$dir/latest" ] && target=$(basename "$(readlink "$dir/latest")")
    find "$dir" -name '*.tmp.*' -print
    for d in "$dir"/checkpoint-*; do
        [ -e "$d" ] || [ -L "$d" ] || continue
        [ "$(basename "$d")" = "$target" ] || echo "$d"
    done
}

# The folder, one entry a line (mode, size, path, link target), for failure reports.
list_folder() {
    (cd "$1" 2>/dev/null && find . -mindepth 1 -printf '    %M %9s %p -> %l\n' | sed 's/ -> $//' | sort -k3) ||
        echo "    (no folder $1)"
}
