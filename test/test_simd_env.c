/* CLLM_SIMD through the binary: the CLI resolves it once and hands the
 * kernel table to what it creates, so the variable must still choose the
 * arithmetic of train, eval and bench (there is no process-global switch
 * any more that the library would read). Each check runs the same work under
 * the scalar table and under the best one: the bytes must differ between the
 * two (the tables round differently) and agree between two runs of the same
 * table (so the difference is the table's, not noise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/common.h"
#include "cllm/kernels/kernels.h"
#include "support.h"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = make_temp_dir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(dir);
    free(dir);
    return 0;
}

static run_result run_with(const char *simd, const char *args) {
    char env[128];
    snprintf(env, sizeof env, "CLLM_SIMD=%s OMP_NUM_THREADS=1", simd);
    run_result r = run_cllm(env, args);
    if (r.exit_code != 0) fail_msg("%s cllm %s: exit %d, stderr '%s'", env, args, r.exit_code, r.err);
    return r;
}

static uint64_t file_hash(const char *path) {
    size_t n = 0;
    unsigned char *bytes = read_whole_file(path, &n);
    assert_non_null(bytes);
    assert_true(n > 0);
    uint64_t h = cllm_fnv1a64(bytes, n, CLLM_FNV1A64_OFFSET);
    free(bytes);
    return h;
}

/* Trains the tiny model for a few steps into dir/<name>; returns the hash of
 * its model.safetensors and checks the start-up summary names the path. */
static uint64_t train_with(const char *simd, const char *name) {
    char args[8192], want[64], path[8192];
    snprintf(args, sizeof args, "train --preset tiny --steps 3 --seed 7 --sample-tokens 0 --out '%s/%s'", dir, name);
    run_result r = run_with(simd, args);
    snprintf(want, sizeof want, "SIMD %s,", simd);
    if (!strstr(r.out, want)) fail_msg("CLLM_SIMD=%s: the start-up summary does not say '%s':\n%s", simd, want, r.out);
    run_result_free(&r);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, name);
    return file_hash(path);
}

static const char *fast_path(void) { return cllm_simd_name(cllm_simd_best()); }

static void test_train_runs_the_path_cllm_simd_names(void **state) {
    (void)state;
    uint64_t scalar = train_with("scalar", "scalar");
    uint64_t fast = train_with(fast_path(), "fast");
    uint64_t fast_again = train_with(fast_path(), "fast-again");
    printf("train: scalar %016llx, %s %016llx\n", (unsigned long long)scalar, fast_path(), (unsigned long long)fast);
    assert_true(fast == fast_again);
    assert_true(scalar != fast);
}

/* eval --dump-logits writes one forward's raw logits: their bytes show
 * which table the loaded model ran on. Uses the run trained above. */
static uint64_t dump_with(const char *simd, const char *name) {
    char args[12288], path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    snprintf(args, sizeof args, "eval '%s/fast' --dump-logits '%s' --tokens \"1 2 3 4 5 6 7 8 9 10\"", dir, path);
    run_result r = run_with(simd, args);
    run_result_free(&r);
    return file_hash(path);
}

static void test_eval_runs_the_path_cllm_simd_names(void **state) {
    (void)state;
    char path[8192];
    snprintf(path, sizeof path, "%s/fast/model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    if (!f) train_with(fast_path(), "fast");
    else fclose(f);
    uint64_t scalar = dump_with("scalar", "scalar");
    uint64_t fast = dump_with(fast_path(), "fast");
    assert_true(fast == dump_with(fast_path(), "fast-again"));
    assert_true(scalar != fast);
}

/* bench step reports the table it timed. The path asked for is not the
 * default one (so the report cannot be right by accident) and has
 * intrinsics, fast enough for one timed step even in a sanitizer build. */
static void test_bench_step_reports_the_path_cllm_simd_names(void **state) {
    (void)state;
    cllm_simd best = cllm_simd_best();
    if (best < CLLM_SIMD_AVX2) {
        print_message("bench step: skipped, this CPU has no vector path besides the default %s\n",
                      cllm_simd_name(best));
        return;
    }
    const char *path = best == CLLM_SIMD_AVX512 ? "avx2" : "omp";
    run_result r = run_with(path, "bench step --preset S --repeats 1 --json");
    char want[64];
    snprintf(want, sizeof want, "\"simd\":\"%s\"", path);
    if (!strstr(r.out, want)) fail_msg("bench step under CLLM_SIMD=%s printed: %s", path, r.out);
    run_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_runs_the_path_cllm_simd_names),
        cmocka_unit_test(test_eval_runs_the_path_cllm_simd_names),
        cmocka_unit_test(test_bench_step_reports_the_path_cllm_simd_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
