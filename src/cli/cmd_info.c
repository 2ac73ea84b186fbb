/* `cllm info`: what this machine and build will do, as text or JSON.
 *
 * Everything is gathered once into an info_report and then printed by one of
 * two printers, so the text and JSON forms cannot drift apart. */
#define _GNU_SOURCE /* dladdr: which OpenMP library the process really loaded */
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/build_config.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/cli/ranks.h"
#include "cllm/dist/comm_mpi.h"
#include "cllm/base/cpu.h"
#include "cllm/kernels/kernels.h"

extern char **environ;

typedef struct {
    const cllm_cpu_features *cpu;
    const char *simd;
    const char *runtime;      /* "libgomp", "libomp", or a guess from the compiler */
    char runtime_path[512];   /* shared object the omp_* symbols came from, "" if unknown */
    long openmp_version;      /* _OPENMP: yyyymm of the spec the compiler implements */
    const char *openmp_spec;  /* "4.5", "5.0", ... */
    int max_threads, num_procs;
    int teams, team_threads;  /* cllm_env_team: 0, 0 when the run chooses */
    int max_active_levels;    /* omp_get_max_active_levels() */
    char schedule[64];        /* "dynamic,1" */
    const char *proc_bind;    /* omp_get_proc_bind() */
    const char *env_proc_bind, *env_places; /* NULL when unset */
    char mpi_library[256];    /* "Open MPI v4.1.4 (MPI 3.1)", or "not built with MPI" */
    int ranks;                /* of the job (1 when not started by mpirun) */
} info_report;

static const char *openmp_spec_of(long yyyymm) {
    static const struct { long date; const char *spec; } specs[] = {
        {202111, "5.2"}, {202011, "5.1"}, {201811, "5.0"}, {201511, "4.5"},
        {201307, "4.0"}, {201107, "3.1"}, {200805, "3.0"}, {200505, "2.5"},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (yyyymm >= specs[i].date) return specs[i].spec;
    return "unknown";
}

/* The library that provides omp_get_max_threads in this process: more
 * truthful than guessing from the compiler (clang can link libgomp). */
static void detect_runtime(info_report *r) {
    Dl_info dl;
    void *sym = (void *)omp_get_max_threads;
    r->runtime_path[0] = '\0';
    if (dladdr(sym, &dl) && dl.dli_fname) snprintf(r->runtime_path, sizeof r->runtime_path, "%s", dl.dli_fname);
    if (strstr(r->runtime_path, "libgomp")) r->runtime = "libgomp";
    else if (strstr(r->runtime_path, "libiomp")) r->runtime = "libiomp";
    else if (strstr(r->runtime_path, "libomp")) r->runtime = "libomp";
#if defined(__clang__)
    else r->runtime = "libomp (assumed from the compiler)";
#else
    else r->runtime = "libgomp (assumed from the compiler)";
#endif
}

static void describe_schedule(char *buf, size_t n) {
    omp_sched_t kind;
    int chunk;
    omp_get_schedule(&kind, &chunk);
    /* OpenMP 4.5+ may OR the monotonic modifier into the kind. */
    unsigned raw = (unsigned)kind;
    const char *modifier = (raw & 0x80000000u) ? "monotonic:" : "";
    const char *name;
    switch ((int)(raw & 0x7fffffffu)) {
    case omp_sched_static: name = "static"; break;
    case omp_sched_dynamic: name = "dynamic"; break;
    case omp_sched_guided: name = "guided"; break;
    case omp_sched_auto: name = "auto"; break;
    default: name = "implementation-defined"; break;
    }
    snprintf(buf, n, "%s%s,%d", modifier, name, chunk);
}

static const char *describe_proc_bind(void) {
    switch (omp_get_proc_bind()) {
    case omp_proc_bind_false: return "false";
    case omp_proc_bind_true: return "true";
    case omp_proc_bind_master: return "primary";
    case omp_proc_bind_close: return "close";
    case omp_proc_bind_spread: return "spread";
    }
    return "unknown";
}

static const char *env_or_null(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void gather(info_report *r) {
    memset(r, 0, sizeof *r);
    r->cpu = cllm_cpu();
    r->simd = cllm_simd_name(cllm_env_simd());
    detect_runtime(r);
    r->openmp_version = _OPENMP;
    r->openmp_spec = openmp_spec_of(r->openmp_version);
    r->max_threads = omp_get_max_threads();
    r->num_procs = omp_get_num_procs();
    cllm_env_team(&r->teams, &r->team_threads);
    r->max_active_levels = omp_get_max_active_levels();
    describe_schedule(r->schedule, sizeof r->schedule);
    r->proc_bind = describe_proc_bind();
    r->env_proc_bind = env_or_null("OMP_PROC_BIND");
    r->env_places = env_or_null("OMP_PLACES");
    cllm_mpi_library(r->mpi_library, sizeof r->mpi_library);
    r->ranks = cllm_ranks_comm()->size;
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

/* Whether --precision bf16 runs on the instructions with the SIMD path in
 * force: the bf16 products of its kernel table. */
static int bf16_fast(void) {
    const cllm_kernel_table *k = cllm_kernel_table_for(cllm_env_simd());
    return k && k->bf16_fast;
}

static const char *bf16_line(const cllm_cpu_features *c) {
    if (bf16_fast() && c->amx_bf16) return "fast (VDPBF16PS, AVX512_BF16; this CPU's AMX-BF16 tiles are not used)";
    if (bf16_fast()) return "fast (VDPBF16PS, AVX512_BF16)";
    if (c->avx512bf16) return "slow here (exact portable emulation: the SIMD path in force has no bf16 kernel)";
    return "slow (exact portable emulation: this CPU has no AVX512_BF16)";
}

static void print_text(const info_report *r, FILE *out) {
    const cllm_cpu_features *c = r->cpu;
    fprintf(out, "cllm %s\n", CLLM_VERSION);
    fprintf(out, "cpu:             %s\n", c->model[0] ? c->model : "unknown");
    fprintf(out, "cpu features:    sse4.2 %s, avx2 %s, fma %s, avx512f %s, avx512_bf16 %s, amx_bf16 %s\n",
            yes_no(c->sse42), yes_no(c->avx2), yes_no(c->fma), yes_no(c->avx512f), yes_no(c->avx512bf16),
            yes_no(c->amx_bf16));
    fprintf(out, "simd path:       %s\n", r->simd);
    fprintf(out, "bf16 precision:  %s\n", bf16_line(c));
    fprintf(out, "compiler:        %s\n", CLLM_COMPILER_ID);
    fprintf(out, "openmp runtime:  %s%s%s%s\n", r->runtime, r->runtime_path[0] ? " (" : "", r->runtime_path,
            r->runtime_path[0] ? ")" : "");
    fprintf(out, "openmp version:  %ld (OpenMP %s)\n", r->openmp_version, r->openmp_spec);
    fprintf(out, "max threads:     %d\n", r->max_threads);
    fprintf(out, "processors:      %d\n", r->num_procs);
    if (r->teams > 0)
        fprintf(out, "team shape:      %d team%s x %d thread%s (CLLM_TEAM / OMP_NUM_THREADS)\n", r->teams,
                r->teams == 1 ? "" : "s", r->team_threads, r->team_threads == 1 ? "" : "s");
    else
        fprintf(out, "team shape:      auto (chosen per run from the micro-batches per step, model size and memory)\n");
    fprintf(out, "nesting levels:  %d (omp_get_max_active_levels; a team of 2+ threads raises it to 2)\n",
            r->max_active_levels);
    fprintf(out, "schedule:        %s\n", r->schedule);
    fprintf(out, "OMP_PROC_BIND:   %s\n", r->env_proc_bind ? r->env_proc_bind : "unset");
    fprintf(out, "OMP_PLACES:      %s\n", r->env_places ? r->env_places : "unset");
    fprintf(out, "proc bind:       %s\n", r->proc_bind);
    int any = 0;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "CLLM_", 5) != 0) continue;
        fprintf(out, "%s%s\n", any ? "                 " : "CLLM_* set:      ", *e);
        any = 1;
    }
    if (!any) fprintf(out, "CLLM_* set:      none\n");
    fprintf(out, "built with:      openblas %s, cairo %s, utf8proc %s (GPT-2 pre-tokenization), mpi %s\n",
            yes_no(CLLM_HAVE_OPENBLAS), yes_no(CLLM_HAVE_CAIRO), yes_no(CLLM_HAVE_UTF8PROC), yes_no(cllm_mpi_built()));
    fprintf(out, "mpi:             %s\n", r->mpi_library);
    fprintf(out, "ranks:           %d%s, %d threads per rank\n", r->ranks,
            r->ranks > 1 ? " (MPI)" : cllm_mpi_built() ? " (not started by mpirun)" : "", r->max_threads);
}

/* A JSON string literal. Bytes outside printable ASCII are written as \u00XX,
 * so the output is valid JSON whatever bytes an environment value holds. */
static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

static void json_string_or_null(FILE *out, const char *s) {
    if (s) json_string(out, s);
    else fputs("null", out);
}

static const char *json_bool(int b) { return b ? "true" : "false"; }

/* The set CLLM_* variables as a JSON object {"CLLM_SIMD":"scalar",...}. */
static void json_cllm_variables(FILE *out) {
    int first = 1;
    fputc('{', out);
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "CLLM_", 5) != 0 || !eq) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        fputs(first ? "" : ",", out);
        json_string(out, name);
        fputc(':', out);
        json_string(out, eq + 1);
        first = 0;
    }
    fputc('}', out);
}

static void print_json(const info_report *r, FILE *out) {
    const cllm_cpu_features *c = r->cpu;
    fputs("{\"version\":", out);
    json_string(out, CLLM_VERSION);
    fputs(",\"cpu\":{\"model\":", out);
    json_string(out, c->model);
    fprintf(out, ",\"sse4_2\":%s,\"avx2\":%s,\"fma\":%s,\"avx512f\":%s,\"avx512_bf16\":%s,\"amx_bf16\":%s},",
            json_bool(c->sse42), json_bool(c->avx2), json_bool(c->fma), json_bool(c->avx512f),
            json_bool(c->avx512bf16), json_bool(c->amx_bf16));
    fputs("\"simd\":", out);
    json_string(out, r->simd);
    fprintf(out, ",\"bf16_fast\":%s", json_bool(bf16_fast()));
    fputs(",\"compiler\":", out);
    json_string(out, CLLM_COMPILER_ID);
    fputs(",\"openmp\":{\"runtime\":", out);
    json_string(out, r->runtime);
    fputs(",\"library\":", out);
    json_string_or_null(out, r->runtime_path[0] ? r->runtime_path : NULL);
    fprintf(out, ",\"version\":%ld,\"spec\":", r->openmp_version);
    json_string(out, r->openmp_spec);
    fprintf(out, ",\"max_threads\":%d,\"num_procs\":%d,\"teams\":%d,\"team_threads\":%d,\"max_active_levels\":%d,"
                 "\"schedule\":",
            r->max_threads, r->num_procs, r->teams, r->team_threads, r->max_active_levels);
    json_string(out, r->schedule);
    fputs(",\"proc_bind\":", out);
    json_string(out, r->proc_bind);
    fputs(",\"OMP_PROC_BIND\":", out);
    json_string_or_null(out, r->env_proc_bind);
    fputs(",\"OMP_PLACES\":", out);
    json_string_or_null(out, r->env_places);
    fputs("},\"env\":", out);
    json_cllm_variables(out);
    fprintf(out, ",\"features\":{\"openblas\":%s,\"cairo\":%s,\"utf8proc\":%s,\"mpi\":%s},\"mpi\":{\"library\":",
            json_bool(CLLM_HAVE_OPENBLAS), json_bool(CLLM_HAVE_CAIRO), json_bool(CLLM_HAVE_UTF8PROC),
            json_bool(cllm_mpi_built()));
    json_string(out, r->mpi_library);
    fprintf(out, ",\"ranks\":%d,\"threads_per_rank\":%d}}\n", r->ranks, r->max_threads);
}

int cllm_cmd_info(int argc, char **argv) {
    int json = 0;
    const cllm_flag flags[] = {
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of text", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "info", "",
        "Shows the CPU's SIMD features, the SIMD path cllm will use, whether --precision bf16 is fast\n"
        "there, the compiler, the OpenMP runtime\n"
        "and version, threads, processors, the team shape (CLLM_TEAM or OMP_NUM_THREADS=A,B; auto:\n"
        "chosen per run), the schedule in force (OMP_SCHEDULE, default dynamic,1),\n"
        "OMP_PROC_BIND/OMP_PLACES, every CLLM_* variable that is set, the optional features built in, and\n"
        "the MPI library, ranks and threads per rank (under mpirun, rank 0 prints).",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, 0};
    char *positional[argc > 0 ? argc : 1]; /* the parser needs one slot per argument */
    int n_positional = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, positional, &n_positional));
    if (rc >= 0) return rc;
    info_report r;
    gather(&r);
    if (cllm_ranks_comm()->rank != 0) return 0; /* under mpirun: rank 0 speaks for the job */
    if (json) print_json(&r, stdout);
    else print_text(&r, stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
