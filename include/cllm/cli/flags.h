/* A small declarative flag parser shared by every subcommand.
 *
 * Each command lists its flags in a table; cllm_flags_parse fills the
 * destinations, collects positional arguments, and on any problem prints one
 * line to stderr naming it. `--help` prints the table. Flags accept both
 * `--name value` and `--name=value`; `-o` means `--out` for a command that has it. */
#ifndef CLLM_CLI_FLAGS_H
#define CLLM_CLI_FLAGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    CLLM_FLAG_BOOL,   /* int*, set to 1, takes no value */
    CLLM_FLAG_INT,    /* int* */
    CLLM_FLAG_INT64,  /* int64_t* */
    CLLM_FLAG_DOUBLE, /* double* */
    CLLM_FLAG_STRING, /* const char** (points into argv) */
    CLLM_FLAG_CHOICE  /* int*: the index of the value among the metavar's "a|b|c" */
} cllm_flag_kind;

typedef struct {
    const char *name;    /* without the leading dashes: "steps" */
    cllm_flag_kind kind;
    void *dest;
    const char *metavar; /* "N", "DIR", ...; NULL for bool */
    const char *help;    /* one line; mention the default */
    double min, max;     /* inclusive range for numeric flags; min > max means unchecked */
    int *seen;           /* optional: set to 1 when the flag was given */
} cllm_flag;

typedef struct {
    const char *command;   /* "train", "tokenizer encode", ... */
    const char *synopsis;  /* "[DATA...]" */
    const char *summary;   /* one paragraph shown by --help */
    const cllm_flag *flags;
    int n_flags;
    int min_positional, max_positional; /* max < 0: unlimited */
} cllm_command_spec;

enum { CLLM_FLAGS_OK = 0, CLLM_FLAGS_ERROR = 2, CLLM_FLAGS_HELP = 3 };

/* Parses argv[0..argc) (argv excludes the command name itself). Positional
 * arguments are stored in positional[] (caller provides argc slots).
 * Returns CLLM_FLAGS_OK, CLLM_FLAGS_ERROR (message printed to stderr) or
 * CLLM_FLAGS_HELP (usage printed to stdout). */
int cllm_flags_parse(const cllm_command_spec *spec, int argc, char **argv,
                     char **positional, int *n_positional);

void cllm_flags_usage(const cllm_command_spec *spec, FILE *out);

/* The index of value among choices "a|b|c" (0-based), or -1. */
int cllm_flags_choice_index(const char *choices, const char *value);

/* Converts a cllm_flags_parse result into a process exit code:
 * OK -> -1 (continue), HELP -> 0, ERROR -> 2. */
int cllm_flags_exit_code(int parse_result);

/* Checks the file name given to an output flag (`-o FILE.png`, `--dump-logits
 * FILE`) before any work: empty, or naming a folder, is one line on stderr
 * and exit status 2 (returned), instead of a failed rename at the very end.
 * Returns -1 when the name is usable. */
int cllm_flags_check_output_file(const char *command, const char *flag, const char *path);

#endif
