/* The machine's measured limits, so that every speed cllm reports can be
 * given as a share of what the core can actually do (MFU, % of peak).
 *
 * The FMA peak is measured, not computed from a datasheet: clock boost,
 * virtualisation and AVX-512 down-clocking make nominal figures unreliable,
 * and a share of a measured peak is a ratio taken on the same machine. */
#ifndef CLLM_REPORT_PEAK_H
#define CLLM_REPORT_PEAK_H

#include "cllm/kernels/kernels.h"

/* One core's single-precision FMA peak in GFLOP/s (an FMA counts as 2 flops)
 * with the best SIMD path this CPU supports. Measured once (about 50 ms) on
 * the calling thread and cached; `given` > 0 (the CLI passes
 * CLLM_PEAK_GFLOPS) is returned instead. Thread-safe. Always > 0. */
double cllm_peak_gflops_per_core(double given);

/* Measures the FMA peak of one SIMD path on the calling thread now: the best
 * of several runs of `seconds` total, in GFLOP/s. Paths the CPU lacks
 * return 0. The scalar path measures plain one-lane FMAs. */
double cllm_peak_measure_fma(cllm_simd path, double seconds);

/* Memory bandwidth of the calling thread in GB/s on arrays of `bytes` each
 * (choose >> L3): memcpy (bytes read + written) and STREAM-add
 * c[i] = a[i] + b[i] (3 arrays moved). Best of `repeats`. Returns CLLM_OK, or
 * CLLM_ERR_INTERNAL when the arrays cannot be allocated. */
cllm_status cllm_peak_measure_bandwidth(size_t bytes, int repeats, double *memcpy_gbs, double *add_gbs);

#endif
