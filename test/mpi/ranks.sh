#!/usr/bin/env bash
# MPI ranks against one process (issue 12), run by CTest when CMake found MPI:
#   bitwise   model.safetensors of -np 1,2,3,4 x OMP_NUM_THREADS 1,2 equals the
#             plain (no mpirun) run's, with clipping and gradient accumulation,
#             and without clipping at -np 2
#   bf16      --precision bf16 under -np 2 and 3 (x OMP_NUM_THREADS 1, 2): bitwise the plain
#             bf16 run, model and optimizer state (every rank's products read the same
#             bf16 weights after the all-gather)
#   resume    stopped after 3 steps under -np 2, resumed with -np 1 and -np 4:
#             bitwise the uninterrupted run
#   memory    the start-up report's AdamW moments per rank are 1/R of the
#             single-process figure (to within one 256-float grain)
#   refuse    more ranks than micro-batches per step: one line naming both, on rank 0
#             only, a non-zero status, nothing written
#   kill      a rank killed mid-run ends the job, nonzero, within 30 s
#   signal    SIGTERM to mpirun: every rank finishes the step, rank 0 saves, the ranks
#             exit 130 (one may be ended by Open MPI on its way out, once another
#             has exited non-zero; mpirun reports 1 itself), and the
#             saved run resumes to the uninterrupted run's bits
# usage: ranks.sh CLLM MPIRUN WORKDIR [part...]   (no part: all)
set -euo pipefail
cllm=$1 mpirun=$2 work=$3
shift 3
parts=${*:-bitwise bf16 resume memory refuse kill signal}
rm -rf "$work" && mkdir -p "$work" && cd "$work"
# As root (CI), Open MPI refuses to start without these; in containers its
# shared-memory single copy (CMA) may be refused by the kernel.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 CLLM_PROGRESS=off
# Open MPI passes only the variables named with -x; MPICH's Hydra passes the whole environment.
if "$mpirun" --version 2>&1 | grep -q "Open MPI"; then launch=("$mpirun" --bind-to none --oversubscribe) pass=(-x OMP_NUM_THREADS)
else launch=("$mpirun") pass=(); fi
run_np() { # run_np NP THREADS ARGS...: cllm under mpirun
    local np=$1 th=$2
    shift 2
    OMP_NUM_THREADS=$th "${launch[@]}" -np "$np" "${pass[@]}" "$cllm" "$@"
}
exec_np() { # the same, replacing the shell: `exec_np ... &` makes $! mpirun itself
    local np=$1 th=$2
    shift 2
    OMP_NUM_THREADS=$th exec "${launch[@]}" -np "$np" "${pass[@]}" "$cllm" "$@"
}
hash_of() { sha256sum "$1/model.safetensors" | cut -d' ' -f1; }
fail() { echo "FAIL: $*" >&2; exit 1; }
common=(train --preset tiny --batch 4 --micro 1 --grad-accum 2 --lr 0.01 --sample-tokens 0 --eval-every 0 --quiet)

for part in $parts; do
case $part in
bitwise)
    OMP_NUM_THREADS=2 "$cllm" "${common[@]}" --steps 4 --clip 0.05 --out plain >/dev/null
    ref=$(hash_of plain)
    for np in 1 2 3 4; do
        for th in 1 2; do
            run_np "$np" "$th" "${common[@]}" --steps 4 --clip 0.05 --out "np$np-t$th" >/dev/null
            got=$(hash_of "np$np-t$th")
            [ "$got" = "$ref" ] || fail "-np $np x $th threads: model differs from the plain run"
            echo "bitwise: -np $np x OMP_NUM_THREADS=$th equals the plain run"
        done
    done
    OMP_NUM_THREADS=1 "$cllm" "${common[@]}" --steps 4 --clip 0 --out plain-noclip >/dev/null
    run_np 2 2 "${common[@]}" --steps 4 --clip 0 --out np2-noclip >/dev/null
    [ "$(hash_of np2-noclip)" = "$(hash_of plain-noclip)" ] || fail "-np 2 without clipping differs"
    echo "bitwise: -np 2 without clipping equals the plain run"
    cmp -s plain/optimizer.safetensors np4-t2/optimizer.safetensors || fail "optimizer.safetensors of -np 4 differs"
    echo "bitwise: optimizer.safetensors gathered from 4 ranks equals the plain run's"
    ;;
bf16)
    OMP_NUM_THREADS=2 "$cllm" "${common[@]}" --steps 4 --clip 0.05 --precision bf16 --out plain16 >/dev/null
    OMP_NUM_THREADS=2 "$cllm" "${common[@]}" --steps 4 --clip 0.05 --out plain32 >/dev/null
    [ "$(hash_of plain16)" != "$(hash_of plain32)" ] || fail "bf16: the plain bf16 run equals the fp32 one"
    for np in 2 3; do
        for th in 1 2; do
            run_np "$np" "$th" "${common[@]}" --steps 4 --clip 0.05 --precision bf16 --out "bf16-np$np-t$th" >/dev/null
            [ "$(hash_of "bf16-np$np-t$th")" = "$(hash_of plain16)" ] ||
                fail "bf16: -np $np x $th threads: model differs from the plain bf16 run"
            cmp -s plain16/optimizer.safetensors "bf16-np$np-t$th/optimizer.safetensors" ||
                fail "bf16: -np $np x $th threads: optimizer.safetensors differs"
            echo "bf16: -np $np x OMP_NUM_THREADS=$th equals the plain bf16 run (model and optimizer state)"
        done
    done
    ;;
resume)
    OMP_NUM_THREADS=2 "$cllm" "${common[@]}" --steps 6 --clip 0.05 --out whole >/dev/null
    run_np 2 1 "${common[@]}" --steps 6 --clip 0.05 --stop-after 3 --out half >/dev/null
    for np in 1 4; do
        cp -r half "half-$np"
        run_np "$np" 1 train --resume "half-$np" --quiet --sample-tokens 0 >/dev/null
        [ "$(hash_of "half-$np")" = "$(hash_of whole)" ] || fail "stopped at 3 under -np 2, resumed with -np $np: differs"
        echo "resume: stopped under -np 2, resumed with -np $np: bitwise the uninterrupted run"
    done
    ;;
memory)
    one=$(OMP_NUM_THREADS=1 "$cllm" train --preset tiny --steps 1 --batch 4 --micro 1 --sample-tokens 0 --out mem1 |
          sed -n 's/.*optimizer AdamW moments .* MiB (\([0-9]*\) parameters).*/\1/p')
    [ -n "$one" ] || fail "no optimizer line in the single-process report"
    for np in 2 4; do
        line=$(run_np "$np" 1 train --preset tiny --steps 1 --batch 4 --micro 1 --sample-tokens 0 --out "mem$np" |
               grep "optimizer AdamW moments")
        own=$(sed -n 's/.*rank 0: \([0-9]*\) of \([0-9]*\) parameters, 1\/\([0-9]*\).*/\1 \2 \3/p' <<<"$line")
        read -r mine total ranks <<<"$own"
        [ "$total" = "$one" ] && [ "$ranks" = "$np" ] || fail "-np $np: report '$line'"
        # 1/R of the parameters, up to one 256-float grain of rounding
        diff=$(( mine * np - one )); diff=${diff#-}
        [ "$diff" -le $(( 256 * np )) ] || fail "-np $np: rank 0 holds $mine of $one parameters' moments"
        echo "memory: -np $np: rank 0 holds the moments of $mine of $one parameters (1/$np)"
    done
    ;;
refuse)
    set +e
    run_np 3 1 train --preset tiny --batch 2 --micro 1 --steps 1 --out refused >refused.out 2>refused.err
    rc=$?
    set -e
    [ "$rc" -ne 0 ] || fail "refuse: 3 ranks for 2 micro-batches ran"
    [ "$(grep -c 'cllm train: ' refused.err)" = 1 ] || fail "refuse: not one line from cllm: $(cat refused.err)"
    grep -q "cllm train: rank 0: 3 ranks but 2 micro-batches per step" refused.err || fail "refuse: $(cat refused.err)"
    [ ! -e refused ] || fail "refuse: the run folder was created"
    echo "refuse: $(grep 'cllm train: ' refused.err)"
    ;;
kill)
    start=$SECONDS
    set +e
    exec_np 2 1 "${common[@]}" --steps 100000 --out killed >killed.out 2>killed.err &
    pid=$!
    for _ in $(seq 100); do [ -e killed/metrics.jsonl ] && [ -s killed/metrics.jsonl ] && break; sleep 0.1; done
    victim=
    for p in $(pgrep -x cllm || true); do # a rank (mpirun's command line names cllm too, its process name does not)
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--out killed" && victim=$p
    done
    [ -n "$victim" ] || { kill "$pid"; fail "kill: no rank process found under mpirun"; }
    kill -9 "$victim"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fail "kill: mpirun still running 30 s after a rank was killed"; fi
    wait "$pid"; rc=$?
    set -e
    [ "$rc" -ne 0 ] || fail "kill: exit status 0 after a rank was killed"
    # Open MPI's mpirun says so on stderr, MPICH's Hydra on stdout.
    [ -s killed.err ] || grep -q "signal 9" killed.out || fail "kill: no message from the launcher"
    echo "kill: rank $victim killed: the job ended in $((SECONDS - start)) s with status $rc and: $(cat killed.err killed.out | grep -v '^ *$' | head -c 300 | tr '\n' ' ')"
    ;;
signal)
    # mpirun sends SIGCONT first and SIGTERM only sigkill_timeout seconds later (5 here): a budget
    # no machine finishes in that time, so the run is always interrupted; the comparison below then
    # stops both the resumed and an uninterrupted run a few steps past the interruption (--stop-after
    # keeps the whole budget's schedule).
    slow=(--steps 1000000 --clip 0.05)
    set +e
    # Open MPI 4's mpirun sends the ranks SIGCONT, SIGTERM and SIGKILL, this many seconds apart (default 1):
    # the ranks must finish the step and save within it (5 s here: on a loaded 2-core machine a step
    # and a save can take seconds; the README advises more than one step plus a save).
    # Each rank's own exit status, from a shell around it (which waits for cllm before its trap runs).
    # Files, not stderr: mpirun may stop forwarding output once it has signalled the job.
    # Each rank's output goes to its own file too: mpirun may not forward what a rank prints
    # while the job is being ended.
    printf '%s\n' 'trap true TERM CONT' 'r=${OMPI_COMM_WORLD_RANK:-$PMI_RANK}' '"$@" >"out.$r" 2>"err.$r"' \
        'echo $? >"exit.$r"' >rank-status.sh
    (export OMPI_MCA_odls_base_sigkill_timeout=5 OMP_NUM_THREADS=1
     exec "${launch[@]}" -np 2 "${pass[@]}" sh rank-status.sh "$cllm" "${common[@]}" "${slow[@]}" \
         --out sig >sig.out 2>sig.err) &
    pid=$!
    for _ in $(seq 600); do [ -s sig/metrics.jsonl ] && break; sleep 0.1; done
    kill -TERM "$pid"
    wait "$pid"; rc=$?
    set -e
    # The launcher's own status is its own: Open MPI's mpirun gives 1, MPICH's Hydra 0. The ranks' are below.
    grep -q "interrupted at step" out.0 ||
        fail "signal: no interruption line from rank 0: $(cat out.0 err.0 sig.out sig.err 2>/dev/null | tail -c 600)"
    # Every rank exits 130 after the save, but Open MPI ends a job as soon as one of its processes
    # exits non-zero: the rank that is a moment later (it took part in the save, a collective, and
    # is on its way out) may be killed before its status is written. Each one written must be 130,
    # and at least one must be.
    statuses=$(cat exit.* 2>/dev/null | sort -u | tr '\n' ' ')
    [ "$statuses" = "130 " ] || fail "signal: rank exit statuses '$statuses', not 130"
    at=$(sed -n 's/.*interrupted at step \([0-9]*\) .*/\1/p' out.0 | head -1)
    [ -n "$at" ] || fail "signal: no step in the interruption line: $(cat out.0)"
    until=$((at + 20))
    run_np 2 1 train --resume sig --stop-after "$until" --quiet --sample-tokens 0 >/dev/null
    OMP_NUM_THREADS=1 "$cllm" "${common[@]}" "${slow[@]}" --stop-after "$until" --out sig-whole >/dev/null
    [ "$(hash_of sig)" = "$(hash_of sig-whole)" ] || fail "signal: the resumed run differs from the uninterrupted one"
    echo "signal: SIGTERM to mpirun: $(ls exit.* | wc -l) rank(s) seen exiting 130 (mpirun $rc), saved, resumed bitwise ($(grep -o 'interrupted at step [0-9]*' out.0))"
    ;;
*) fail "unknown part $part" ;;
esac
done
