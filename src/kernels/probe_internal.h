/* The FMA peak probes: one loop per ISA of independent multiply-add chains,
 * timed by report/peak.c to measure what one core can do. Each returns a
 * value that depends on every chain, so the compiler cannot drop any. */
#ifndef CLLM_KERNELS_PROBE_INTERNAL_H
#define CLLM_KERNELS_PROBE_INTERNAL_H

/* Independent accumulator chains per kernel: FMA latency (4-5 cycles) times
 * the FMA pipes (2) must be covered, with margin, or the loop measures
 * latency instead of throughput. AVX2 has 16 registers, AVX-512 32. */
#define CLLM_PROBE_AVX2_CHAINS 12
#define CLLM_PROBE_AVX512_CHAINS 24 /* x0..7, y0..7, z0..7 in cllm_fma_probe_avx512 */
#define CLLM_PROBE_PORTABLE_CHAINS 16

/* acc = acc * m + a converges to a / (1 - m) without overflow or denormals,
 * so the timing never hits slow paths whatever the iteration count. */
#define CLLM_PROBE_MUL 0.9999f
#define CLLM_PROBE_ADD 0.0001f

float cllm_fma_probe_portable(long iters);
float cllm_fma_probe_avx2(long iters);
float cllm_fma_probe_avx512(long iters);

#endif
