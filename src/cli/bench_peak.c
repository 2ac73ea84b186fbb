/* `cllm bench peak`: one core's measured FMA peak per SIMD path and the
 * memory bandwidth, the denominators of every other benchmark's shares. */
#include <stdio.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/base/common.h"
#include "cllm/base/cpu.h"
#include "cllm/kernels/kernels.h"
#include "cllm/report/peak.h"

int cllm_bench_peak(int argc, char **argv) {
    int json = 0, mib = 256, repeats = 5;
    double seconds = 0.3;
    const cllm_flag flags[] = {
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of a table", 1, 0, NULL},
        {"seconds", CLLM_FLAG_DOUBLE, &seconds, "S", "time spent on each FMA path (default 0.3)", 0.01, 60, NULL},
        {"mib", CLLM_FLAG_INT, &mib, "N", "MiB per bandwidth array, choose >> L3 (default 256)", 1, 16384, NULL},
        {"repeats", CLLM_FLAG_INT, &repeats, "R", "bandwidth repeats, best is kept (default 5)", 1, 1000, NULL},
    };
    const cllm_command_spec spec = {
        "bench peak", "", "Measures one core's single-precision FMA peak for each SIMD path (independent FMA "
        "chains, best of several runs) and one thread's memory bandwidth (memcpy and STREAM-add on arrays much "
        "larger than the caches). Run on an otherwise idle machine: the best run is reported.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, 0};
    char *pos[1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;

    double gf[4];
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++)
        gf[s] = s == CLLM_SIMD_OMP ? 0.0 : cllm_peak_measure_fma((cllm_simd)s, seconds);
    double copy_gbs = 0, add_gbs = 0;
    if (cllm_peak_measure_bandwidth((size_t)mib << 20, repeats, &copy_gbs, &add_gbs) != CLLM_OK) {
        fprintf(stderr, "cllm bench peak: %s\n", cllm_last_error());
        return 1;
    }
    cllm_simd best = cllm_simd_best();
    double best_gf = gf[best == CLLM_SIMD_OMP ? CLLM_SIMD_SCALAR : best];
    if (json) {
        printf("{\"cpu\":\"%s\",\"best_path\":\"%s\",\"fma_gflops\":{\"portable\":%.2f,\"avx2\":%.2f,"
               "\"avx512\":%.2f},\"peak_gflops_per_core\":%.2f,\"memcpy_gbs\":%.2f,\"stream_add_gbs\":%.2f,"
               "\"array_mib\":%d}\n",
               cllm_cpu()->model, cllm_simd_name(best), gf[CLLM_SIMD_SCALAR], gf[CLLM_SIMD_AVX2],
               gf[CLLM_SIMD_AVX512], best_gf, copy_gbs, add_gbs, mib);
        return 0;
    }
    printf("CPU: %s (best SIMD path: %s)\n\n", cllm_cpu()->model, cllm_simd_name(best));
    printf("%-28s %12s\n", "one core, single precision", "GFLOP/s");
    printf("%-28s %12.1f\n", "portable (baseline ISA)", gf[CLLM_SIMD_SCALAR]);
    if (gf[CLLM_SIMD_AVX2] > 0) printf("%-28s %12.1f\n", "AVX2 + FMA", gf[CLLM_SIMD_AVX2]);
    else printf("%-28s %12s\n", "AVX2 + FMA", "n/a");
    if (gf[CLLM_SIMD_AVX512] > 0) printf("%-28s %12.1f\n", "AVX-512F", gf[CLLM_SIMD_AVX512]);
    else printf("%-28s %12s\n", "AVX-512F", "n/a");
    printf("\n%-28s %12s\n", "one thread, arrays of MiB", "GB/s");
    printf("memcpy (%5d MiB)          %12.1f\n", mib, copy_gbs);
    printf("STREAM-add (%5d MiB x 3)  %12.1f\n", mib, add_gbs);
    return 0;
}
