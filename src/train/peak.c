/* Measured FMA peak and memory bandwidth of one core (see peak.h). */
#include "cllm/train/peak.h"


#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEAK_X86 1
#else
#define PEAK_X86 0
#endif

/* Independent accumulator chains per kernel: FMA latency (4-5 cycles) times
 * the FMA pipes (2) must be covered, with margin, or the loop measures
 * latency instead of throughput. AVX2 has 16 registers, AVX-512 32. */
#define AVX2_CHAINS 12
#define AVX512_CHAINS 24 /* x0..7, y0..7, z0..7 in fma_loop_avx512 */
#define SCALAR_CHAINS 16

/* acc = acc * m + a converges to a / (1 - m) without overflow or denormals,
 * so the timing never hits slow paths whatever the iteration count. */
#define PEAK_MUL 0.9999f
#define PEAK_ADD 0.0001f

#if PEAK_X86
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters) {
    __m256 acc[AVX2_CHAINS];
    const __m256 m = _mm256_set1_ps(PEAK_MUL), a = _mm256_set1_ps(PEAK_ADD);
    for (int c = 0; c < AVX2_CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < AVX2_CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
    __m256 s = acc[0];
    for (int c = 1; c < AVX2_CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

/* The chains are named variables, not an array: GCC keeps a 24-element
 * array loop in memory (it stops unrolling at 16), and a store per FMA then
 * halves the rate measured, which once made the AVX-512 "peak" read lower
 * than AVX2 on a core with two 512-bit FMA pipes. */
#define FMA8(p)                                                                                          \
    p##0 = _mm512_fmadd_ps(p##0, m, a), p##1 = _mm512_fmadd_ps(p##1, m, a), p##2 = _mm512_fmadd_ps(p##2, m, a), \
    p##3 = _mm512_fmadd_ps(p##3, m, a), p##4 = _mm512_fmadd_ps(p##4, m, a), p##5 = _mm512_fmadd_ps(p##5, m, a), \
    p##6 = _mm512_fmadd_ps(p##6, m, a), p##7 = _mm512_fmadd_ps(p##7, m, a)
#define SUM8(p) _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p##0, p##1), _mm512_add_ps(p##2, p##3)), \
                              _mm512_add_ps(_mm512_add_ps(p##4, p##5), _mm512_add_ps(p##6, p##7)))
__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(PEAK_MUL), a = _mm512_set1_ps(PEAK_ADD);
    __m512 x0 = _mm512_set1_ps(0.0f), x1 = _mm512_set1_ps(1.0f), x2 = _mm512_set1_ps(2.0f), x3 = _mm512_set1_ps(3.0f);
    __m512 x4 = _mm512_set1_ps(4.0f), x5 = _mm512_set1_ps(5.0f), x6 = _mm512_set1_ps(6.0f), x7 = _mm512_set1_ps(7.0f);
    /* Distinct starting values, or the compiler sees three equal chains. */
    const __m512 dy = _mm512_set1_ps(8.0f), dz = _mm512_set1_ps(16.0f);
    __m512 y0 = _mm512_add_ps(x0, dy), y1 = _mm512_add_ps(x1, dy), y2 = _mm512_add_ps(x2, dy), y3 = _mm512_add_ps(x3, dy);
    __m512 y4 = _mm512_add_ps(x4, dy), y5 = _mm512_add_ps(x5, dy), y6 = _mm512_add_ps(x6, dy), y7 = _mm512_add_ps(x7, dy);
    __m512 z0 = _mm512_add_ps(x0, dz), z1 = _mm512_add_ps(x1, dz), z2 = _mm512_add_ps(x2, dz), z3 = _mm512_add_ps(x3, dz);
    __m512 z4 = _mm512_add_ps(x4, dz), z5 = _mm512_add_ps(x5, dz), z6 = _mm512_add_ps(x6, dz), z7 = _mm512_add_ps(x7, dz);
    for (long i = 0; i < iters; i++) {
        FMA8(x);
        FMA8(y);
        FMA8(z);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(SUM8(x), _mm512_add_ps(SUM8(y), SUM8(z))));
}
#endif

/* The portable path: whatever the compiler makes of independent chains for
 * the baseline ISA (SSE2 mul + add on x86-64 without -mfma). */
static float fma_loop_portable(long iters) {
    float acc[SCALAR_CHAINS];
    for (int c = 0; c < SCALAR_CHAINS; c++) acc[c] = (float)c;
    for (long i = 0; i < iters; i++) {
#pragma omp simd
        for (int c = 0; c < SCALAR_CHAINS; c++) acc[c] = acc[c] * PEAK_MUL + PEAK_ADD;
    }
    float s = 0.0f;
    for (int c = 0; c < SCALAR_CHAINS; c++) s += acc[c];
    return s;
}

/* Floating-point operations of one iteration of each loop. */
static double flops_per_iter(cllm_simd path) {
    switch (path) {
    case CLLM_SIMD_AVX512: return 2.0 * 16 * AVX512_CHAINS;
    case CLLM_SIMD_AVX2: return 2.0 * 8 * AVX2_CHAINS;
    default: return 2.0 * SCALAR_CHAINS;
    }
}

/* Sink for the loops' results so the compiler cannot drop them. */
static volatile float peak_sink;

static void run_fma_loop(cllm_simd path, long iters) {
    float r;
    switch (path) {
#if PEAK_X86
    case CLLM_SIMD_AVX512: r = fma_loop_avx512(iters); break;
    case CLLM_SIMD_AVX2: r = fma_loop_avx2(iters); break;
#endif
    default: r = fma_loop_portable(iters); break;
    }
    peak_sink = r;
}

double cllm_peak_measure_fma(cllm_simd path, double seconds) {
    if (!cllm_simd_supported(path)) return 0.0;
    if (seconds <= 0.0) seconds = 0.05;
    /* Calibrate the iteration count to ~1/8 of the budget, then take the
     * best of the remaining runs: the fastest run is the one least disturbed
     * by other processes, which is what a peak is. */
    long iters = 1 << 12;
    double t = 0.0;
    for (;;) {
        double t0 = cllm_now();
        run_fma_loop(path, iters);
        t = cllm_now() - t0;
        if (t >= seconds / 16 || iters > (1L << 40)) break;
        iters *= 2;
    }
    double best = t;
    double deadline = cllm_now() + seconds * 0.8;
    for (int run = 0; run < 3 || cllm_now() < deadline; run++) {
        double t0 = cllm_now();
        run_fma_loop(path, iters);
        double dt = cllm_now() - t0;
        if (dt < best) best = dt;
        if (run > 64) break;
    }
    if (best <= 0.0) best = 1e-9;
    return flops_per_iter(path) * (double)iters / best / 1e9;
}

static double cached_peak; /* 0 until measured; read/written atomically */

double cllm_peak_gflops_per_core(double given) {
    if (given > 0.0) return given;
    double v;
    __atomic_load(&cached_peak, &v, __ATOMIC_ACQUIRE);
    if (v > 0.0) return v;
    v = cllm_peak_measure_fma(cllm_simd_best(), 0.05);
    if (v <= 0.0) v = 1.0; /* a timer that cannot resolve: keep ratios finite */
    /* Two threads racing here both measure; either result is a fair peak. */
    __atomic_store(&cached_peak, &v, __ATOMIC_RELEASE);
    return v;
}

cllm_status cllm_peak_measure_bandwidth(size_t bytes, int repeats, double *memcpy_gbs, double *add_gbs) {
    size_t n = bytes / sizeof(float);
    if (n == 0) n = 1;
    float *a = cllm_alloc(n * sizeof(float));
    float *b = cllm_alloc(n * sizeof(float));
    float *c = cllm_alloc(n * sizeof(float));
    if (!a || !b || !c) {
        cllm_free(a);
        cllm_free(b);
        cllm_free(c);
        return cllm_fail(CLLM_ERR_INTERNAL, "bandwidth: cannot allocate 3 x %zu bytes", n * sizeof(float));
    }
    /* Touch every page first so the timing excludes page faults. */
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(i & 1023);
        b[i] = 1.0f;
        c[i] = 0.0f;
    }
    if (repeats < 1) repeats = 1;
    double best_copy = 1e30, best_add = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t0 = cllm_now();
        memcpy(c, a, n * sizeof(float));
        double t1 = cllm_now();
#pragma omp simd
        for (size_t i = 0; i < n; i++) c[i] = a[i] + b[i];
        double t2 = cllm_now();
        if (t1 - t0 < best_copy) best_copy = t1 - t0;
        if (t2 - t1 < best_add) best_add = t2 - t1;
    }
    peak_sink = c[n / 2];
    double moved = (double)(n * sizeof(float));
    *memcpy_gbs = 2.0 * moved / (best_copy > 0 ? best_copy : 1e-9) / 1e9;
    *add_gbs = 3.0 * moved / (best_add > 0 ? best_add : 1e-9) / 1e9;
    cllm_free(a);
    cllm_free(b);
    cllm_free(c);
    return CLLM_OK;
}
