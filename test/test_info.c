/* `cllm info`: the JSON form parses as strict JSON and agrees with what this
 * process detects; the text form shows the same facts. */
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/base/build_config.h"
#include "cllm/base/cpu.h"
#include "cllm/kernels/kernels.h"
#include "cllm/base/json.h"
#include "support.h"

/* Runs `cllm info --json` with env and parses stdout strictly. */
static cllm_json *info_json(const char *env) {
    run_result r = run_cllm(env, "info --json");
    if (r.exit_code != 0) fail_msg("cllm info --json exited %d: %s", r.exit_code, r.err);
    assert_int_equal(count_lines(r.out), 1);
    cllm_json *j = NULL;
    if (cllm_json_parse(r.out, strlen(r.out), &j) != CLLM_OK) fail_msg("invalid JSON (%s): %s", cllm_last_error(), r.out);
    run_result_free(&r);
    assert_int_equal(j->type, CLLM_JSON_OBJECT);
    return j;
}

static const cllm_json *member(const cllm_json *obj, const char *key, cllm_json_type type) {
    const cllm_json *v = cllm_json_get(obj, key);
    if (!v) fail_msg("key '%s' missing", key);
    if (v->type != type) fail_msg("key '%s' has type %d, expected %d", key, (int)v->type, (int)type);
    return v;
}

static int flag(const cllm_json *obj, const char *key) { return member(obj, key, CLLM_JSON_BOOL)->boolean; }

static const char *text(const cllm_json *obj, const char *key) { return member(obj, key, CLLM_JSON_STRING)->string; }

static void test_json_cpu_matches_detection(void **state) {
    (void)state;
    cllm_json *j = info_json("env -u CLLM_SIMD");
    const cllm_cpu_features *cpu = cllm_cpu();
    const cllm_json *c = member(j, "cpu", CLLM_JSON_OBJECT);
    assert_int_equal(flag(c, "sse4_2"), cpu->sse42);
    assert_int_equal(flag(c, "avx2"), cpu->avx2);
    assert_int_equal(flag(c, "fma"), cpu->fma);
    assert_int_equal(flag(c, "avx512f"), cpu->avx512f);
    assert_int_equal(flag(c, "avx512_bf16"), cpu->avx512bf16);
    assert_int_equal(flag(c, "amx_bf16"), cpu->amx_bf16);
    assert_string_equal(text(c, "model"), cpu->model);
    assert_string_equal(text(j, "simd"), cllm_simd_name(cllm_simd_best()));
    assert_string_equal(text(j, "compiler"), CLLM_COMPILER_ID);
    assert_string_equal(text(j, "version"), CLLM_VERSION);
    /* bf16 is fast exactly where the CPU has AVX512_BF16 (on the default path). */
    assert_int_equal(flag(j, "bf16_fast"), cpu->avx512bf16 && cpu->avx512f);
    cllm_json_free(j);
    /* A path without a bf16 kernel says bf16 is slow there. */
    j = info_json("CLLM_SIMD=omp");
    assert_false(flag(j, "bf16_fast"));
    cllm_json_free(j);
}

static void test_json_openmp_section(void **state) {
    (void)state;
    cllm_json *j = info_json("env -u OMP_PROC_BIND -u OMP_PLACES OMP_NUM_THREADS=2 OMP_SCHEDULE=static,8");
    const cllm_json *o = member(j, "openmp", CLLM_JSON_OBJECT);
    assert_int_equal(member(o, "version", CLLM_JSON_NUMBER)->integer, _OPENMP);
    assert_int_equal(member(o, "max_threads", CLLM_JSON_NUMBER)->integer, 2);
    assert_int_equal(member(o, "num_procs", CLLM_JSON_NUMBER)->integer, omp_get_num_procs());
    /* libgomp reports static as "monotonic:static" (static is always monotonic). */
    const char *sched = text(o, "schedule");
    assert_true(!strcmp(sched, "static,8") || !strcmp(sched, "monotonic:static,8"));
    assert_int_equal(member(o, "OMP_PROC_BIND", CLLM_JSON_NULL)->type, CLLM_JSON_NULL);
    assert_int_equal(member(o, "OMP_PLACES", CLLM_JSON_NULL)->type, CLLM_JSON_NULL);
    /* The runtime this test links is the one the binary links: same compiler. */
#if defined(__clang__)
    assert_non_null(strstr(text(o, "runtime"), "libomp"));
#else
    assert_non_null(strstr(text(o, "runtime"), "libgomp"));
#endif
    assert_true(strlen(text(o, "spec")) == 3);
    const cllm_json *f = member(j, "features", CLLM_JSON_OBJECT);
    assert_int_equal(flag(f, "cairo"), CLLM_HAVE_CAIRO);
    assert_int_equal(flag(f, "utf8proc"), CLLM_HAVE_UTF8PROC);
    assert_int_equal(flag(f, "openblas"), CLLM_HAVE_OPENBLAS);
    assert_int_equal(flag(f, "mpi"), CLLM_HAVE_MPI);
    /* Not started by mpirun: one rank, the OpenMP threads per rank; the
     * library named by MPI itself, or the build's lack of it. */
    const cllm_json *mpi = member(j, "mpi", CLLM_JSON_OBJECT);
    assert_int_equal(member(mpi, "ranks", CLLM_JSON_NUMBER)->integer, 1);
    assert_int_equal(member(mpi, "threads_per_rank", CLLM_JSON_NUMBER)->integer, 2);
    if (CLLM_HAVE_MPI) assert_null(strstr(text(mpi, "library"), "not built"));
    else assert_string_equal(text(mpi, "library"), "not built with MPI");
    cllm_json_free(j);
}

static void test_json_shows_binding_and_cllm_variables(void **state) {
    (void)state;
    cllm_json *j = info_json("OMP_PROC_BIND=close OMP_PLACES=cores CLLM_SIMD=scalar CLLM_SEGMENTS=4");
    const cllm_json *o = member(j, "openmp", CLLM_JSON_OBJECT);
    assert_string_equal(text(o, "OMP_PROC_BIND"), "close");
    assert_string_equal(text(o, "OMP_PLACES"), "cores");
    assert_string_equal(text(o, "proc_bind"), "close");
    assert_string_equal(text(j, "simd"), "scalar");
    const cllm_json *env = member(j, "env", CLLM_JSON_OBJECT);
    assert_string_equal(text(env, "CLLM_SIMD"), "scalar");
    assert_string_equal(text(env, "CLLM_SEGMENTS"), "4");
    assert_int_equal(env->length, 2);
    cllm_json_free(j);
}

static void test_text_form(void **state) {
    (void)state;
    run_result r = run_cllm("CLLM_SIMD=scalar OMP_NUM_THREADS=3 env -u OMP_SCHEDULE -u OMP_PROC_BIND", "info");
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "simd path:       scalar\n"));
    assert_non_null(strstr(r.out, "max threads:     3\n"));
    assert_non_null(strstr(r.out, "schedule:        dynamic,1\n"));
    assert_non_null(strstr(r.out, "OMP_PROC_BIND:   unset\n"));
    assert_non_null(strstr(r.out, "CLLM_SIMD=scalar"));
    assert_non_null(strstr(r.out, cllm_cpu()->avx2 ? "avx2 yes" : "avx2 no"));
    run_result_free(&r);
}

static void test_help_and_bad_usage(void **state) {
    (void)state;
    run_result r = run_cllm(NULL, "info --help");
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "--json"));
    run_result_free(&r);
    r = run_cllm(NULL, "info --json=yes");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    run_result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_cpu_matches_detection),
        cmocka_unit_test(test_json_openmp_section),
        cmocka_unit_test(test_json_shows_binding_and_cllm_variables),
        cmocka_unit_test(test_text_form),
        cmocka_unit_test(test_help_and_bad_usage),
    };
    /* Children inherit this environment: start them from no CLLM_* at all. */
    unsetenv("CLLM_SIMD");
    unsetenv("CLLM_STREAMING");
    unsetenv("CLLM_SEGMENTS");
    unsetenv("CLLM_GRAD_WINDOW");
    unsetenv("CLLM_PROGRESS");
    unsetenv("CLLM_PEAK_GFLOPS");
    unsetenv("CLLM_TEAM");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
