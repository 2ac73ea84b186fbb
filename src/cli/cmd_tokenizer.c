/* `cllm tokenizer train|encode|decode`: build a BPE tokenizer and inspect
 * what it does to text. Encode and decode speak one token id per line so
 * that the output can be piped through ordinary text tools. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/build_config.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/data/corpus.h"
#include "cllm/data/hf_tokenizer.h"
#include "cllm/data/tokenizer.h"

static int exit_code(cllm_status s) { return s == CLLM_ERR_INPUT ? 2 : s == CLLM_ERR_INTERRUPTED ? 130 : 1; }

static int report(const char *cmd, cllm_status s) {
    fprintf(stderr, "cllm tokenizer %s: %s\n", cmd, cllm_last_error());
    return exit_code(s);
}

static void usage(FILE *out) {
    fprintf(out, "usage: cllm tokenizer SUBCOMMAND [OPTIONS] [ARGS]\n\n"
                 "A byte-level BPE tokenizer: 256 byte tokens, learned merges, and an end-of-document token.\n\n"
                 "subcommands:\n"
                 "  train [DATA...] --vocab N -o FILE  learn a tokenizer from files/folders (none: the built-in corpus)\n"
                 "  encode FILE|DIR                    read bytes on stdin, print token ids one per line\n"
                 "  decode FILE|DIR                    read token ids one per line on stdin, write the bytes\n"
                 "  split [--pretokenize MODE]         print the byte length of each pre-tokenizer chunk of stdin\n\n"
                 "Run 'cllm tokenizer SUBCOMMAND --help' for its options.\n");
}

/* Reads all of stdin into *out (malloc'd). */
static cllm_status read_stdin(uint8_t **out, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, stdin);
        if (len < cap) break;
        cap *= 2;
        uint8_t *p = realloc(buf, cap);
        if (!p) free(buf);
        buf = p;
    }
    *out = NULL;
    if (!buf) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory reading stdin");
    if (ferror(stdin)) {
        free(buf);
        return cllm_fail(CLLM_ERR_INPUT, "cannot read stdin");
    }
    *out = buf;
    *n = len;
    return CLLM_OK;
}

static int finish_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "cllm tokenizer: cannot write to stdout\n");
        return 1;
    }
    return 0;
}

/* ---- train ---- */

static int cmd_train(int argc, char **argv) {
    int vocab = CLLM_TOKENIZER_DEFAULT_VOCAB;
    int pretok = (int)cllm_pretok_default();
    const char *out = NULL;
    const cllm_flag flags[] = {
        {"vocab", CLLM_FLAG_INT, &vocab, "N",
         "total vocabulary: 256 bytes + merges + 1 end-of-document token (default 512)",
         CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB, NULL},
        {"pretokenize", CLLM_FLAG_CHOICE, &pretok, "cllm|gpt2",
         CLLM_HAVE_UTF8PROC ? "how text is split before BPE: gpt2 (GPT-2's rule, default) or cllm (cllm's old chunker)"
                            : "how text is split before BPE: cllm (default: built without libutf8proc) or gpt2",
         1, 0, NULL},
        {"out", CLLM_FLAG_STRING, &out, "FILE", "where to write the tokenizer (required)", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "tokenizer train", "[DATA...]",
        "Learns byte-level BPE merges from text files and folders (walked recursively, sorted, hidden\n"
        "entries and binary files skipped). With no DATA, uses the built-in Tiny Shakespeare corpus.",
        flags, 3, 0, -1};
    char **positional = malloc(((size_t)argc + 1) * sizeof *positional);
    if (!positional) {
        fprintf(stderr, "cllm tokenizer train: out of memory\n");
        return 1;
    }
    int n_pos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, positional, &n_pos));
    if (rc < 0 && !out) {
        fprintf(stderr, "cllm tokenizer train: missing -o FILE (where to write the tokenizer)\n");
        rc = 2;
    } else if (rc < 0) {
        /* Checked before the work: renaming over a folder would fail only at the end. */
        rc = cllm_flags_check_output_file("tokenizer train", "-o", out);
    }
    if (rc >= 0) {
        free(positional);
        return rc;
    }
    double t0 = cllm_now();
    cllm_corpus corpus;
    cllm_tokenizer *tok = NULL;
    /* A stop request abandons the work and the file: -o FILE is then as it
     * was, with no temporary left beside it (exit 130). */
    cllm_stop_catch(1);
    const cllm_stop_flag *stop = cllm_stop_flag_ptr();
    cllm_status s = cllm_corpus_load_stoppable((const char *const *)positional, n_pos, stop, &corpus);
    free(positional);
    if (s != CLLM_OK) {
        cllm_stop_release();
        if (s != CLLM_ERR_INTERRUPTED) return report("train", s);
        fprintf(stderr, "cllm tokenizer train: interrupted by %s while reading the corpus: %s not written\n",
                cllm_signal_name(cllm_stop_signal()), out);
        return exit_code(s);
    }
    s = cllm_tokenizer_train_mode(&corpus, vocab, (cllm_pretok)pretok, stop, &tok);
    if (s == CLLM_OK) s = cllm_tokenizer_save(tok, out);
    cllm_stop_release();
    if (s == CLLM_OK) {
        int got = cllm_tokenizer_vocab_size(tok);
        printf("tokenizer: %zu bytes from %zu files (%zu binary skipped), vocab %d (%d merges + 1 end-of-document)%s, "
               "%.2f s -> %s\n",
               corpus.n_bytes, corpus.n_files_read, corpus.n_binary_skipped, got, cllm_tokenizer_n_merges(tok),
               got < vocab ? " [corpus has no more pairs to merge]" : "", cllm_now() - t0, out);
    }
    cllm_tokenizer_free(tok);
    cllm_corpus_free(&corpus);
    if (s == CLLM_ERR_INTERRUPTED && strncmp(cllm_last_error(), "interrupted while", 17) == 0) {
        /* the data layer names the phase, not the signal or the file */
        fprintf(stderr, "cllm tokenizer train: interrupted by %s %s: %s not written\n",
                cllm_signal_name(cllm_stop_signal()), cllm_last_error() + 12, out);
        return exit_code(s);
    }
    if (s != CLLM_OK) return report("train", s);
    return finish_stdout();
}

/* ---- encode / decode ---- */

/* Parses the positional FILE of encode/decode and loads it. */
static int load_for(const char *cmd, int argc, char **argv, const char *summary, cllm_tokenizer **tok) {
    char text[512];
    snprintf(text, sizeof text,
             "%s\nFILE: a tokenizer.bin or a Hugging Face tokenizer.json; DIR: a folder with tokenizer.bin, else\n"
             "tokenizer.json, else vocab.json + merges.txt (a run folder, or e.g. OpenAI's GPT-2 files).",
             summary);
    const cllm_command_spec spec = {cmd, "FILE|DIR", text, NULL, 0, 1, 1};
    char *positional[2];
    char **pos = argc <= 2 ? positional : malloc((size_t)argc * sizeof *pos);
    if (!pos) return 1;
    int n_pos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &n_pos));
    if (rc < 0) {
        cllm_status s = cllm_tokenizer_load_any(pos[0], tok);
        if (s != CLLM_OK) {
            fprintf(stderr, "cllm %s: %s\n", cmd, cllm_last_error());
            rc = exit_code(s);
        }
    }
    if (pos != positional) free(pos);
    return rc;
}

static int cmd_encode(int argc, char **argv) {
    cllm_tokenizer *tok = NULL;
    int rc = load_for("tokenizer encode", argc, argv,
                      "Reads bytes on stdin and prints their token ids, one per line.", &tok);
    if (rc >= 0) return rc;
    size_t n = 0, n_ids = 0;
    int32_t *ids = NULL;
    uint8_t *bytes = NULL;
    cllm_status s = read_stdin(&bytes, &n);
    if (s == CLLM_OK) s = cllm_tokenizer_encode(tok, bytes, n, &ids, &n_ids);
    free(bytes);
    cllm_tokenizer_free(tok);
    if (s != CLLM_OK) return report("encode", s);
    for (size_t i = 0; i < n_ids; i++) printf("%ld\n", (long)ids[i]);
    free(ids);
    return finish_stdout();
}

/* One line of decode input: a decimal id, optionally surrounded by blanks. */
static int parse_id_line(const char *line, size_t len, long *id) {
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t start = i;
    long v = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9' && i - start < 9) v = v * 10 + (line[i++] - '0');
    if (i == start) return 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
    if (i != len) return 0;
    *id = v;
    return 1;
}

/* All ids of stdin, checked against the vocabulary before anything is written. */
static int parse_ids(const uint8_t *text, size_t n, int vocab, int32_t **ids_out, size_t *n_ids) {
    int32_t *ids = malloc((n / 2 + 1) * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "cllm tokenizer decode: out of memory\n");
        return 1;
    }
    size_t k = 0, line_no = 0;
    for (size_t i = 0; i < n;) {
        const uint8_t *nl = memchr(text + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - text) : n;
        long id = 0;
        line_no++;
        if (!parse_id_line((const char *)text + i, end - i, &id) || id >= vocab) {
            int shown = (int)(end - i > 40 ? 40 : end - i);
            if (parse_id_line((const char *)text + i, end - i, &id))
                fprintf(stderr, "cllm tokenizer decode: line %zu: token id %ld out of range (vocabulary %d)\n",
                        line_no, id, vocab);
            else
                fprintf(stderr, "cllm tokenizer decode: line %zu: '%.*s' is not a token id\n", line_no, shown,
                        (const char *)text + i);
            free(ids);
            return 2;
        }
        ids[k++] = (int32_t)id;
        i = end + 1;
    }
    *ids_out = ids;
    *n_ids = k;
    return -1;
}

static int cmd_decode(int argc, char **argv) {
    cllm_tokenizer *tok = NULL;
    int rc = load_for("tokenizer decode", argc, argv,
                      "Reads token ids on stdin, one per line, and writes the bytes they stand for.", &tok);
    if (rc >= 0) return rc;
    size_t n = 0, n_ids = 0, n_bytes = 0;
    int32_t *ids = NULL;
    uint8_t *out = NULL;
    uint8_t *text = NULL;
    cllm_status s = read_stdin(&text, &n);
    if (s != CLLM_OK) {
        cllm_tokenizer_free(tok);
        return report("decode", s);
    }
    rc = parse_ids(text, n, cllm_tokenizer_vocab_size(tok), &ids, &n_ids);
    free(text);
    if (rc < 0) {
        s = cllm_tokenizer_decode(tok, ids, n_ids, &out, &n_bytes);
        rc = s == CLLM_OK ? 0 : report("decode", s);
        if (s == CLLM_OK && n_bytes) fwrite(out, 1, n_bytes, stdout);
        if (s == CLLM_OK) rc = finish_stdout();
    }
    free(ids);
    free(out);
    cllm_tokenizer_free(tok);
    return rc;
}

/* ---- split ---- */

/* The pre-tokenizer alone: the byte length of each chunk of stdin, one per
 * line, so that another implementation of the rule can be checked against it. */
static int cmd_split(int argc, char **argv) {
    int pretok = (int)cllm_pretok_default();
    const cllm_flag flags[] = {
        {"pretokenize", CLLM_FLAG_CHOICE, &pretok, "cllm|gpt2", "the pre-tokenizer (default as for train)", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "tokenizer split", "",
        "Reads bytes on stdin and prints the byte length of each chunk the pre-tokenizer cuts them into,\n"
        "one per line (merges never cross a chunk).",
        flags, 1, 0, 0};
    char **pos = malloc(((size_t)argc + 1) * sizeof *pos);
    int n_pos = 0;
    int rc = pos ? cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &n_pos)) : 1;
    free(pos);
    if (rc >= 0) return rc;
    cllm_status s = cllm_pretok_require((cllm_pretok)pretok);
    if (s != CLLM_OK) return report("split", s);
    uint8_t *bytes = NULL;
    size_t n = 0;
    if ((s = read_stdin(&bytes, &n)) != CLLM_OK) return report("split", s);
    for (size_t i = 0; i < n;) {
        size_t end = cllm_pretok_chunk_end((cllm_pretok)pretok, bytes, n, i);
        printf("%zu\n", end - i);
        i = end;
    }
    free(bytes);
    return finish_stdout();
}

int cllm_cmd_tokenizer(int argc, char **argv) {
    if (argc < 1) {
        fprintf(stderr, "cllm tokenizer: missing subcommand (train, encode or decode; see cllm tokenizer --help)\n");
        return 2;
    }
    const char *sub = argv[0];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(sub, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(sub, "encode") == 0) return cmd_encode(argc - 1, argv + 1);
    if (strcmp(sub, "decode") == 0) return cmd_decode(argc - 1, argv + 1);
    if (strcmp(sub, "split") == 0) return cmd_split(argc - 1, argv + 1);
    fprintf(stderr, "cllm tokenizer: unknown subcommand '%s' (train, encode or decode; see cllm tokenizer --help)\n",
            sub);
    return 2;
}
