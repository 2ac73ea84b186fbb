#include "cllm/cli/flags.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cllm_flags_choice_index(const char *choices, const char *value) {
    size_t len = strlen(value);
    int index = 0;
    for (const char *p = choices; *p; index++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && len > 0 && strncmp(p, value, n) == 0) return index;
        p += n + (bar != NULL);
    }
    return -1;
}

static const cllm_flag *find_flag(const cllm_command_spec *spec, const char *name, size_t len) {
    for (int i = 0; i < spec->n_flags; i++) {
        const char *fname = spec->flags[i].name;
        if (strlen(fname) == len && strncmp(fname, name, len) == 0) return &spec->flags[i];
    }
    return NULL;
}

static int out_of_range(const cllm_flag *f, double v) {
    return f->min <= f->max && (v < f->min || v > f->max);
}

static int range_error(const cllm_command_spec *spec, const cllm_flag *f, const char *value) {
    fprintf(stderr, "cllm %s: --%s %s is out of range (allowed %g..%g)\n",
            spec->command, f->name, value, f->min, f->max);
    return CLLM_FLAGS_ERROR;
}

static int store_value(const cllm_command_spec *spec, const cllm_flag *f, const char *value) {
    char *end = NULL;
    errno = 0;
    switch (f->kind) {
    case CLLM_FLAG_INT:
    case CLLM_FLAG_INT64: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            fprintf(stderr, "cllm %s: --%s expects an integer, got '%s'\n", spec->command, f->name, value);
            return CLLM_FLAGS_ERROR;
        }
        if (out_of_range(f, (double)v)) return range_error(spec, f, value);
        if (f->kind == CLLM_FLAG_INT) {
            if (v < -2147483647LL || v > 2147483647LL) return range_error(spec, f, value);
            *(int *)f->dest = (int)v;
        } else {
            *(int64_t *)f->dest = (int64_t)v;
        }
        return CLLM_FLAGS_OK;
    }
    case CLLM_FLAG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(v)) {
            fprintf(stderr, "cllm %s: --%s expects a number, got '%s'\n", spec->command, f->name, value);
            return CLLM_FLAGS_ERROR;
        }
        if (out_of_range(f, v)) return range_error(spec, f, value);
        *(double *)f->dest = v;
        return CLLM_FLAGS_OK;
    }
    case CLLM_FLAG_STRING:
        *(const char **)f->dest = value;
        return CLLM_FLAGS_OK;
    case CLLM_FLAG_CHOICE: {
        int index = cllm_flags_choice_index(f->metavar, value);
        if (index < 0) {
            fprintf(stderr, "cllm %s: --%s expects one of %s, got '%s'\n", spec->command, f->name, f->metavar, value);
            return CLLM_FLAGS_ERROR;
        }
        *(int *)f->dest = index;
        return CLLM_FLAGS_OK;
    }
    case CLLM_FLAG_BOOL:
        break;
    }
    return CLLM_FLAGS_ERROR;
}

/* A command without positional arguments has no synopsis: no space after its name. */
static const char *synopsis_gap(const cllm_command_spec *spec) { return spec->synopsis && *spec->synopsis ? " " : ""; }

int cllm_flags_parse(const cllm_command_spec *spec, int argc, char **argv,
                     char **positional, int *n_positional) {
    int npos = 0;
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || arg[0] != '-' || arg[1] == '\0') {
            positional[npos++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--") == 0) { only_positional = 1; continue; }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cllm_flags_usage(spec, stdout);
            return CLLM_FLAGS_HELP;
        }
        /* -o is the one short form users expect of a command that writes a file;
           it means --out wherever a command has --out. */
        if (strcmp(arg, "-o") == 0 && find_flag(spec, "out", 3)) arg = "--out";
        if (arg[1] != '-') {
            fprintf(stderr, "cllm %s: unknown option '%s' (see cllm %s --help)\n", spec->command, arg, spec->command);
            return CLLM_FLAGS_ERROR;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cllm_flag *f = find_flag(spec, name, len);
        if (!f) {
            fprintf(stderr, "cllm %s: unknown option '--%.*s' (see cllm %s --help)\n",
                    spec->command, (int)len, name, spec->command);
            return CLLM_FLAGS_ERROR;
        }
        if (f->seen) *f->seen = 1;
        if (f->kind == CLLM_FLAG_BOOL) {
            if (eq) {
                fprintf(stderr, "cllm %s: --%s takes no value\n", spec->command, f->name);
                return CLLM_FLAGS_ERROR;
            }
            *(int *)f->dest = 1;
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "cllm %s: --%s needs a value (%s)\n", spec->command, f->name,
                        f->metavar ? f->metavar : "VALUE");
                return CLLM_FLAGS_ERROR;
            }
            value = argv[++i];
        }
        int rc = store_value(spec, f, value);
        if (rc != CLLM_FLAGS_OK) return rc;
    }
    if (npos < spec->min_positional) {
        fprintf(stderr, "cllm %s: missing argument (usage: cllm %s%s%s)\n", spec->command, spec->command,
                synopsis_gap(spec), spec->synopsis ? spec->synopsis : "");
        return CLLM_FLAGS_ERROR;
    }
    if (spec->max_positional >= 0 && npos > spec->max_positional) {
        fprintf(stderr, "cllm %s: unexpected argument '%s' (usage: cllm %s%s%s)\n", spec->command,
                positional[spec->max_positional], spec->command, synopsis_gap(spec),
                spec->synopsis ? spec->synopsis : "");
        return CLLM_FLAGS_ERROR;
    }
    *n_positional = npos;
    return CLLM_FLAGS_OK;
}

void cllm_flags_usage(const cllm_command_spec *spec, FILE *out) {
    fprintf(out, "usage: cllm %s%s%s%s\n\n", spec->command, spec->n_flags ? " [OPTIONS]" : "",
            spec->synopsis && *spec->synopsis ? " " : "", spec->synopsis ? spec->synopsis : "");
    if (spec->summary) fprintf(out, "%s\n\n", spec->summary);
    if (spec->n_flags) fprintf(out, "options:\n");
    for (int i = 0; i < spec->n_flags; i++) {
        const cllm_flag *f = &spec->flags[i];
        char left[64];
        snprintf(left, sizeof left, "%s--%s%s%s", strcmp(f->name, "out") == 0 ? "-o, " : "", f->name,
                 f->metavar ? " " : "", f->metavar ? f->metavar : "");
        fprintf(out, "  %-24s %s\n", left, f->help ? f->help : "");
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help and exit");
}

int cllm_flags_exit_code(int parse_result) {
    if (parse_result == CLLM_FLAGS_HELP) return 0;
    if (parse_result == CLLM_FLAGS_ERROR) return 2;
    return -1;
}

int cllm_flags_check_output_file(const char *command, const char *flag, const char *path) {
    struct stat st;
    if (!*path) {
        fprintf(stderr, "cllm %s: %s needs a file name, not an empty string\n", command, flag);
        return 2;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "cllm %s: %s %s is a folder; give a file name\n", command, flag, path);
        return 2;
    }
    return -1;
}
