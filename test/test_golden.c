/* The golden run: `cllm train --preset tiny --steps 20 --seed 7` on the
 * built-in corpus must write a model.safetensors whose FNV-1a 64 is the one
 * recorded below, at 1 and 2 threads.
 *
 * Why: a restructure or a speed-up that is not meant to change numbers must
 * keep this file byte-identical; the tests that compare two runs of the same
 * build cannot see a change that moves both.
 *
 * The scalar path (CLLM_SIMD=scalar) gives the same bytes under gcc and
 * clang, Release and Debug, with or without sanitizers (no FMA contraction
 * in the reference code), so its hash is checked on every build. The fast
 * paths depend on the compiler's instruction choices, so their hashes are
 * keyed by compiler, version and build type; other builds print that they
 * skip them.
 *
 * When may these change? Only in a commit that means to change the numerics
 * (a new initialisation, a different reduction order, a kernel that rounds
 * differently), which says so. Regenerate with, for each path P:
 *   CLLM_SIMD=P OMP_NUM_THREADS=1 ./build/cllm train --preset tiny --steps 20 \
 *       --seed 7 --pretokenize cllm --sample-tokens 0 --quiet --out /tmp/golden-P
 * and the FNV-1a 64 of /tmp/golden-P/model.safetensors (this test prints it
 * on a mismatch). Recorded on 2026-12-01 from commit 1756414, before the
 * reliability and restructure work. `--pretokenize cllm` keeps it the run it
 * always was: GPT-2 pre-tokenization, the default since, makes other tokens
 * (and needs libutf8proc, which a build may lack). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/common.h"
#include "cllm/kernels/kernels.h"
#include "support.h"

typedef struct {
    const char *build; /* CLLM_BUILD_KEY, or "*" for any build */
    const char *simd;
    uint64_t fnv;
} golden;

static const golden goldens[] = {
    {"*", "scalar", 0xe67ec16cd9a49760ULL},
    {"GNU-12.2.0-Release-", "omp", 0x8ccfa8509a1ff02eULL},
    {"GNU-12.2.0-Release-", "avx2", 0xd4c1cf33a133e59fULL},
    {"GNU-12.2.0-Release-", "avx512", 0x5fe932de57b6614bULL},
    {"Clang-14.0.6-Release-", "omp", 0x5a0ce32da7bbfaa9ULL},
    {"Clang-14.0.6-Release-", "avx2", 0x0832e858b2120754ULL},
    {"Clang-14.0.6-Release-", "avx512", 0x465f59a8802810eaULL},
};

static uint64_t golden_run(const char *simd, int threads) {
    char *dir = make_temp_dir();
    char env[256], args[8192];
    snprintf(env, sizeof env, "CLLM_SIMD=%s OMP_NUM_THREADS=%d", simd, threads);
    snprintf(args, sizeof args,
             "train --preset tiny --steps 20 --seed 7 --pretokenize cllm --sample-tokens 0 --quiet --out '%s/run'",
             dir);
    run_result r = run_cllm(env, args);
    if (r.exit_code != 0) fail_msg("%s cllm %s: exit %d, stderr '%s'", env, args, r.exit_code, r.err);
    run_result_free(&r);
    char path[8192];
    snprintf(path, sizeof path, "%s/run/model.safetensors", dir);
    size_t n = 0;
    unsigned char *bytes = read_whole_file(path, &n);
    assert_non_null(bytes);
    uint64_t h = cllm_fnv1a64(bytes, n, CLLM_FNV1A64_OFFSET);
    free(bytes);
    remove_tree(dir);
    free(dir);
    return h;
}

static void check(const golden *g, int threads) {
    uint64_t h = golden_run(g->simd, threads);
    if (h != g->fnv)
        fail_msg("golden run, CLLM_SIMD=%s, %d thread(s), build %s: model.safetensors FNV-1a %016" PRIx64
                 ", recorded %016" PRIx64 " (see the comment at the top of test_golden.c)",
                 g->simd, threads, CLLM_BUILD_KEY, h, g->fnv);
}

static cllm_simd simd_of(const char *name) {
    cllm_simd s = CLLM_SIMD_SCALAR;
    for (int i = CLLM_SIMD_SCALAR; i <= CLLM_SIMD_AVX512; i++)
        if (strcmp(cllm_simd_name((cllm_simd)i), name) == 0) s = (cllm_simd)i;
    return s;
}

static void test_scalar_golden_on_every_build(void **state) {
    (void)state;
    check(&goldens[0], 1);
    check(&goldens[0], 2);
}

static void test_fast_path_goldens_of_this_build(void **state) {
    (void)state;
    int checked = 0;
    for (size_t i = 1; i < sizeof goldens / sizeof goldens[0]; i++) {
        const golden *g = &goldens[i];
        if (strcmp(g->build, CLLM_BUILD_KEY) != 0) continue;
        if (!cllm_simd_supported(simd_of(g->simd))) {
            print_message("golden %s: skipped, this CPU cannot run the %s path\n", g->simd, g->simd);
            continue;
        }
        check(g, 2);
        checked++;
    }
    if (!checked)
        print_message("fast-path goldens: skipped, none recorded for build %s (only the scalar golden applies)\n",
                      CLLM_BUILD_KEY);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_golden_on_every_build),
        cmocka_unit_test(test_fast_path_goldens_of_this_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
