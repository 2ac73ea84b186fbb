/* Environment validation: the OpenMP variables the runtime will read, and
 * cllm's own CLLM_* knobs. Everything here runs before the OpenMP runtime is
 * first touched, so the runtime never sees a value we would reject. */
#include "cllm/cli/env.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

const char *const cllm_env_documented[] = {
    "CLLM_SIMD",        "CLLM_STREAMING", "CLLM_SEGMENTS", "CLLM_GRAD_WINDOW",
    "CLLM_PROGRESS",    "CLLM_PEAK_GFLOPS", "CLLM_TEAM",     NULL,
};

/* ---- a tiny cursor over a value, for the list-shaped OpenMP syntaxes ---- */

/* The OpenMP checks also run from .preinit_array (cllm_env_preinit), before
 * libc has finished initialising, so they use no locale-dependent functions
 * (isspace, strtol, strcasecmp): plain ASCII helpers instead. */
static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char to_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static void skip_spaces(const char **p) {
    while (is_space(**p)) (*p)++;
}

/* Reads a positive decimal integer that fits in an int; leaves *p after it. */
static int read_positive_int(const char **p, long *out) {
    const char *q = *p;
    long v = 0;
    if (!is_digit(*q)) return 0;
    for (; is_digit(*q); q++) {
        v = v * 10 + (*q - '0');
        if (v > INT_MAX) return 0;
    }
    if (v == 0) return 0;
    *p = q;
    *out = v;
    return 1;
}

/* Consumes `word` (ASCII case-insensitive) if it is next and not followed by
 * more letters, so "static" does not match "staticky". */
static int read_word(const char **p, const char *word) {
    size_t n = 0;
    for (; word[n]; n++)
        if (to_lower((*p)[n]) != word[n]) return 0;
    if (is_alpha((*p)[n]) || (*p)[n] == '_') return 0;
    *p += n;
    return 1;
}

static int read_one_of(const char **p, const char *const *words) {
    for (int i = 0; words[i]; i++)
        if (read_word(p, words[i])) return 1;
    return 0;
}

/* ---- OpenMP variables ---- */

static int valid_num_threads(const char *v) {
    const char *p = v;
    for (;;) {
        long n;
        skip_spaces(&p);
        if (!read_positive_int(&p, &n)) return 0;
        skip_spaces(&p);
        if (*p == '\0') return 1;
        if (*p++ != ',') return 0;
    }
}

/* libomp rejects spaces around ':' and ',' (libgomp allows them), so only
 * leading and trailing spaces are accepted: one grammar for both runtimes. */
static int valid_schedule(const char *v) {
    static const char *const kinds[] = {"static", "dynamic", "guided", "auto", NULL};
    const char *p = v;
    skip_spaces(&p);
    /* The modifier is optional; "monotonic" is a prefix of nothing else here. */
    const char *after_modifier = p;
    if (read_word(&after_modifier, "nonmonotonic") || read_word(&after_modifier, "monotonic")) {
        if (*after_modifier != ':') return 0;
        p = after_modifier + 1;
    }
    if (!read_one_of(&p, kinds)) return 0;
    if (*p == ',') {
        long chunk;
        p++;
        if (!read_positive_int(&p, &chunk)) return 0;
    }
    skip_spaces(&p);
    return *p == '\0';
}

static int valid_proc_bind(const char *v) {
    static const char *const policies[] = {"master", "primary", "close", "spread", NULL};
    const char *p = v;
    skip_spaces(&p);
    /* true/false stand alone; the policies may form a list (one per nesting level). */
    if (read_word(&p, "true") || read_word(&p, "false")) {
        skip_spaces(&p);
        return *p == '\0';
    }
    for (;;) {
        skip_spaces(&p);
        if (!read_one_of(&p, policies)) return 0;
        skip_spaces(&p);
        if (*p == '\0') return 1;
        if (*p++ != ',') return 0;
    }
}

/* An explicit place list such as "{0,1},{2,3}" or "{0:4}:4:4,!{8}": we check
 * the alphabet and that braces are balanced and not nested, and leave the
 * finer grammar to the runtime. */
static int valid_explicit_places(const char *p) {
    int depth = 0, saw_place = 0;
    for (; *p; p++) {
        char c = *p;
        if (c == '{') {
            if (depth) return 0;
            depth = 1;
            saw_place = 1;
        } else if (c == '}') {
            if (!depth) return 0;
            depth = 0;
        } else if (!is_digit(c) && !strchr(",:!- \t", c)) {
            return 0;
        }
    }
    return depth == 0 && saw_place;
}

static int valid_places(const char *v) {
    static const char *const names[] = {"threads", "cores", "sockets", "ll_caches", "numa_domains", NULL};
    const char *p = v;
    skip_spaces(&p);
    if (*p == '{') return valid_explicit_places(p);
    if (!read_one_of(&p, names)) return 0;
    /* "cores(4)" only: libomp calls "cores (4)" or "cores( 4 )" a syntax error. */
    if (*p == '(') {
        long n;
        p++;
        if (!read_positive_int(&p, &n)) return 0;
        if (*p++ != ')') return 0;
    }
    skip_spaces(&p);
    return *p == '\0';
}

/* ---- cllm's own variables ---- */

/* Parses a whole-string integer in [lo, hi]; surrounding spaces allowed. */
static int parse_int_in(const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v) return 0;
    while (is_space(*end)) end++;
    if (*end != '\0' || n < lo || n > hi) return 0;
    *out = n;
    return 1;
}

static int parse_positive_double(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v) return 0;
    while (is_space(*end)) end++;
    if (*end != '\0' || !isfinite(x) || x <= 0) return 0;
    *out = x;
    return 1;
}

/* 1 or 0 for a valid on/off value, -1 otherwise. */
static int parse_switch(const char *v) {
    if (!strcasecmp(v, "1") || !strcasecmp(v, "on")) return 1;
    if (!strcasecmp(v, "0") || !strcasecmp(v, "off")) return 0;
    return -1;
}

static const char *const progress_modes[] = {"auto", "line", "plain", "off", NULL};

static const char *parse_progress(const char *v) {
    for (int i = 0; progress_modes[i]; i++)
        if (!strcasecmp(v, progress_modes[i])) return progress_modes[i];
    return NULL;
}

/* A CLLM_SIMD value ("auto", NULL or "" -> the best path). Unknown name or
 * a path this CPU cannot run: CLLM_ERR_INPUT naming CLLM_SIMD. */
static cllm_status simd_parse(const char *value, cllm_simd *out) {
    if (!value || !*value || strcmp(value, "auto") == 0) {
        *out = cllm_simd_best();
        return CLLM_OK;
    }
    for (int s = CLLM_SIMD_SCALAR; s < CLLM_SIMD_COUNT; s++) {
        if (strcmp(value, cllm_simd_name((cllm_simd)s)) != 0) continue;
        if (!cllm_simd_supported((cllm_simd)s))
            return cllm_fail(CLLM_ERR_INPUT, "CLLM_SIMD=%s: this CPU does not support %s", value, value);
        *out = (cllm_simd)s;
        return CLLM_OK;
    }
    return cllm_fail(CLLM_ERR_INPUT, "CLLM_SIMD='%s' is not one of auto, scalar, omp, avx2, avx512", value);
}

static cllm_status unknown_cllm_variable(const char *name) {
    char known[256] = "";
    for (int i = 0; cllm_env_documented[i]; i++) {
        if (i) strncat(known, ", ", sizeof known - strlen(known) - 1);
        strncat(known, cllm_env_documented[i], sizeof known - strlen(known) - 1);
    }
    return cllm_fail(CLLM_ERR_INPUT, "unknown variable %s; known: %s (see README.md)", name, known);
}

static cllm_status validate_cllm_variable(const char *name, const char *value) {
    long n;
    double x;
    if (!strcmp(name, "CLLM_SIMD")) {
        cllm_simd s;
        return simd_parse(value, &s);
    }
    if (!strcmp(name, "CLLM_STREAMING")) {
        if (parse_switch(value) >= 0) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_STREAMING='%s' is not one of 1, 0, on, off", value);
    }
    if (!strcmp(name, "CLLM_SEGMENTS")) {
        if (parse_int_in(value, 1, 64, &n)) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_SEGMENTS='%s' is not an integer in 1..64", value);
    }
    if (!strcmp(name, "CLLM_GRAD_WINDOW")) {
        if (parse_int_in(value, 0, 4096, &n)) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_GRAD_WINDOW='%s' is not an integer in 0..4096", value);
    }
    if (!strcmp(name, "CLLM_PROGRESS")) {
        if (parse_progress(value)) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_PROGRESS='%s' is not one of auto, line, plain, off", value);
    }
    if (!strcmp(name, "CLLM_TEAM")) {
        if (!strcasecmp(value, "auto") || parse_int_in(value, 1, 4096, &n)) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_TEAM='%s' is not auto or an integer in 1..4096", value);
    }
    if (!strcmp(name, "CLLM_PEAK_GFLOPS")) {
        if (parse_positive_double(value, &x)) return CLLM_OK;
        return cllm_fail(CLLM_ERR_INPUT, "CLLM_PEAK_GFLOPS='%s' is not a positive number", value);
    }
    return unknown_cllm_variable(name);
}

cllm_status cllm_env_validate(const char *name, const char *value) {
    if (!strncmp(name, "CLLM_", 5)) return validate_cllm_variable(name, value);
    if (!strcmp(name, "OMP_NUM_THREADS") && !valid_num_threads(value))
        return cllm_fail(CLLM_ERR_INPUT, "OMP_NUM_THREADS='%s' is not a positive integer (or list of them)", value);
    if (!strcmp(name, "OMP_SCHEDULE") && !valid_schedule(value))
        return cllm_fail(CLLM_ERR_INPUT,
                         "OMP_SCHEDULE='%s' is not [monotonic:|nonmonotonic:]static|dynamic|guided|auto[,CHUNK] "
                         "with CHUNK a positive integer",
                         value);
    if (!strcmp(name, "OMP_PROC_BIND") && !valid_proc_bind(value))
        return cllm_fail(CLLM_ERR_INPUT,
                         "OMP_PROC_BIND='%s' is not true, false, or a list of master|primary|close|spread", value);
    if (!strcmp(name, "OMP_PLACES") && !valid_places(value))
        return cllm_fail(CLLM_ERR_INPUT,
                         "OMP_PLACES='%s' is not threads|cores|sockets|ll_caches|numa_domains[(N)] "
                         "or an explicit list like {0,1},{2,3}",
                         value);
    return CLLM_OK;
}

static const char *const openmp_variables[] = {"OMP_NUM_THREADS", "OMP_SCHEDULE", "OMP_PROC_BIND", "OMP_PLACES",
                                                NULL};

/* getenv over an explicit environment block: .preinit_array gets envp
 * before libc's own `environ` is guaranteed to be set up. */
static const char *lookup(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

/* Every set value is checked, the empty string included: libgomp rejects an
 * empty OMP_NUM_THREADS with its own message, and CLLM_X= is more likely a
 * mistake than a wish for the default. */
static cllm_status check_openmp_variables(char **envp) {
    for (int i = 0; openmp_variables[i]; i++) {
        const char *value = lookup(envp, openmp_variables[i]);
        if (!value) continue;
        cllm_status st = cllm_env_validate(openmp_variables[i], value);
        if (st != CLLM_OK) return st;
    }
    return CLLM_OK;
}

/* Walks the whole environment so that misspelt CLLM_* names are caught. */
static cllm_status check_cllm_variables(char **envp) {
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "CLLM_", 5) != 0) continue;
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        char name[128];
        size_t len = (size_t)(eq - *e);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, *e, len);
        name[len] = '\0';
        cllm_status st = validate_cllm_variable(name, eq + 1);
        if (st != CLLM_OK) return st;
    }
    return CLLM_OK;
}

void cllm_env_preinit(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    if (check_openmp_variables(envp) == CLLM_OK) return;
    /* write(2), not stdio: libc may not be fully initialised yet. */
    const char *msg = cllm_last_error();
    if (write(2, "cllm: ", 6) < 0 || write(2, msg, strlen(msg)) < 0 || write(2, "\n", 1) < 0) _exit(2);
    _exit(2);
}

cllm_status cllm_env_check(void) {
    cllm_status st = check_openmp_variables(environ);
    if (st != CLLM_OK) return st;
    return check_cllm_variables(environ);
}

void cllm_env_apply_openmp_defaults(void) {
    /* Dynamic,1 lets fast workers take more micro-batches; libomp defaults
     * to static, which would leave cores idle behind a straggler. */
    if (!getenv("OMP_SCHEDULE")) omp_set_schedule(omp_sched_dynamic, 1);
}

/* ---- getters ---- */

/* The value if set and valid, else NULL; never leaves an error message. */
static const char *valid_value(const char *name) {
    const char *v = getenv(name);
    if (!v) return NULL;
    char saved[512];
    snprintf(saved, sizeof saved, "%s", cllm_last_error());
    cllm_status st = validate_cllm_variable(name, v);
    if (st != CLLM_OK) cllm_fail(CLLM_ERR_INPUT, "%s", saved);
    return st == CLLM_OK ? v : NULL;
}

cllm_simd cllm_env_simd(void) {
    const char *v = valid_value("CLLM_SIMD");
    cllm_simd s = cllm_simd_best();
    if (v) simd_parse(v, &s);
    return s;
}

int cllm_env_streaming(void) {
    const char *v = valid_value("CLLM_STREAMING");
    return v ? parse_switch(v) : 1;
}

int cllm_env_segments(void) {
    long n;
    const char *v = valid_value("CLLM_SEGMENTS");
    return v && parse_int_in(v, 1, 64, &n) ? (int)n : 1;
}

int cllm_env_grad_window(void) {
    long n;
    const char *v = valid_value("CLLM_GRAD_WINDOW");
    return v && parse_int_in(v, 0, 4096, &n) ? (int)n : 0;
}

const char *cllm_env_progress(void) {
    const char *v = valid_value("CLLM_PROGRESS");
    return v ? parse_progress(v) : "auto";
}

double cllm_env_peak_gflops(void) {
    double x;
    const char *v = valid_value("CLLM_PEAK_GFLOPS");
    return v && parse_positive_double(v, &x) ? x : 0.0;
}

/* OMP_NUM_THREADS=A,B[,...]: its first two entries, or 0 when it is not a list. */
static int num_threads_list(long *first, long *second) {
    const char *p = getenv("OMP_NUM_THREADS");
    if (!p || !valid_num_threads(p)) return 0;
    skip_spaces(&p);
    if (!read_positive_int(&p, first)) return 0;
    skip_spaces(&p);
    if (*p++ != ',') return 0;
    skip_spaces(&p);
    return read_positive_int(&p, second);
}

void cllm_env_team(int *teams, int *team_threads) {
    long n, a, b;
    const char *v = valid_value("CLLM_TEAM");
    *teams = *team_threads = 0;
    if (v && parse_int_in(v, 1, 4096, &n)) {
        int threads = omp_get_max_threads();
        *team_threads = (int)n;
        *teams = threads / (int)n > 0 ? threads / (int)n : 1;
    } else if (!v && num_threads_list(&a, &b) && a <= 4096 && b <= 4096) {
        *teams = (int)a;
        *team_threads = (int)b;
    }
}

int cllm_env_launcher_ranks(void) {
    /* Open MPI's mpirun, then MPICH's Hydra (and other PMI launchers). */
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        long n;
        if (v && parse_int_in(v, 1, 1L << 24, &n)) return (int)n;
    }
    return 0;
}

/* COLUMNS is the shell's, not ours: a malformed value is not an error, just
 * no width (the terminal's own size, TIOCGWINSZ, comes first anyway). */
int cllm_env_columns(void) {
    long n;
    const char *v = getenv("COLUMNS");
    return v && parse_int_in(v, 1, 100000, &n) ? (int)n : 0;
}
