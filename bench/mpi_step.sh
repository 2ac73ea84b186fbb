#!/usr/bin/env bash
# The MPI figures of docs/PERFORMANCE.md (issue 12): `cllm bench step` of one
# preset at 1 thread per rank, interleaved in ROUNDS rounds of
#   plain    the build without MPI (NOMPI_BUILD, configured with -DCLLM_MPI=OFF)
#   alone    the MPI build, not started by mpirun (MPI untouched)
#   np1..np4 the MPI build under mpirun -np 1, 2, 4 (oversubscribed where the
#            machine has fewer cores: a correctness-and-overhead figure)
# and prints per configuration the median tokens/s over the rounds, the ratio
# to `plain`, rank 0's exposed communication share and bytes sent per step
# against 2(R-1)/R x 4P. Not CI. Usage:
#   bench/mpi_step.sh [BUILD] [NOMPI_BUILD]   (defaults: build, build-nompi; built if needed)
# Environment: PRESET (S), ROUNDS (3), REPEATS (3), THREADS (1 per rank).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} nompi=${2:-build-nompi}
[ -x "$build/cllm" ] || { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build "$build" -j"$(nproc)" --target cllm >/dev/null; }
[ -x "$nompi/cllm" ] || { cmake -S . -B "$nompi" -DCMAKE_BUILD_TYPE=Release -DCLLM_MPI=OFF >/dev/null; cmake --build "$nompi" -j"$(nproc)" --target cllm >/dev/null; }
preset=${PRESET:-S} rounds=${ROUNDS:-3} repeats=${REPEATS:-3} threads=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=$threads
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bench=(bench step --preset "$preset" --repeats "$repeats" --json)
"$build/cllm" info | sed -n '1,3p;/^mpi/p;/^ranks/p' >&2
for round in $(seq "$rounds"); do
    for config in plain alone np1 np2 np4; do
        case $config in
        plain) "$nompi/cllm" "${bench[@]}" ;;
        alone) "$build/cllm" "${bench[@]}" ;;
        np*) mpirun -np "${config#np}" --bind-to none --oversubscribe -x OMP_NUM_THREADS "$build/cllm" "${bench[@]}" ;;
        esac >"$out/$config.$round.json"
        echo "round $round $config: $(grep -o '"tokens_per_s":[0-9.]*' "$out/$config.$round.json" | head -1)" >&2
    done
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(config):
    return [json.load(open(f"{out}/{config}.{r}.json")) for r in range(1, rounds + 1)]
plain = statistics.median(j["results"][0]["tokens_per_s"] for j in load("plain"))
print("| configuration | ranks | tokens/s (median of rounds) | / plain | per-round ratios | rank 0 wait | exposed comm (rank 0) | sent per rank per step | 2(R-1)/R x 4P |")
print("|---|---|---|---|---|---|---|---|---|")
plains = [j["results"][0]["tokens_per_s"] for j in load("plain")]
for config in ["plain", "alone", "np1", "np2", "np4"]:
    js = load(config)
    tps = [j["results"][0]["tokens_per_s"] for j in js]
    ratios = ", ".join(f"{t / p:.3f}" for t, p in zip(tps, plains))
    R = js[0].get("ranks", 1)
    comm = statistics.median(j["results"][0].get("comm_share", 0) for j in js)
    wait = statistics.median(j["results"][0].get("rank_wait_share", 0) for j in js)
    sent = js[0]["results"][0].get("comm_bytes_per_rank", 0)
    formula = js[0].get("formula_bytes_per_rank", 0)
    print(f"| {config} | {R} | {statistics.median(tps):.0f} | {statistics.median(tps) / plain:.3f} | {ratios} | "
          f"{100 * wait:.1f}% | {100 * comm:.1f}% | {sent / 1024:.1f} KiB | {formula / 1024:.1f} KiB |")
PY
