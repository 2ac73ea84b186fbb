#!/usr/bin/env bash
# Two hosts, not just two processes (issue 12): two network namespaces joined
# by a veth pair, mpirun over TCP only (--mca btl tcp,self: no shared memory
# between the ranks), the remote-shell agent replaced by `ip netns exec` (each
# "host" also gets its own hostname, so Open MPI sees two nodes). The model of
# a 2-rank run across them must be bitwise that of one process.
# Skipped, saying why, where MPI, Open MPI's mpirun or `ip netns` is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
skip() { echo "mpi_netns.sh: skipped: $*"; exit 0; }
cllm=$PWD/build/cllm
[ -x "$cllm" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" --target cllm; }
"$cllm" info --json | grep -q '"mpi":true' || skip "this build has no MPI (openmpi-bin, libopenmpi-dev)"
mpirun=$(command -v mpirun) || skip "no mpirun"
"$mpirun" --version 2>&1 | grep -q "Open MPI" || skip "mpirun is not Open MPI's (the agent and MCA flags are Open MPI's)"
command -v unshare >/dev/null || skip "no unshare (util-linux)"
command -v ip >/dev/null || skip "no ip command (iproute2)"
tag=$$
nsA=cllm-a-$tag nsB=cllm-b-$tag vethA=cva$tag vethB=cvb$tag
ipA=10.237.0.1 ipB=10.237.0.2
work=$(mktemp -d)
cleanup() {
    ip netns del "$nsA" 2>/dev/null || true
    ip netns del "$nsB" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$nsA" 2>/dev/null || skip "ip netns add is not permitted here (needs root and CAP_SYS_ADMIN)"
ip netns add "$nsB"
ip link add "$vethA" type veth peer name "$vethB" || skip "cannot create a veth pair here"
ip link set "$vethA" netns "$nsA"
ip link set "$vethB" netns "$nsB"
ip -n "$nsA" addr add "$ipA/24" dev "$vethA"
ip -n "$nsB" addr add "$ipB/24" dev "$vethB"
for ns in "$nsA" "$nsB"; do ip -n "$ns" link set lo up; done
ip -n "$nsA" link set "$vethA" up
ip -n "$nsB" link set "$vethB" up

# Open MPI runs "AGENT HOST COMMAND..." to start its daemon on HOST.
cat >"$work/netns-rsh" <<AGENT
#!/bin/sh
host=\$1
shift
echo "\$host" >>"$work/agent.log"
case \$host in
$ipA) ns=$nsA name=node-a ;;
$ipB) ns=$nsB name=node-b ;;
*) echo "netns-rsh: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$name; \$*"
AGENT
chmod +x "$work/netns-rsh"
printf '%s slots=1\n%s slots=1\n' "$ipA" "$ipB" >"$work/hosts"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 CLLM_PROGRESS=off
args=(train --preset tiny --batch 4 --micro 1 --grad-accum 2 --steps 4 --clip 0.05 --sample-tokens 0 --quiet)
cd "$work"
OMP_NUM_THREADS=2 "$cllm" "${args[@]}" --out plain >/dev/null
for threads in 1 2; do
    timeout 120 ip netns exec "$nsA" unshare --uts sh -c "hostname node-a; exec \"\$@\"" sh \
        env OMP_NUM_THREADS=$threads "$mpirun" --hostfile hosts -np 2 --map-by node --bind-to none \
        --mca plm_rsh_agent "$work/netns-rsh" --mca btl tcp,self \
        --mca btl_tcp_if_include 10.237.0.0/24 --mca oob_tcp_if_include 10.237.0.0/24 \
        -x OMP_NUM_THREADS -x CLLM_PROGRESS "$cllm" "${args[@]}" --out "two-$threads" >/dev/null
    grep -qx "$ipB" agent.log || { echo "mpi_netns.sh: the second host was never started through the agent" >&2; exit 1; }
    cmp -s plain/model.safetensors "two-$threads/model.safetensors" ||
        { echo "mpi_netns.sh: 2 ranks on 2 namespaces over TCP ($threads threads each) differ from one process" >&2; exit 1; }
    echo "mpi_netns.sh: 2 ranks in 2 network namespaces over TCP only, $threads thread(s) each: bitwise one process"
done
