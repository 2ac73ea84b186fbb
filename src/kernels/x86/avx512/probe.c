/* The AVX-512 FMA peak probe (kernels/probe_internal.h). */
#include <immintrin.h>

#include "../../probe_internal.h"

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
__attribute__((target("avx512f"))) float cllm_fma_probe_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(CLLM_PROBE_MUL), a = _mm512_set1_ps(CLLM_PROBE_ADD);
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
