/* bf16 kernels (issue 15): AVX512_BF16 detection agrees with the kernel's
 * view (/proc/cpuinfo), the fp32 -> bf16 rounding and the VDPBF16PS
 * reference equal the instructions bit for bit where this CPU has them, and
 * equal a straightforward double-precision definition everywhere; the bf16
 * matrix product's fast and portable kernels equal its reference on odd,
 * unaligned shapes, every transposition and operand type. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/base/common.h"
#include "cllm/base/cpu.h"
#include "cllm/kernels/bf16.h"
#include "cllm/kernels/kernels.h"
#include "support.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) { /* xorshift64*, reproducible */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static const char *NO_BF16 = "skipped: this CPU has no AVX512_BF16\n";

/* ------------------------------------------------------------ detection */

/* 1 / 0 for the avx512_bf16 flag on the first "flags" line, -1 without one. */
static int proc_cpuinfo_flag(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    char line[8192];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        found = 0;
        for (char *tok = strtok(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n"); tok;
             tok = strtok(NULL, " \t\n"))
            if (strcmp(tok, flag) == 0) found = 1;
        break;
    }
    fclose(f);
    return found;
}

static void test_detection_matches_proc_cpuinfo(void **state) {
    (void)state;
    int flag = proc_cpuinfo_flag("avx512_bf16");
    if (flag < 0) {
        print_message("skipped: no /proc/cpuinfo flags line to compare AVX512_BF16 detection with\n");
        return;
    }
    print_message("avx512_bf16: cpuid %d, /proc/cpuinfo %d\n", cllm_cpu()->avx512bf16, flag);
    assert_int_equal(cllm_cpu()->avx512bf16, flag);
    if (cllm_cpu()->avx512bf16) assert_true(cllm_cpu()->avx512f);
    /* Linux lists amx_bf16 and amx_tile only where the kernel enabled the tile state. */
    int amx = proc_cpuinfo_flag("amx_bf16") == 1 && proc_cpuinfo_flag("amx_tile") == 1;
    print_message("amx_bf16: cpuid %d, /proc/cpuinfo %d\n", cllm_cpu()->amx_bf16, amx);
    assert_int_equal(cllm_cpu()->amx_bf16, amx);
}

static void test_table_offers_fast_bf16_only_with_the_instructions(void **state) {
    (void)state;
    assert_ptr_equal(cllm_kernel_table_for(CLLM_SIMD_SCALAR)->gemm_bf16, cllm_gemm_bf16_ref);
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) { /* every table can run bf16 mode */
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (k) assert_non_null(k->gemm_bf16);
        if (k) assert_non_null(k->bf16_round);
        if (k && s != CLLM_SIMD_AVX512) assert_false(k->bf16_fast);
    }
    const cllm_kernel_table *avx512 = cllm_kernel_table_for(CLLM_SIMD_AVX512);
    if (avx512) assert_int_equal(avx512->bf16_fast, cllm_bf16_hw() != NULL);
    if (!cllm_cpu()->avx512bf16) assert_null(cllm_bf16_hw());
}

/* ------------------------------------------------------------ fp32 -> bf16 */

static int is_nan_bits(uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu); }

/* The straightforward definition: the nearer of the two bf16 around x,
 * measured in double, the even one on a tie; denormals to signed zero; NaN
 * quiet with its upper bits. */
static uint16_t bf16_definition(float x) {
    uint32_t u = bits(x);
    if (is_nan_bits(u)) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    if (isinf(x)) return (uint16_t)(u >> 16);
    uint16_t down = (uint16_t)(u >> 16); /* toward zero */
    uint16_t up = (uint16_t)(down + 1);  /* away from zero (may be infinity) */
    double dd = fabs((double)x - (double)cllm_bf16_to_f32(down));
    double du = fabs((double)cllm_bf16_to_f32(up) - (double)x);
    if ((up & 0x7fff) == 0x7f80) du = ldexp(1.0, 128) - fabs((double)x); /* "up" is the next step past max */
    if (dd < du) return down;
    if (du < dd) return up;
    return (down & 1) ? up : down;
}

/* Edge values: zeros, smallest/largest denormals and normals, max, inf,
 * NaNs (quiet, signalling, payloads), halfway cases and their neighbours. */
static size_t edge_floats(uint32_t *out) {
    static const uint32_t base[] = {0x00000000, 0x00000001, 0x00000fff, 0x00007fff, 0x00008000, 0x00400000,
                                    0x007fffff, 0x00800000, 0x00807fff, 0x00808000, 0x00818000, 0x3f800000,
                                    0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x3f80ffff, 0x7f7f0000,
                                    0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0x7f800000, 0x7f800001, 0x7f808000,
                                    0x7fbfffff, 0x7fc00000, 0x7fc00001, 0x7fffffff, 0x7f80ffff, 0x7f810000};
    size_t n = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        out[n++] = base[i];
        out[n++] = base[i] | 0x80000000u;
    }
    return n;
}

/* A float from random bits, biased towards the cases that matter: halfway
 * low halves, denormals, NaNs and values next to the largest bf16. */
static uint32_t random_float_bits(void) {
    uint32_t u = rnd(), kind = rnd() % 8;
    if (kind == 0) u = (u & 0xffff0000u) | 0x8000u;                   /* exact tie */
    if (kind == 1) u = (u & 0x8000ffffu) | ((rnd() & 1) ? 0x7f7f0000u : 0x7f800000u); /* max .. NaN */
    if (kind == 2) u &= 0x807fffffu;                                  /* denormal or zero */
    if (kind == 3) u = (u & 0xffff0000u) | (0x7fffu + (rnd() % 3));   /* tie -1, tie, tie +1 */
    return u;
}

static void test_bf16_from_f32_matches_definition(void **state) {
    (void)state;
    uint32_t edges[64];
    size_t ne = edge_floats(edges);
    for (size_t i = 0; i < ne; i++) assert_int_equal(cllm_bf16_from_f32(from_bits(edges[i])), bf16_definition(from_bits(edges[i])));
    for (long i = 0; i < 2000000; i++) {
        float x = from_bits(random_float_bits());
        assert_int_equal(cllm_bf16_from_f32(x), bf16_definition(x));
    }
    /* Every bf16 that is not a NaN or denormal survives the round trip. */
    for (uint32_t h = 0; h < 65536; h++) {
        if (is_nan_bits(h << 16) || ((h & 0x7f80) == 0 && (h & 0x7f))) continue;
        assert_int_equal(cllm_bf16_from_f32(cllm_bf16_to_f32((uint16_t)h)), h);
    }
    /* The documented cases, spelled out. */
    assert_int_equal(cllm_bf16_from_f32(from_bits(0x3f808000u)), 0x3f80); /* tie to even (down) */
    assert_int_equal(cllm_bf16_from_f32(from_bits(0x3f818000u)), 0x3f82); /* tie to even (up) */
    assert_int_equal(cllm_bf16_from_f32(FLT_MAX), 0x7f80);               /* rounds to infinity */
    assert_int_equal(cllm_bf16_from_f32(from_bits(0x7f800001u)), 0x7fc0); /* signalling NaN made quiet */
    assert_int_equal(cllm_bf16_from_f32(from_bits(0x807fffffu)), 0x8000); /* denormal to -0 */
}

enum { CVT_RANDOM = 1 << 22 };

static void test_bf16_from_f32_matches_hardware(void **state) {
    (void)state;
    const cllm_bf16_hw_ops *hw = cllm_bf16_hw();
    if (!hw) {
        print_message("%s", NO_BF16);
        return;
    }
    size_t n = CVT_RANDOM;
    float *x = cllm_alloc(n * sizeof *x);
    uint16_t *one = cllm_alloc(n * sizeof *one), *two = cllm_alloc(n * sizeof *two);
    uint32_t edges[64];
    size_t ne = edge_floats(edges);
    for (size_t i = 0; i < n; i++) x[i] = from_bits(i < ne ? edges[i] : random_float_bits());
    /* Odd length and offset: the tails of both forms are exercised too. */
    hw->cvtneps(one, x, (int)n - 3);
    hw->cvtne2ps(two + 1, x + 1, (int)n - 5);
    size_t mismatches = 0;
    for (size_t i = 0; i < n - 5; i++) {
        uint16_t ref = cllm_bf16_from_f32(x[i]);
        if (one[i] != ref || (i >= 1 && two[i] != ref)) {
            if (mismatches++ < 5)
                print_message("x=0x%08x ref=0x%04x cvtneps=0x%04x cvtne2ps=0x%04x\n", bits(x[i]), ref, one[i], two[i]);
        }
    }
    print_message("fp32->bf16: %zu floats, reference == VCVTNEPS2BF16 == VCVTNE2PS2BF16 bit for bit: %zu mismatches\n",
                  n - 5, mismatches);
    assert_int_equal(mismatches, 0);
    cllm_free(x);
    cllm_free(one);
    cllm_free(two);
}

/* ------------------------------------------------------------ VDPBF16PS */

static float daz(float x) { return (fabsf(x) < FLT_MIN && x != 0.0f) ? copysignf(0.0f, x) : x; }

/* The float nearest c + p (ties to even), given as doubles, by hand: the
 * sum's rounding error is recovered with two-sum and decides the one case
 * double rounding gets wrong (a double sum exactly halfway between two
 * floats). Values must be in the float's normal range or beyond. */
static float round_sum_to_float(double c, double p) {
    double s = c + p;
    float f = (float)s;
    if (!isfinite(s)) return f;
    double bv = s - c, err = (c - (s - bv)) + (p - bv);
    double d = s - (double)f;
    if (err != 0.0 && d != 0.0) {
        float other = nextafterf(f, d > 0 ? INFINITY : -INFINITY);
        if (isfinite(other) && fabs((double)other - s) == fabs(d) && ((err > 0) == (other > f))) f = other;
    }
    return f;
}

/* acc + a*b rounded once, as specified: DAZ on the inputs; rounding to 24
 * bits with an unbounded exponent (small sums are scaled up by 2^64, exact in
 * double, so that no denormal grid is involved); a result below FLT_MIN after
 * that rounding becomes a zero of its sign. The product of two bf16 is exact
 * in double. */
static float fma_definition(float a, float b, float acc) {
    double p = (double)daz(a) * (double)daz(b), c = daz(acc);
    double scale = fabs(c + p) < 0x1p-100 ? 0x1p64 : 1.0;
    float f = round_sum_to_float(c * scale, p * scale);
    if (fabsf(f) < FLT_MIN * (float)scale) return copysignf(0.0f, f);
    return (float)((double)f / scale);
}

static float dp_definition(float acc, uint32_t a, uint32_t b) {
    acc = fma_definition(cllm_bf16_to_f32((uint16_t)(a >> 16)), cllm_bf16_to_f32((uint16_t)(b >> 16)), acc);
    return fma_definition(cllm_bf16_to_f32((uint16_t)a), cllm_bf16_to_f32((uint16_t)b), acc);
}

/* A bf16 with an exponent in [lo, hi] (biased), or a special now and then. */
static uint16_t random_bf16(int lo, int hi) {
    uint32_t r = rnd(), kind = r % 64;
    uint16_t sign = (uint16_t)((r >> 8) & 0x8000u), mant = (uint16_t)((r >> 16) & 0x7f);
    if (kind == 0) return sign;                          /* zero */
    if (kind == 1) return (uint16_t)(sign | (mant | 1)); /* denormal */
    if (kind == 2) return (uint16_t)(sign | 0x7f80);     /* infinity */
    if (kind == 3) return (uint16_t)(sign | 0x7fc0 | mant); /* NaN */
    int e = lo + (int)(rnd() % (unsigned)(hi - lo + 1));
    return (uint16_t)(sign | (e << 7) | mant);
}

/* A lane around the flush threshold: acc within a few ulps of +-FLT_MIN,
 * one product of either sign between about 2^-200 and 2^-110, the other
 * product zero or also tiny. */
static void boundary_lane(float *acc, uint32_t *a, uint32_t *b) {
    float m = from_bits(0x00800000u + rnd() % 4);
    *acc = (rnd() & 1) ? -m : m;
    uint16_t x = (uint16_t)(((127 - 55 - (int)(rnd() % 46)) << 7) | (rnd() & 0x7f));
    uint16_t y = (uint16_t)(((127 - 55 - (int)(rnd() % 46)) << 7) | (rnd() & 0x7f) | (rnd() & 0x8000));
    uint32_t other = rnd() % 4 == 0 ? (uint32_t)random_bf16(1, 60) : 0;
    int high = (int)(rnd() & 1); /* which element of the pair carries the product */
    *a = high ? ((uint32_t)x << 16) | other : x | (other << 16);
    *b = high ? ((uint32_t)y << 16) | other : y | (other << 16);
}

/* One random lane: exponent ranges chosen per lane so that products
 * overflow, underflow into and below the denormal range, and cancel
 * against the accumulator or each other. */
static void random_lane(float *acc, uint32_t *a, uint32_t *b) {
    static const int ranges[][2] = {{110, 144}, {1, 254}, {1, 40}, {40, 90}, {190, 254}, {120, 134}};
    int k = (int)(rnd() % 6);
    uint16_t ah = random_bf16(ranges[k][0], ranges[k][1]), bh = random_bf16(ranges[k][0], ranges[k][1]);
    uint16_t al = random_bf16(ranges[k][0], ranges[k][1]), bl = random_bf16(ranges[k][0], ranges[k][1]);
    *a = (uint32_t)al | ((uint32_t)ah << 16);
    *b = (uint32_t)bl | ((uint32_t)bh << 16);
    float hi = cllm_bf16_to_f32(ah) * cllm_bf16_to_f32(bh), lo = cllm_bf16_to_f32(al) * cllm_bf16_to_f32(bl);
    switch (rnd() % 8) {
    case 0: *acc = -hi; break;                                              /* cancels the first product */
    case 1: *acc = -hi * (1.0f + ldexpf((float)(rnd() % 16), -20)); break; /* almost cancels */
    case 2: *acc = -(hi + lo); break;                                       /* cancels the pair */
    case 3: *acc = from_bits(rnd() & 0x807fffffu); break;                  /* denormal accumulator */
    case 4: *acc = from_bits(rnd()); break;                                 /* anything, NaN included */
    default: *acc = hi * ldexpf(1.0f, (int)(rnd() % 40) - 20) * ((rnd() & 1) ? 1.0f : -1.0f); break;
    }
    if (rnd() % 16 == 0) {
        *b = (uint32_t)(*b & 0xffffu) | (uint32_t)(rnd() % 16 == 0 ? 0 : *b & 0xffff0000u);
    }
}

/* Equal bits, or both NaN (payloads are counted separately). */
static int same_result(float x, float y, size_t *nan_payload_differs) {
    if (isnan(x) && isnan(y)) {
        if (bits(x) != bits(y)) (*nan_payload_differs)++;
        return 1;
    }
    return bits(x) == bits(y);
}

static void test_dpbf16_ref_matches_definition(void **state) {
    (void)state;
    size_t nan_payload = 0;
    for (long i = 0; i < 2000000; i++) {
        float acc;
        uint32_t a, b;
        if (i % 4 == 3)
            boundary_lane(&acc, &a, &b);
        else
            random_lane(&acc, &a, &b);
        float r = cllm_dpbf16_ref(acc, a, b), d = dp_definition(acc, a, b);
        if (!same_result(r, d, &nan_payload)) fail_msg("acc=0x%08x a=0x%08x b=0x%08x: ref 0x%08x, definition 0x%08x", bits(acc), a, b, bits(r), bits(d));
    }
    /* Directed: the high pair goes first. acc = 1, high product 2^-24,
     * low product -1. High first: 1 + 2^-24 rounds to 1 (a tie, to even),
     * then 1 - 1 = 0. Low first would give 0 + 2^-24. */
    uint32_t a = (uint32_t)cllm_bf16_from_f32(-1.0f) | ((uint32_t)cllm_bf16_from_f32(0x1p-24f) << 16);
    uint32_t b = (uint32_t)cllm_bf16_from_f32(1.0f) | ((uint32_t)cllm_bf16_from_f32(1.0f) << 16);
    assert_int_equal(bits(cllm_dpbf16_ref(1.0f, a, b)), bits(0.0f));
    /* Denormal accumulator in is zero; denormal result out is zero. */
    assert_int_equal(bits(cllm_dpbf16_ref(FLT_MIN / 2, 0, 0)), 0);
    uint32_t t = cllm_bf16_from_f32(0x1p-70f);
    assert_int_equal(bits(cllm_dpbf16_ref(0.0f, t, t)), 0); /* 2^-140: denormal, flushed */
    assert_int_equal(bits(cllm_dpbf16_ref(0.0f, t << 16, t << 16)), 0);
    /* Tininess after rounding, unbounded exponent: FLT_MIN - 2^-150 is a
     * 24-bit float under FLT_MIN, flushed; FLT_MIN - 2^-151 is a tie that
     * rounds to FLT_MIN, kept; FLT_MIN - 2^-152 rounds to FLT_MIN, kept. */
    uint32_t half = cllm_bf16_from_f32(0x1p-75f), neg = cllm_bf16_from_f32(-0x1p-75f);
    uint32_t q = cllm_bf16_from_f32(0x1p-76f), q2 = cllm_bf16_from_f32(0x1p-77f);
    assert_int_equal(bits(cllm_dpbf16_ref(FLT_MIN, half, neg)), 0);
    assert_int_equal(bits(cllm_dpbf16_ref(FLT_MIN, q, neg)), bits(FLT_MIN));
    assert_int_equal(bits(cllm_dpbf16_ref(FLT_MIN, q2, neg)), bits(FLT_MIN));
    assert_int_equal(bits(cllm_dpbf16_ref(-FLT_MIN, half, half)), bits(-0.0f));
    /* NaN priority: src1 low, src2 low, src1 high, src2 high, accumulator;
     * made quiet; the default NaN for inf * 0. */
    /* a pair's high half is element 2i+1, its low half element 2i */
    assert_int_equal(bits(cllm_dpbf16_ref(NAN, 0x7f817fc2u, 0xffc37fc4u)), 0x7fc20000u); /* src1 low */
    assert_int_equal(bits(cllm_dpbf16_ref(NAN, 0x7fc23f80u, 0xffc37fc4u)), 0x7fc40000u); /* src2 low */
    assert_int_equal(bits(cllm_dpbf16_ref(NAN, 0x7f813f80u, 0xffc33f80u)), 0x7fc10000u); /* src1 high, quieted */
    assert_int_equal(bits(cllm_dpbf16_ref(NAN, 0x3f803f80u, 0xffc33f80u)), 0xffc30000u); /* src2 high */
    assert_int_equal(bits(cllm_dpbf16_ref(from_bits(0x7f812345u), 0x3f803f80u, 0x3f803f80u)), 0x7fc12345u);
    assert_int_equal(bits(cllm_dpbf16_ref(1.0f, 0x7f800000u, 0x00003f80u)), 0xffc00000u);
}

/* Every combination of quiet and signalling NaNs of both signs, infinities,
 * zero and one in the four bf16 operands, over five accumulators: which NaN
 * comes out when several compete, and inf * 0, inf - inf. */
static size_t nan_grid_mismatches(const cllm_bf16_hw_ops *hw, size_t *count) {
    static const uint16_t v[] = {0x7fc1, 0xffc2, 0x7f81, 0xff85, 0x7f80, 0xff80, 0x3f80, 0x0000};
    static const uint32_t accs[] = {0x3f800000u, 0x7fc12345u, 0xffd00001u, 0x7f800000u, 0x7f800001u};
    size_t mismatches = 0;
    *count = 0;
    for (int c = 0; c < 5; c++)
        for (int i = 0; i < 8 * 8 * 8 * 8; i++) {
            uint32_t a = v[i & 7] | (uint32_t)v[(i >> 3) & 7] << 16, b = v[(i >> 6) & 7] | (uint32_t)v[i >> 9] << 16;
            float acc = from_bits(accs[c]), out = acc;
            hw->dpbf16(&out, &a, &b, 1);
            float r = cllm_dpbf16_ref(acc, a, b);
            if (bits(r) != bits(out) && mismatches++ < 4)
                print_message("acc=0x%08x a=0x%08x b=0x%08x: ref 0x%08x, VDPBF16PS 0x%08x\n", accs[c], a, b, bits(r),
                              bits(out));
            (*count)++;
        }
    return mismatches;
}

enum { DP_LANES = 1 << 22 };

static void test_dpbf16_ref_matches_hardware(void **state) {
    (void)state;
    const cllm_bf16_hw_ops *hw = cllm_bf16_hw();
    if (!hw) {
        print_message("%s", NO_BF16);
        return;
    }
    /* A longer one-off run: BF16_TEST_LANES=200000000 (not a CLLM_* name: the
     * binary refuses unknown CLLM_* variables, and other tests run it). */
    const char *env = getenv("BF16_TEST_LANES");
    size_t n = env ? (size_t)strtoull(env, NULL, 10) : (size_t)DP_LANES;
    size_t batch = n < (1u << 22) ? n : (1u << 22);
    float *acc = cllm_alloc(batch * sizeof *acc), *out = cllm_alloc(batch * sizeof *out);
    uint32_t *a = cllm_alloc(batch * sizeof *a), *b = cllm_alloc(batch * sizeof *b);
    size_t mismatches = 0, nan_payload = 0, nans = 0, zeros = 0, infs = 0;
    for (size_t done = 0; done < n; done += batch) {
        size_t m = n - done < batch ? n - done : batch;
        for (size_t i = 0; i < m; i++) {
            if (i % 4 == 3)
                boundary_lane(&acc[i], &a[i], &b[i]);
            else
                random_lane(&acc[i], &a[i], &b[i]);
        }
        memcpy(out, acc, m * sizeof *out);
        hw->dpbf16(out, a, b, (int)m);
        for (size_t i = 0; i < m; i++) {
            float r = cllm_dpbf16_ref(acc[i], a[i], b[i]);
            nans += isnan(out[i]) != 0;
            zeros += out[i] == 0.0f;
            infs += isinf(out[i]) != 0;
            /* NaNs too must match bit for bit (the reference fixes the
             * documented NaN priority); payload-only differences are counted
             * apart so that a CPU that differs there says so. */
            int equal = same_result(r, out[i], &nan_payload) && bits(r) == bits(out[i]);
            if (!equal && mismatches++ < 8)
                print_message("acc=0x%08x a=0x%08x b=0x%08x: ref 0x%08x, VDPBF16PS 0x%08x\n", bits(acc[i]), a[i], b[i],
                              bits(r), bits(out[i]));
        }
    }
    size_t grid = 0, grid_mismatches = nan_grid_mismatches(hw, &grid);
    print_message("VDPBF16PS: %zu random lanes (%zu NaN, %zu zero, %zu infinite results): %zu mismatches, of which "
                  "%zu NaNs with another payload; NaN/inf/zero grid: %zu of %zu lanes differ\n", n, nans, zeros, infs,
                  mismatches, nan_payload, grid_mismatches, grid);
    assert_int_equal(mismatches, 0);
    assert_int_equal(grid_mismatches, 0);
    cllm_free(acc);
    cllm_free(out);
    cllm_free(a);
    cllm_free(b);
}

/* ------------------------------------------------------------ matrix product */

static float random_entry(void) {
    float x = ((float)rnd() / 4294967296.0f * 2.0f - 1.0f) * ldexpf(1.0f, (int)(rnd() % 9) - 4);
    return (rnd() % 97 == 0) ? 0.0f : x;
}

/* For the "hostile" problems: entries that leave the normal range when
 * multiplied or summed (huge, tiny, denormal, infinite, NaN), so the
 * portable kernel's fallback to the reference is exercised. */
static float hostile_entry(void) {
    switch (rnd() % 16) {
    case 0: return from_bits(rnd() & 0x807fffffu);             /* denormal (or zero) */
    case 1: return ldexpf(1.0f + (float)(rnd() % 128) / 128.0f, -63 - (int)(rnd() % 8)); /* products underflow */
    case 2: return ldexpf(-1.0f - (float)(rnd() % 128) / 128.0f, 63 + (int)(rnd() % 8)); /* products overflow */
    case 3: return (rnd() % 2) ? INFINITY : -INFINITY;
    case 4: return from_bits(0x7f800001u | (rnd() & 0x807fffffu)); /* NaN, maybe signalling */
    case 5: return ldexpf(1.0f, -126) * (1.0f + (float)(rnd() % 4)); /* near FLT_MIN */
    default: return random_entry();
    }
}

/* For the "edge" problems: operands at the ends of the portable kernel's
 * fast range (zero, or bf16 magnitudes in [2^-40, 2^40]) and accumulators
 * at its low end (2^-70) or high end (2^100), where its proof that plain
 * fp32 adds are the instruction's is tightest (src/kernels/portable/bf16.c). */
static float edge_entry(void) {
    float m = 1.0f + (float)(rnd() % 128) / 128.0f, sign = rnd() % 2 ? -1.0f : 1.0f;
    switch (rnd() % 8) {
    case 0: return 0.0f;
    case 1: case 2: case 3: return sign * ldexpf(m, -40);
    case 4: case 5: return sign * ldexpf(m, 39);
    default: return random_entry();
    }
}

static float edge_accumulator(void) {
    float m = 1.0f + (float)(rnd() % 128) / 128.0f, sign = rnd() % 2 ? -1.0f : 1.0f;
    switch (rnd() % 4) {
    case 0: return 0.0f;
    case 1: return sign * ldexpf(m, -70);
    case 2: return sign * ldexpf(m, 99);
    default: return sign * ldexpf(m, -70) * (float)(1 + rnd() % 1000);
    }
}

enum { PLAIN_ENTRIES, HOSTILE_ENTRIES, EDGE_ENTRIES };

/* op(A) is M x K, op(B) is K x N; stored transposed when trans_*; B (and
 * sometimes A) also given as a bf16 copy. Every operand is one float (or one
 * bf16) off an aligned allocation, with padded leading dimensions. */
typedef struct {
    int M, N, K, trans_a, trans_b, lda, ldb, ldc, accumulate, a_bf16, b_bf16;
    float *A, *B, *C0;
    uint16_t *A16, *B16;
} problem;

static size_t stored(int rows, int ld) { return (size_t)rows * (size_t)ld; }

static problem make_problem(int M, int N, int K, int trans_a, int trans_b, int kind) {
    int hostile = kind == HOSTILE_ENTRIES;
    problem p = {.M = M, .N = N, .K = K, .trans_a = trans_a, .trans_b = trans_b};
    int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K, b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    p.lda = a_cols + (int)(rnd() % 3); /* one draw per statement: the same shapes under any compiler */
    p.ldb = b_cols + (int)(rnd() % 3);
    p.ldc = N + (int)(rnd() % 3);
    p.accumulate = (int)(rnd() % 2);
    p.a_bf16 = rnd() % 4 == 0;
    p.b_bf16 = (int)(rnd() % 2);
    size_t na = stored(a_rows, p.lda), nb = stored(b_rows, p.ldb), nc = stored(M, p.ldc);
    p.A = (float *)cllm_alloc((na + 2) * sizeof(float)) + 1;
    p.B = (float *)cllm_alloc((nb + 2) * sizeof(float)) + 1;
    p.C0 = (float *)cllm_alloc((nc + 2) * sizeof(float)) + 1;
    p.A16 = (uint16_t *)cllm_alloc((na + 2) * sizeof(uint16_t)) + 1;
    p.B16 = (uint16_t *)cllm_alloc((nb + 2) * sizeof(uint16_t)) + 1;
    float (*entry)(void) = hostile ? hostile_entry : kind == EDGE_ENTRIES ? edge_entry : random_entry;
    for (size_t i = 0; i < na; i++) p.A[i] = entry();
    for (size_t i = 0; i < nb; i++) p.B[i] = entry();
    for (size_t i = 0; i < nc; i++) p.C0[i] = kind == EDGE_ENTRIES ? edge_accumulator() : entry();
    /* A bf16 copy may hold any bits, denormals included (rounding never
     * makes those, but the kernels must read them as the instruction does). */
    for (size_t i = 0; i < na; i++) p.A16[i] = hostile && rnd() % 8 == 0 ? (uint16_t)rnd() : cllm_bf16_from_f32(p.A[i]);
    for (size_t i = 0; i < nb; i++) p.B16[i] = hostile && rnd() % 8 == 0 ? (uint16_t)rnd() : cllm_bf16_from_f32(p.B[i]);
    return p;
}

static void free_problem(problem *p) {
    cllm_free(p->A - 1);
    cllm_free(p->B - 1);
    cllm_free(p->C0 - 1);
    cllm_free(p->A16 - 1);
    cllm_free(p->B16 - 1);
}

static cllm_bf16_operand op_a(const problem *p) {
    return p->a_bf16 ? cllm_bf16_op_bf16(p->A16, p->lda, p->trans_a) : cllm_bf16_op_f32(p->A, p->lda, p->trans_a);
}
static cllm_bf16_operand op_b(const problem *p) {
    return p->b_bf16 ? cllm_bf16_op_bf16(p->B16, p->ldb, p->trans_b) : cllm_bf16_op_f32(p->B, p->ldb, p->trans_b);
}

static float *run(const problem *p, cllm_gemm_bf16_fn gemm) {
    size_t n = stored(p->M, p->ldc);
    float *C = (float *)cllm_alloc((n + 2) * sizeof(float)) + 1;
    memcpy(C - 1, p->C0 - 1, (n + 2) * sizeof *C);
    cllm_bf16_operand a = op_a(p), b = op_b(p);
    gemm(p->M, p->N, p->K, &a, &b, C, p->ldc, p->accumulate);
    return C;
}

/* op(X)(r, c) as bf16 bits, read straight from the storage. */
static uint16_t at(const float *x, const uint16_t *x16, int use16, int ld, int trans, int r, int c) {
    size_t i = trans ? (size_t)c * ld + r : (size_t)r * ld + c;
    return use16 ? x16[i] : cllm_bf16_from_f32(x[i]);
}

static void test_gemm_bf16_ref_matches_definition(void **state) {
    (void)state;
    for (int t = 0; t < 80; t++) {
        problem p = make_problem(1 + (int)(rnd() % 37), 1 + (int)(rnd() % 37), 1 + (int)(rnd() % 37), t % 2,
                                 t / 2 % 2, t % 5 == 4 ? HOSTILE_ENTRIES : PLAIN_ENTRIES);
        float *C = run(&p, cllm_gemm_bf16_ref);
        for (int i = 0; i < p.M; i++)
            for (int j = 0; j < p.ldc; j++) {
                float want = p.C0[(size_t)i * p.ldc + j]; /* padding columns untouched */
                if (j < p.N) {
                    float acc = p.accumulate ? want : 0.0f;
                    for (int k = 0; k < p.K; k += 2) {
                        uint32_t a0 = at(p.A, p.A16, p.a_bf16, p.lda, p.trans_a, i, k);
                        uint32_t b0 = at(p.B, p.B16, p.b_bf16, p.ldb, p.trans_b, k, j);
                        uint32_t a1 = k + 1 < p.K ? at(p.A, p.A16, p.a_bf16, p.lda, p.trans_a, i, k + 1) : 0;
                        uint32_t b1 = k + 1 < p.K ? at(p.B, p.B16, p.b_bf16, p.ldb, p.trans_b, k + 1, j) : 0;
                        acc = dp_definition(acc, a0 | a1 << 16, b0 | b1 << 16);
                    }
                    want = acc;
                }
                /* The definition fixes no NaN payload (the hardware test checks those). */
                float got = C[(size_t)i * p.ldc + j];
                if (!(isnan(got) && isnan(want))) assert_int_equal(bits(got), bits(want));
            }
        cllm_free(C - 1);
        free_problem(&p);
    }
}

/* Kernel k's product against the reference on `count` random problems,
 * every transposition and operand type; hostile ones every 4th. */
static void check_against_ref(const char *what, cllm_gemm_bf16_fn gemm, int count) {
    for (int t = 0; t < count; t++) {
        /* Mostly 1..67 in each dimension, K odd half the time; a few K past
         * the kernels' K chunks so the chunking shows. */
        int M = 1 + (int)(rnd() % 67), N = 1 + (int)(rnd() % 67);
        int K = t % 10 == 9 ? 250 + (int)(rnd() % 600) : 1 + (int)(rnd() % 67);
        if (t % 25 == 7) { /* past the kernels' column blocks, few rows to keep the reference quick */
            M = 1 + (int)(rnd() % 9);
            N = 250 + (int)(rnd() % 850);
        }
        if (t % 50 == 13) { /* K beyond one pass of the fast kernel's B buffer (6144 pairs) */
            M = 1 + (int)(rnd() % 4);
            N = 1 + (int)(rnd() % 70);
            K = 12289 + (int)(rnd() % 300);
        }
        problem p = make_problem(M, N, K, t % 2, t / 2 % 2,
                                 t % 4 == 3 ? HOSTILE_ENTRIES : t % 8 == 5 ? EDGE_ENTRIES : PLAIN_ENTRIES);
        float *want = run(&p, cllm_gemm_bf16_ref), *got = run(&p, gemm);
        size_t n = stored(p.M, p.ldc);
        if (memcmp(want - 1, got - 1, (n + 2) * sizeof(float)) != 0) {
            for (size_t i = 0; i < n; i++)
                if (bits(want[i]) != bits(got[i]))
                    fail_msg("%s gemm_bf16 M=%d N=%d K=%d ta=%d tb=%d a16=%d b16=%d acc=%d: C[%zu] = 0x%08x, "
                             "reference 0x%08x", what, M, N, K, p.trans_a, p.trans_b, p.a_bf16, p.b_bf16,
                             p.accumulate, i, bits(got[i]), bits(want[i]));
            fail_msg("%s gemm_bf16 M=%d N=%d K=%d: wrote outside C", what, M, N, K);
        }
        cllm_free(want - 1);
        cllm_free(got - 1);
        free_problem(&p);
    }
    print_message("gemm_bf16 %s: %d random shapes (NN, NT, TN, TT; fp32 and bf16 operands; a quarter with "
                  "denormals, infinities, NaNs, over- and underflow, an eighth at the ends of the portable "
                  "kernel's fast range), bitwise the reference\n", what, count);
}

static void test_gemm_bf16_fast_equals_ref(void **state) {
    (void)state;
    const cllm_kernel_table *avx512 = cllm_kernel_table_for(CLLM_SIMD_AVX512);
    if (avx512 && avx512->bf16_fast)
        check_against_ref("avx512bf16 (VDPBF16PS)", avx512->gemm_bf16, 400);
    else
        print_message("VDPBF16PS kernel %s", NO_BF16);
}

static void test_gemm_bf16_portable_equals_ref(void **state) {
    (void)state;
    check_against_ref("portable", cllm_kernel_table_for(CLLM_SIMD_OMP)->gemm_bf16, 300);
}

/* K = 0 on every table's product: C zeroed (within its N columns, nothing
 * past them), or left as it is when accumulating. */
static void test_gemm_bf16_empty_k(void **state) {
    (void)state;
    float a = 1.0f, b = 1.0f;
    cllm_bf16_operand A = cllm_bf16_op_f32(&a, 1, 0), B = cllm_bf16_op_f32(&b, 1, 0);
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (!k) continue;
        float C[3 * 5];
        for (int i = 0; i < 15; i++) C[i] = 7.0f;
        k->gemm_bf16(3, 4, 0, &A, &B, C, 5, 1);
        for (int i = 0; i < 15; i++) assert_true(C[i] == 7.0f);
        k->gemm_bf16(3, 4, 0, &A, &B, C, 5, 0);
        for (int i = 0; i < 15; i++) assert_true(C[i] == (i % 5 < 4 ? 0.0f : 7.0f));
    }
}

/* The weights' bf16 copy: every table's bf16_round gives
 * cllm_bf16_from_f32's bits, on lengths that end mid-vector. */
static void test_bf16_round_equals_reference(void **state) {
    (void)state;
    enum { N = 1000 };
    float *x = (float *)cllm_alloc((N + 1) * sizeof(float)) + 1;
    uint16_t *got = cllm_alloc((N + 16) * sizeof(uint16_t));
    for (int i = 0; i < N; i++) x[i] = i % 7 == 0 ? hostile_entry() : from_bits(rnd());
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (!k) continue;
        for (int n = 0; n <= N; n += 1 + n / 3) {
            memset(got, 0xab, (N + 16) * sizeof(uint16_t));
            k->bf16_round(got, x, (size_t)n);
            for (int i = 0; i < n; i++) assert_int_equal(got[i], cllm_bf16_from_f32(x[i]));
            assert_int_equal(got[n], 0xabab); /* nothing written past n */
        }
    }
    cllm_free(x - 1);
    cllm_free(got);
}

/* `cllm bench matmul --precision bf16` (and its alias --bf16) times the
 * product on all 12 shapes where the instruction exists and says there is
 * nothing to time elsewhere; either way it succeeds. */
static void test_bench_matmul_bf16_runs_or_says_why_not(void **state) {
    (void)state;
    const char *commands[2] = {"bench matmul --precision bf16 --preset S --rows 32 --repeats 1",
                               "bench matmul --bf16 --preset S --rows 32 --repeats 1"};
    for (int i = 0; i < 2; i++) {
        run_result r = run_cllm("OMP_NUM_THREADS=1", commands[i]);
        assert_int_equal(r.exit_code, 0);
        if (cllm_cpu()->avx512bf16) {
            assert_non_null(strstr(r.out, "qkv   fwd"));
            assert_non_null(strstr(r.out, "qkv   dX"));
            assert_non_null(strstr(r.out, "fcprj dW"));
        } else {
            assert_non_null(strstr(r.out, "nothing to time as a speed-up"));
            print_message("bench matmul --precision bf16: this CPU has no AVX512_BF16, so only the refusal was "
                          "checked\n");
        }
        run_result_free(&r);
    }
}

/* `cllm bench step --precision bf16` times fp32 and bf16 steps side by side
 * (on the portable emulation where the CPU lacks the instruction). */
static void test_bench_step_bf16_reports_both(void **state) {
    (void)state;
    run_result r = run_cllm("OMP_NUM_THREADS=1", "bench step --precision bf16 --preset S --repeats 1 --json");
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "\"precision\":\"bf16\""));
    assert_non_null(strstr(r.out, "\"bf16_tokens_per_s\":"));
    assert_non_null(strstr(r.out, cllm_cpu()->avx512bf16 ? "\"bf16_fast\":true" : "\"bf16_fast\":false"));
    run_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_matmul_bf16_runs_or_says_why_not),
        cmocka_unit_test(test_bench_step_bf16_reports_both),
        cmocka_unit_test(test_detection_matches_proc_cpuinfo),
        cmocka_unit_test(test_table_offers_fast_bf16_only_with_the_instructions),
        cmocka_unit_test(test_bf16_from_f32_matches_definition),
        cmocka_unit_test(test_bf16_from_f32_matches_hardware),
        cmocka_unit_test(test_dpbf16_ref_matches_definition),
        cmocka_unit_test(test_dpbf16_ref_matches_hardware),
        cmocka_unit_test(test_gemm_bf16_ref_matches_definition),
        cmocka_unit_test(test_gemm_bf16_fast_equals_ref),
        cmocka_unit_test(test_gemm_bf16_portable_equals_ref),
        cmocka_unit_test(test_gemm_bf16_empty_k),
        cmocka_unit_test(test_bf16_round_equals_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
