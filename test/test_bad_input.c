/* Bad input, row by row: every way a user (or a damaged file) can hand cllm
 * something it cannot use, with the message and exit status it must give.
 *
 * Each row of `rows` builds its input in a folder of its own, runs the cllm
 * binary, and asserts: the exit status, exactly one non-empty line on stderr
 * containing the row's phrase, and no crash. The same table is the "Bad input"
 * section of docs/RELIABILITY.md: test_doc_table_matches checks that the doc
 * holds exactly these rows, and `test_bad_input --print-table` prints them. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/io/safetensors.h"
#include "cllm/base/build_config.h"
#include "cllm/data/tokenizer.h"
#include "support.h"

/* ---- fixtures -------------------------------------------------------------------------------- */

static char *workdir;   /* every row's folder lives here */
static char *reference; /* a complete tiny run, copied by the rows that damage one */
static char *corpus;    /* the text it was trained on */

/* Model flags small enough that a run takes milliseconds. */
#define TINY "--layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 4 --steps 1 --sample-tokens 0 --quiet"

static char *join(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void put(const char *dir, const char *name, const char *text) { free(write_file(dir, name, text, strlen(text))); }

static void write_corpus(const char *dir, const char *name) { free(write_word_corpus(dir, name)); }

static int setup_reference_run(void **state) {
    (void)state;
    workdir = make_temp_dir();
    write_corpus(workdir, "corpus.txt");
    corpus = join(workdir, "corpus.txt");
    reference = join(workdir, "reference");
    char args[8192];
    snprintf(args, sizeof args, "train '%s' " TINY " --steps 2 --out '%s'", corpus, reference);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    int ok = r.exit_code == 0;
    if (!ok) fprintf(stderr, "reference run failed: exit %d, %s\n", r.exit_code, r.err);
    run_result_free(&r);
    return ok ? 0 : -1;
}

static int teardown_reference_run(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(reference);
    free(corpus);
    return 0;
}

/* ---- inputs: each builds what its row needs inside the row's folder `d` ----------------------- */

static void a_corpus(const char *d) { write_corpus(d, "corpus.txt"); }

static void a_run(const char *d) {
    char *dst = join(d, "run");
    copy_tree(reference, dst);
    free(dst);
}

/* The file a run folder's name resolves to (a checkpoint's file may be reached through a link). */
static char *resolved(const char *d, const char *name) {
    char *path = join(d, name), *real = realpath(path, NULL);
    if (!real) fail_msg("%s does not resolve", path);
    free(path);
    return real;
}

static unsigned char *run_file(const char *d, const char *name, size_t *n) {
    char *path = resolved(d, name);
    unsigned char *data = read_whole_file(path, n);
    if (!data) fail_msg("cannot read %s", path);
    free(path);
    return data;
}

/* Rewrites run/<name> (through any link) with n bytes of data. */
static void replace_run_file(const char *d, const char *name, const void *data, size_t n) {
    char *path = resolved(d, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) fail_msg("cannot rewrite %s", path);
    free(path);
}

static void truncate_run_file(const char *d, const char *name, size_t keep) {
    size_t n;
    unsigned char *data = run_file(d, name, &n);
    replace_run_file(d, name, data, keep < n ? keep : n);
    free(data);
}

/* Replaces the first occurrence of `from` with `to` (same length or not) in run/<name>. */
static void edit_run_file(const char *d, const char *name, const char *from, const char *to) {
    size_t n;
    char *data = (char *)run_file(d, name, &n);
    char *at = memmem(data, n, from, strlen(from)); /* binary files too: the safetensors length has NUL bytes */
    if (!at) fail_msg("'%s' not found in %s", from, name);
    size_t head = (size_t)(at - data), from_len = strlen(from), to_len = strlen(to);
    char *out = malloc(n - from_len + to_len + 1);
    memcpy(out, data, head);
    memcpy(out + head, to, to_len);
    memcpy(out + head + to_len, at + from_len, n - head - from_len);
    replace_run_file(d, name, out, n - from_len + to_len);
    free(out);
    free(data);
}

/* Removes the file itself, not only a link to it, so no path reaches it. */
static void remove_run_file(const char *d, const char *name) {
    char *path = resolved(d, name), *link = join(d, name);
    if (unlink(path) != 0) fail_msg("cannot remove %s", path);
    unlink(link);
    free(path);
    free(link);
}

static void model_truncated(const char *d) {
    a_run(d);
    truncate_run_file(d, "run/model.safetensors", 20000);
}

static void model_short(const char *d) {
    a_run(d);
    truncate_run_file(d, "run/model.safetensors", 4);
}

static void model_header_garbage(const char *d) {
    a_run(d);
    size_t n;
    unsigned char *data = run_file(d, "run/model.safetensors", &n);
    memcpy(data + 8, "garbage!", 8);
    replace_run_file(d, "run/model.safetensors", data, n);
    free(data);
}

/* A header length of 2^60 bytes: refused from the file size, never allocated. */
static void model_header_length_huge(const char *d) {
    a_run(d);
    size_t n;
    unsigned char *data = run_file(d, "run/model.safetensors", &n);
    memset(data, 0, 8);
    data[7] = 0x10;
    replace_run_file(d, "run/model.safetensors", data, n);
    free(data);
}

static void model_wrong_dtype(const char *d) {
    a_run(d);
    edit_run_file(d, "run/model.safetensors", "\"F32\"", "\"I32\"");
}

static void model_missing(const char *d) {
    a_run(d);
    remove_run_file(d, "run/model.safetensors");
}

static void config_missing(const char *d) {
    a_run(d);
    remove_run_file(d, "run/config.json");
}

static void config_not_json(const char *d) {
    a_run(d);
    replace_run_file(d, "run/config.json", "not json {\n", 11);
}

static void config_empty(const char *d) {
    a_run(d);
    replace_run_file(d, "run/config.json", "", 0);
}

static void config_missing_key(const char *d) {
    a_run(d);
    edit_run_file(d, "run/config.json", "\"n_head\"", "\"n_hea\"");
}

static void config_wrong_type(const char *d) {
    a_run(d);
    edit_run_file(d, "run/config.json", "\"n_head\": 2", "\"n_head\": \"two\"");
}

static void config_shape_mismatch(const char *d) {
    a_run(d);
    edit_run_file(d, "run/config.json", "\"n_embd\": 16", "\"n_embd\": 32");
}

static void run_json_bad_precision(const char *d) {
    a_run(d);
    edit_run_file(d, "run/run.json", "\"precision\": \"fp32\"", "\"precision\": \"fp16\"");
}

static void tokenizer_missing(const char *d) {
    a_run(d);
    remove_run_file(d, "run/tokenizer.bin");
}

static void tokenizer_truncated(const char *d) {
    a_run(d);
    truncate_run_file(d, "run/tokenizer.bin", 100);
}

static void tokenizer_flipped_byte(const char *d) {
    a_run(d);
    size_t n;
    unsigned char *data = run_file(d, "run/tokenizer.bin", &n);
    data[n / 2] ^= 0xff;
    replace_run_file(d, "run/tokenizer.bin", data, n);
    free(data);
}

static void tokenizer_empty(const char *d) {
    a_run(d);
    replace_run_file(d, "run/tokenizer.bin", "", 0);
}

/* Hugging Face tokenizer files of the reference run (GPT-2 pre-tokenization), damaged. */
static const char *hf_unavailable(const char *d) {
    (void)d;
    return CLLM_HAVE_UTF8PROC ? NULL : "built without libutf8proc: runs have no Hugging Face tokenizer files";
}
static const char *gpt2_available(const char *d) {
    (void)d;
    return CLLM_HAVE_UTF8PROC ? "built with libutf8proc: GPT-2 pre-tokenization works" : NULL;
}
static void hf_json_not_json(const char *d) {
    a_run(d);
    replace_run_file(d, "run/tokenizer.json", "{\"model\": ", 11);
}
static void hf_json_wordpiece(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"type\": \"BPE\"", "\"type\": \"WordPiece\"");
}
static void hf_json_normalizer(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}");
}
static void hf_json_prefix_space(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"add_prefix_space\": false", "\"add_prefix_space\": true");
}
static void hf_json_unknown_merge(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"merges\": [\n", "\"merges\": [\n\"zq qz\",\n");
}
static void hf_json_id_gap(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"!\": 33", "\"!\": 3333");
}
static void hf_json_outside_alphabet(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"!\": 33", "\"\xe2\x98\x83\": 33"); /* U+2603 */
}
static void hf_json_added_not_special(const char *d) {
    a_run(d);
    edit_run_file(d, "run/tokenizer.json", "\"special\": true", "\"special\": false");
}
/* vocab.json + merges.txt alone: the folder's tokenizer.bin and tokenizer.json removed. */
static void hf_vocab_merges_only(const char *d) {
    a_run(d);
    remove_run_file(d, "run/tokenizer.bin");
    remove_run_file(d, "run/tokenizer.json");
}
static void hf_merges_three_parts(const char *d) {
    hf_vocab_merges_only(d);
    edit_run_file(d, "run/merges.txt", "#version: 0.2\n", "#version: 0.2\na b c\n");
}
static void hf_vocab_missing_byte(const char *d) {
    hf_vocab_merges_only(d);
    edit_run_file(d, "run/vocab.json", "\"\xc4\x81\": 1,", "\"\xc4\x81\xc4\x81\": 1,"); /* byte 0x01 is U+0101 */
}
static void hf_vocab_no_eot(const char *d) {
    hf_vocab_merges_only(d);
    edit_run_file(d, "run/vocab.json", "\"<|endoftext|>\"", "\"<|end|>\"");
}

static void an_empty_file(const char *d) { put(d, "empty.txt", ""); }

static void an_empty_folder(const char *d) {
    char *p = join(d, "empty");
    mkdir(p, 0755);
    free(p);
}

static void binary_files_only(const char *d) {
    free(write_file(d, "data/image.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
    free(write_file(d, "data/blob.bin", "\0\1\2\3\0\0\xff", 7));
}

static void a_short_text(const char *d) { put(d, "short.txt", "hi\n"); }

static void a_file(const char *d) { put(d, "file", "not a folder\n"); }

static void metrics(const char *d, const char *lines) { put(d, "run/metrics.jsonl", lines); }
static void metrics_empty(const char *d) { metrics(d, ""); }
static void metrics_not_json(const char *d) { metrics(d, "this is not json\n"); }
/* A cut line with others after it (a cut last line is a row being written: skipped). */
static void metrics_cut_line(const char *d) {
    metrics(d, "{\"step\":1,\"tokens\":64,\"loss\":5.6}\n{\"step\":2,\"tok\n{\"step\":3,\"tokens\":192,\"loss\":5.1}\n");
}
static void metrics_no_loss(const char *d) { metrics(d, "{\"step\":1,\"tokens\":64}\n"); }

/* An output folder nothing can be written into. Permission bits do not stop
 * root (CI runs as root), so there `out` is a plain file instead, which stops
 * everyone: creating out/sub fails either way. */
static void unwritable_out(const char *d) {
    a_run(d);
    char *out = join(d, "out");
    if (geteuid() == 0) {
        put(d, "out", "a file where the output folder would be\n");
        print_message("  (running as root: permission bits would not stop the write, so out is a plain file)\n");
    } else {
        mkdir(out, 0500);
    }
    free(out);
}

/* A 64 KiB tmpfs, filled to the last block, mounted by the row's own wrapper in
 * a private mount namespace (so nothing outlives the command; needs root and
 * mount rights). The wrapper takes the row's folder as its first argument. */
#define FULL_DISK                                                                                                    \
    "unshare -m sh -c 'mount -t tmpfs -o size=64k tmpfs \"$1\"/full || exit 99; "                                   \
    "cat /dev/zero >\"$1\"/full/fill 2>/dev/null; shift; exec \"$0\" \"$@\"'"

static const char *full_disk_unavailable(const char *d) {
    char *full = join(d, "full");
    mkdir(full, 0755);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "unshare -m sh -c 'mount -t tmpfs -o size=64k tmpfs \"%s\"' >/dev/null 2>&1", full);
    int ok = system(cmd) == 0;
    free(full);
    return ok ? NULL : "cannot mount a small tmpfs here (needs root and mount rights in a private namespace)";
}

static void full_disk(const char *d) {
    a_run(d);
    char *full = join(d, "full");
    mkdir(full, 0755);
    free(full);
}

/* One float of run/model.safetensors set to NaN: the last 4 bytes are the
 * last element of the last tensor's data. */
static void model_nan(const char *d) {
    a_run(d);
    size_t n;
    unsigned char *data = run_file(d, "run/model.safetensors", &n);
    const unsigned char nan_le[4] = {0x00, 0x00, 0xc0, 0x7f};
    memcpy(data + n - 4, nan_le, 4);
    replace_run_file(d, "run/model.safetensors", data, n);
    free(data);
}

/* A config.json this machine could never hold (and not the file's model). */
static void config_huge(const char *d) {
    a_run(d);
    edit_run_file(d, "run/config.json", "\"n_layer\": 1", "\"n_layer\": 100000");
    edit_run_file(d, "run/config.json", "\"n_embd\": 16", "\"n_embd\": 4096");
}

/* A run trained on a corpus of its own, which then changes on disk. */
static void run_whose_data_changed(const char *d) {
    write_corpus(d, "corpus.txt");
    char args[8192];
    snprintf(args, sizeof args, "train '%s/corpus.txt' " TINY " --out '%s/run'", d, d);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    if (r.exit_code != 0) fail_msg("training the row's run failed: %s", r.err);
    run_result_free(&r);
    char *path = join(d, "corpus.txt");
    FILE *f = fopen(path, "ab");
    if (!f || fputs("one more line\n", f) < 0 || fclose(f) != 0) fail_msg("cannot append to %s", path);
    free(path);
}

/* The same, with no token cache to compare against: the data itself must be hashed and refused. */
static void run_whose_data_changed_without_cache(const char *d) {
    run_whose_data_changed(d);
    char *path = join(d, "run/tokens.bin");
    if (unlink(path) != 0) fail_msg("cannot remove %s", path);
    free(path);
}

static void a_folder_of_other_files(const char *d) { put(d, "mine/thesis.tex", "chapter one\n"); }

/* A run whose tokenizer uses the cllm chunker, which llama.cpp cannot reproduce. */
static void run_with_cllm_chunker(const char *d) {
    char args[8192];
    snprintf(args, sizeof args, "train '%s' " TINY " --pretokenize cllm --out '%s/run'", corpus, d);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    if (r.exit_code != 0) fail_msg("training the row's run failed: %s", r.err);
    run_result_free(&r);
}

/* The reference run with a GPT-2-mode tokenizer of the same size in which two
 * merges build the same bytes: (ab)(c) and (a)(bc) are both "abc". */
static void run_with_duplicate_tokens(const char *d) {
    a_run(d);
    enum { N_MERGES = 300 - 256 - 1 };
    int32_t pairs[2 * N_MERGES] = {'a', 'b', 'b', 'c', 256, 'c', 'a', 257};
    for (int k = 4; k < N_MERGES; k++) { /* the rest: distinct pairs of digits and letters */
        pairs[2 * k] = '0' + k % 10;
        pairs[2 * k + 1] = 'A' + k / 10;
    }
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_build_from_pairs(pairs, N_MERGES, CLLM_PRETOK_GPT2, &t) != CLLM_OK)
        fail_msg("cannot build the tokenizer: %s", cllm_last_error());
    char *path = resolved(d, "run/tokenizer.bin");
    if (cllm_tokenizer_save(t, path) != CLLM_OK) fail_msg("cannot save %s: %s", path, cllm_last_error());
    free(path);
    cllm_tokenizer_free(t);
}

static const char *gpt2_pretok_unavailable(const char *d) {
    (void)d;
    return cllm_pretok_available(CLLM_PRETOK_GPT2) ? NULL : "built without libutf8proc: no GPT-2 pre-tokenization";
}

/* The run's lock held by another process for the whole command (flock(1)
 * runs the binary while holding it). */
#define LOCK_HELD "sh -c 'd=$1; shift; exec flock -n \"$d\"/run/.cllm.lock \"$0\" \"$@\"'"

/* ---- --init folders: the reference run's three files, plain copies (a run folder is a Hugging Face GPT-2 folder) */

#define INIT_FLAGS "--batch 4 --steps 1 --sample-tokens 0 --quiet --out @D/never"

static void an_init_folder(const char *d) {
    a_run(d);
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.bin"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[64], to[64];
        snprintf(from, sizeof from, "run/%s", files[i]);
        snprintf(to, sizeof to, "init/%s", files[i]);
        size_t n;
        unsigned char *data = run_file(d, from, &n);
        free(write_file(d, to, data, n));
        free(data);
    }
}

static void init_without(const char *d, const char *name) {
    an_init_folder(d);
    char path[64];
    snprintf(path, sizeof path, "init/%s", name);
    remove_run_file(d, path);
}

static void init_without_config(const char *d) { init_without(d, "config.json"); }
static void init_without_model(const char *d) { init_without(d, "model.safetensors"); }
static void init_without_tokenizer(const char *d) { init_without(d, "tokenizer.bin"); }

/* The weights as PyTorch's pickle only, as older hub folders have them. */
static void init_pickle_only(const char *d) {
    init_without(d, "model.safetensors");
    put(d, "init/pytorch_model.bin", "PK\3\4 (a zip of pickles)\n");
}

static void init_wrong_dtype(const char *d) {
    an_init_folder(d);
    edit_run_file(d, "init/model.safetensors", "\"F32\"", "\"I32\"");
}

static void init_shape_mismatch(const char *d) {
    an_init_folder(d);
    edit_run_file(d, "init/config.json", "\"n_embd\": 16", "\"n_embd\": 32");
}

static void init_too_deep(const char *d) {
    an_init_folder(d);
    edit_run_file(d, "init/config.json", "\"n_layer\": 1", "\"n_layer\": 200");
}

static void init_erf_gelu(const char *d) {
    an_init_folder(d);
    edit_run_file(d, "init/config.json", "\"gelu_new\"", "\"gelu\"");
}

/* model.safetensors with an lm_head.weight that is wte but for one element: an untied model. */
static void init_untied_lm_head(const char *d) {
    an_init_folder(d);
    char *path = resolved(d, "init/model.safetensors");
    cllm_st_file f;
    if (cllm_st_open(path, &f) != CLLM_OK) fail_msg("%s", cllm_last_error());
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    for (int i = 0; i < f.n_tensors; i++)
        cllm_st_writer_add(&w, f.tensors[i].name, f.tensors[i].dtype, f.tensors[i].data, f.tensors[i].ndim,
                           f.tensors[i].shape);
    const cllm_st_tensor *wte = cllm_st_find(&f, "transformer.wte.weight");
    float *head = malloc(wte->nbytes);
    memcpy(head, wte->data, wte->nbytes);
    head[5] += 1.0f;
    cllm_st_writer_add(&w, "lm_head.weight", CLLM_ST_F32, head, wte->ndim, wte->shape);
    if (cllm_st_writer_write(&w, path) != CLLM_OK) fail_msg("%s", cllm_last_error());
    cllm_st_writer_free(&w);
    cllm_st_close(&f);
    free(head);
    free(path);
}

/* A tokenizer of another vocabulary size than config.json's. */
static void init_other_tokenizer(const char *d) {
    an_init_folder(d);
    char args[8192];
    snprintf(args, sizeof args, "tokenizer train '%s' --vocab 280 -o '%s/init/tokenizer.bin'", corpus, d);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    if (r.exit_code != 0) fail_msg("tokenizer train failed: %s", r.err);
    run_result_free(&r);
}

/* ---- the table ------------------------------------------------------------------------------- */

/* In `args`, `env` and `stdin_text`, @D is the row's folder, @C the shared corpus. */
typedef struct {
    const char *name;
    const char *what;                       /* the input, for the doc */
    void (*setup)(const char *d);           /* NULL: nothing to build */
    const char *(*unavailable)(const char *d); /* NULL, or why the row cannot run on this machine */
    const char *env;                        /* extra environment (KEY=VALUE ...), or NULL */
    const char *wrapper;                    /* a command the binary runs under, or NULL */
    const char *args;
    const char *stdin_text;                 /* NULL: /dev/null */
    int exit_status;
    const char *phrase;                     /* what the single stderr line must contain */
} bad_input_row;

static const bad_input_row rows[] = {
    /* command lines */
    {"no_command", "no command at all", NULL, NULL, NULL, NULL, "", NULL, 2, "missing command"},
    {"unknown_command", "an unknown command", NULL, NULL, NULL, NULL, "frob", NULL, 2, "unknown command 'frob'"},
    {"unknown_flag", "an unknown flag", NULL, NULL, NULL, NULL, "train --out @D/never --frobnicate", NULL, 2,
     "unknown option '--frobnicate'"},
    {"unknown_short_flag", "an unknown short flag", NULL, NULL, NULL, NULL, "train --out @D/never -x", NULL, 2, "unknown option '-x'"},
    {"flag_without_value", "a flag without its value", NULL, NULL, NULL, NULL, "train --steps", NULL, 2,
     "--steps needs a value"},
    {"flag_not_an_integer", "a word where an integer goes", NULL, NULL, NULL, NULL, "train --out @D/never --steps abc", NULL, 2,
     "--steps expects an integer, got 'abc'"},
    {"flag_empty_value", "an empty value (`--steps=`)", NULL, NULL, NULL, NULL, "train --out @D/never --steps=", NULL, 2,
     "--steps expects an integer, got ''"},
    {"flag_out_of_range", "a value out of range", NULL, NULL, NULL, NULL, "train --out @D/never --layers 0", NULL, 2,
     "--layers 0 is out of range"},
    {"flag_int_overflow", "an integer beyond 64 bits", NULL, NULL, NULL, NULL, "train --out @D/never --steps 99999999999999999999",
     NULL, 2, "--steps expects an integer"},
    {"flag_number_overflow", "a number beyond double (`1e400`)", NULL, NULL, NULL, NULL, "train --out @D/never --lr 1e400", NULL, 2,
     "--lr expects a number, got '1e400'"},
    {"flag_nan", "`nan` as a number", NULL, NULL, NULL, NULL, "sample x --temperature nan", NULL, 2,
     "--temperature expects a number, got 'nan'"},
    {"bool_flag_with_value", "a value given to a switch", NULL, NULL, NULL, NULL, "train --out @D/never --quiet=1", NULL, 2,
     "--quiet takes no value"},
    {"two_budgets", "two budgets at once", NULL, NULL, NULL, NULL, "train --out @D/never --steps 5 --epochs 1", NULL, 2,
     "give only one budget"},
    {"unknown_preset", "an unknown preset", NULL, NULL, NULL, NULL, "train --out @D/never --preset XL", NULL, 2,
     "unknown --preset 'XL'"},
    {"heads_do_not_divide_width", "heads that do not divide the width", NULL, NULL, NULL, NULL,
     "train --out @D/never --heads 3 --embd 32", NULL, 2, "--embd 32 is not a multiple of --heads 3"},
    {"batch_not_multiple_of_micro", "a batch not a multiple of the micro-batch", NULL, NULL, NULL, NULL,
     "train --out @D/never --batch 6 --micro 4", NULL, 2, "--batch 6 is not a multiple of --micro 4"},
    {"min_lr_above_lr", "a floor above the peak learning rate", NULL, NULL, NULL, NULL, "train --out @D/never --min-lr 1 --lr 0.1",
     NULL, 2, "--min-lr must not exceed --lr"},
    {"stop_after_past_budget", "`--stop-after` beyond the budget", a_corpus, NULL, NULL, NULL,
     "train @D/corpus.txt " TINY " --stop-after 5 --out @D/never", NULL, 2, "--stop-after 5 is beyond the budget"},
    {"empty_out", "an empty `--out`", NULL, NULL, NULL, NULL, "train --out ''", NULL, 2,
     "--out needs a folder name"},
    {"empty_resume", "an empty `--resume`", NULL, NULL, NULL, NULL, "train --resume=", NULL, 2,
     "--resume needs a folder name"},
    {"resume_with_model_flag", "`--resume` with a flag that changes the model", a_run, NULL, NULL, NULL,
     "train --resume @D/run --layers 2", NULL, 2, "--layers cannot change with --resume"},
    {"resume_with_data", "`--resume` with DATA", a_run, NULL, NULL, NULL, "train @C --resume @D/run", NULL, 2,
     "DATA cannot change with --resume"},
    {"unknown_precision", "an unknown `--precision`", NULL, NULL, NULL, NULL, "train --out @D/never --precision fp16",
     NULL, 2, "--precision expects one of fp32|bf16, got 'fp16'"},
    {"resume_with_other_precision", "`--resume` with another `--precision`", a_run, NULL, NULL, NULL,
     "train --resume @D/run --precision bf16", NULL, 2, "--precision cannot change with --resume"},
    {"run_json_bad_precision", "`run.json` with an unknown `precision`", run_json_bad_precision, NULL, NULL, NULL,
     "train --resume @D/run --steps 4", NULL, 2, "\"precision\" must be one of fp32|bf16"},
    {"out_and_resume_differ", "`--out` and `--resume` naming different folders", a_run, NULL, NULL, NULL,
     "train --resume @D/run --out @D/other", NULL, 2, "--out and --resume name different folders"},
    {"resume_with_tokenizer", "`--resume` with `--tokenizer`", a_run, NULL, NULL, NULL,
     "train --resume @D/run --tokenizer @D/run/tokenizer.bin", NULL, 2, "--tokenizer cannot change with --resume"},
    {"tokenizer_vocab_mismatch", "`--tokenizer` with a `--vocab` it does not have", a_run, NULL, NULL, NULL,
     "train @C --tokenizer @D/run/tokenizer.bin --vocab 400 --out @D/never", NULL, 2,
     "--vocab 400 does not match --tokenizer"},
    {"tokenizer_pretokenize_mismatch", "`--tokenizer` with a `--pretokenize` it was not trained with", a_run, NULL,
     NULL, NULL, "train @C --tokenizer @D/run/tokenizer.bin --pretokenize cllm --out @D/never", NULL, 2,
     "--pretokenize cllm does not match --tokenizer"},
    {"tokenizer_not_a_tokenizer", "`--tokenizer` naming a file that is not one", a_corpus, NULL, NULL, NULL,
     "train @C --tokenizer @D/corpus.txt --out @D/never", NULL, 2, "not a cllm tokenizer file"},
    {"eval_without_run", "`eval` without a run folder", NULL, NULL, NULL, NULL, "eval", NULL, 2,
     "missing argument (usage: cllm eval DIR"},
    {"eval_dump_without_tokens", "`--dump-logits` without `--tokens`", a_run, NULL, NULL, NULL,
     "eval @D/run --dump-logits @D/logits", NULL, 2, "--dump-logits FILE and --tokens IDS go together"},
    {"eval_token_id_out_of_range", "`--tokens` with an id past the vocabulary", a_run, NULL, NULL, NULL,
     "eval @D/run --dump-logits @D/logits --tokens '1 2 999'", NULL, 2, "--tokens wants up to 16 ids in 0..299"},
    {"eval_dump_into_folder", "`--dump-logits` naming a folder", a_run, NULL, NULL, NULL,
     "eval @D/run --dump-logits @D --tokens '1 2'", NULL, 2, "is a folder; give a file name"},
    {"eval_tokens_negative", "a negative `--eval-tokens`", a_run, NULL, NULL, NULL, "eval @D/run --eval-tokens -5",
     NULL, 2, "--eval-tokens -5 is out of range"},
    {"sample_extra_argument", "`sample` with two run folders", a_run, NULL, NULL, NULL, "sample @D/run @D/run", NULL,
     2, "unexpected argument"},
    {"sample_top_p_zero", "`--top-p 0`", a_run, NULL, NULL, NULL, "sample @D/run --top-p 0", NULL, 2,
     "--top-p 0 is out of range"},
    {"sample_negative_tokens", "a negative token count", a_run, NULL, NULL, NULL, "sample @D/run --tokens -1", NULL, 2,
     "--tokens -1 is out of range"},
    {"export_without_run", "`export` without a run folder", NULL, NULL, NULL, NULL, "export --gguf @D/m.gguf", NULL, 2,
     "missing argument (usage: cllm export"},
    {"export_without_gguf", "`export` without `--gguf`", a_run, NULL, NULL, NULL, "export @D/run", NULL, 2,
     "missing --gguf FILE"},
    {"export_bad_dtype", "`export --dtype q4`", a_run, NULL, NULL, NULL, "export @D/run --gguf @D/m.gguf --dtype q4",
     NULL, 2, "--dtype must be f32 or f16, not 'q4'"},
    {"export_empty_gguf", "`export --gguf ''`", a_run, NULL, NULL, NULL, "export @D/run --gguf ''", NULL, 2,
     "--gguf needs a file name"},
    {"export_gguf_is_folder", "`export --gguf` naming a folder", a_run, NULL, NULL, NULL, "export @D/run --gguf @D",
     NULL, 2, "--gguf @D is a folder; give a file name"},
    {"export_two_runs", "`export` with two run folders", a_run, NULL, NULL, NULL,
     "export @D/run @D/run --gguf @D/m.gguf", NULL, 2, "unexpected argument"},
    {"tokenizer_without_subcommand", "`tokenizer` alone", NULL, NULL, NULL, NULL, "tokenizer", NULL, 2,
     "missing subcommand"},
    {"tokenizer_unknown_subcommand", "an unknown `tokenizer` subcommand", NULL, NULL, NULL, NULL, "tokenizer frob",
     NULL, 2, "unknown subcommand 'frob'"},
    {"tokenizer_train_without_out", "`tokenizer train` without `-o`", NULL, NULL, NULL, NULL, "tokenizer train @C",
     NULL, 2, "missing -o FILE"},
    {"tokenizer_train_empty_out", "`tokenizer train -o ''`", NULL, NULL, NULL, NULL, "tokenizer train @C -o ''", NULL,
     2, "-o needs a file name"},
    {"tokenizer_train_out_is_folder", "`tokenizer train -o` naming a folder", NULL, NULL, NULL, NULL,
     "tokenizer train @C -o @D", NULL, 2, "is a folder; give a file name"},
    {"tokenizer_vocab_too_small", "a vocabulary below 257", NULL, NULL, NULL, NULL,
     "tokenizer train @C --vocab 100 -o @D/t.bin", NULL, 2, "--vocab 100 is out of range (allowed 257..65536)"},
    {"encode_without_file", "`tokenizer encode` without a tokenizer file", NULL, NULL, NULL, NULL, "tokenizer encode",
     NULL, 2, "missing argument"},
    {"runs_missing_folder", "`runs` on a folder that does not exist", NULL, NULL, NULL, NULL, "runs @D/nothing", NULL, 2,
     "no such folder"},
    {"help_two_commands", "`help` with two commands", NULL, NULL, NULL, NULL, "help train eval", NULL, 2,
     "unexpected argument 'eval'"},
    {"decode_two_files", "`tokenizer decode` with two files", NULL, NULL, NULL, NULL, "tokenizer decode a b", NULL, 2,
     "unexpected argument 'b'"},
    {"plot_without_out", "`plot` without `-o`", a_run, NULL, NULL, NULL, "plot @D/run", NULL, 2, "missing -o FILE.png"},
    {"plot_out_is_folder", "`plot -o` naming a folder", a_run, NULL, NULL, NULL, "plot @D/run -o @D", NULL, 2,
     "-o @D is a folder; give a file name"},
    {"plot_empty_out", "`plot -o ''`", a_run, NULL, NULL, NULL, "plot @D/run -o ''", NULL, 2,
     "-o needs a file name"},
    {"plot_width_out_of_range", "a plot narrower than 200 pixels", a_run, NULL, NULL, NULL,
     "plot @D/run -o @D/x.png --width 10", NULL, 2, "--width 10 is out of range"},
    {"bench_without_benchmark", "`bench` alone", NULL, NULL, NULL, NULL, "bench", NULL, 2, "missing benchmark"},
    {"bench_unknown", "an unknown benchmark", NULL, NULL, NULL, NULL, "bench frob", NULL, 2,
     "unknown benchmark 'frob'"},
    {"bench_step_bad_preset", "`bench step` with an unknown preset", NULL, NULL, NULL, NULL, "bench step --preset Q",
     NULL, 2, "--preset must be S, M or G, not 'Q'"},
    {"bench_matmul_bad_preset", "`bench matmul` with an unknown preset", NULL, NULL, NULL, NULL,
     "bench matmul --preset Q", NULL, 2, "--preset must be S, M or all, not 'Q'"},
    {"bench_reduce_one_source", "`bench reduce --sources 1`", NULL, NULL, NULL, NULL, "bench reduce --sources 1", NULL,
     2, "--sources 1 is out of range"},
    {"bench_encode_missing_data", "`bench encode` on a path that does not exist", NULL, NULL, NULL, NULL,
     "bench encode @D/nothing", NULL, 2, "no such file or folder"},
    {"bench_peak_zero_seconds", "`bench peak --seconds 0`", NULL, NULL, NULL, NULL, "bench peak --seconds 0", NULL, 2,
     "--seconds 0 is out of range"},
    {"info_unknown_flag", "`info` with an unknown flag", NULL, NULL, NULL, NULL, "info --frob", NULL, 2,
     "unknown option '--frob'"},
    {"info_extra_argument", "`info` with an argument", NULL, NULL, NULL, NULL, "info extra", NULL, 2,
     "unexpected argument 'extra'"},

    /* environment: checked before any command runs, even before its flags */
    {"omp_num_threads_zero", "`OMP_NUM_THREADS=0`", NULL, NULL, "OMP_NUM_THREADS=0", NULL, "info", NULL, 2,
     "OMP_NUM_THREADS='0' is not a positive integer"},
    {"omp_num_threads_word", "`OMP_NUM_THREADS=abc`", NULL, NULL, "OMP_NUM_THREADS=abc", NULL, "train --help", NULL, 2,
     "OMP_NUM_THREADS='abc' is not a positive integer"},
    {"omp_num_threads_empty", "`OMP_NUM_THREADS=` (set, empty)", NULL, NULL, "OMP_NUM_THREADS=", NULL, "eval x", NULL,
     2, "OMP_NUM_THREADS='' is not a positive integer"},
    {"omp_num_threads_huge", "`OMP_NUM_THREADS` beyond an int", NULL, NULL, "OMP_NUM_THREADS=99999999999", NULL,
     "info", NULL, 2, "OMP_NUM_THREADS='99999999999'"},
    {"omp_schedule_unknown_kind", "`OMP_SCHEDULE=fast`", NULL, NULL, "OMP_SCHEDULE=fast", NULL, "sample x", NULL, 2,
     "OMP_SCHEDULE='fast' is not"},
    {"omp_schedule_zero_chunk", "`OMP_SCHEDULE=dynamic,0`", NULL, NULL, "OMP_SCHEDULE=dynamic,0", NULL, "train", NULL,
     2, "OMP_SCHEDULE='dynamic,0' is not"},
    {"omp_proc_bind_unknown", "`OMP_PROC_BIND=sideways`", NULL, NULL, "OMP_PROC_BIND=sideways", NULL, "plot x -o y.png",
     NULL, 2, "OMP_PROC_BIND='sideways' is not"},
    {"omp_places_unknown", "`OMP_PLACES=nowhere`", NULL, NULL, "OMP_PLACES=nowhere", NULL, "bench step", NULL, 2,
     "OMP_PLACES='nowhere' is not"},
    {"cllm_unknown_variable", "an unknown `CLLM_*` variable", NULL, NULL, "CLLM_FROB=1", NULL, "tokenizer train x",
     NULL, 2, "unknown variable CLLM_FROB"},
    {"cllm_simd_unknown", "`CLLM_SIMD=avx9`", NULL, NULL, "CLLM_SIMD=avx9", NULL, "bench reduce", NULL, 2,
     "CLLM_SIMD='avx9' is not one of"},
    {"cllm_streaming_word", "`CLLM_STREAMING=maybe`", NULL, NULL, "CLLM_STREAMING=maybe", NULL, "train", NULL, 2,
     "CLLM_STREAMING='maybe' is not one of"},
    {"cllm_segments_out_of_range", "`CLLM_SEGMENTS=65`", NULL, NULL, "CLLM_SEGMENTS=65", NULL, "train", NULL, 2,
     "CLLM_SEGMENTS='65' is not an integer in 1..64"},
    {"cllm_grad_window_negative", "`CLLM_GRAD_WINDOW=-1`", NULL, NULL, "CLLM_GRAD_WINDOW=-1", NULL, "info", NULL, 2,
     "CLLM_GRAD_WINDOW='-1' is not an integer in 0..4096"},
    {"cllm_progress_unknown", "`CLLM_PROGRESS=loud`", NULL, NULL, "CLLM_PROGRESS=loud", NULL, "eval x", NULL, 2,
     "CLLM_PROGRESS='loud' is not one of"},
    {"cllm_progress_empty", "`CLLM_PROGRESS=` (set, empty)", NULL, NULL, "CLLM_PROGRESS=", NULL, "info", NULL, 2,
     "CLLM_PROGRESS='' is not one of"},
    {"cllm_peak_gflops_negative", "`CLLM_PEAK_GFLOPS=-3`", NULL, NULL, "CLLM_PEAK_GFLOPS=-3", NULL, "bench step", NULL,
     2, "CLLM_PEAK_GFLOPS='-3' is not a positive number"},
    {"cllm_team_zero", "`CLLM_TEAM=0`", NULL, NULL, "CLLM_TEAM=0", NULL, "train", NULL, 2,
     "CLLM_TEAM='0' is not auto or an integer in 1..4096"},

    /* training data */
    {"corpus_missing", "a DATA path that does not exist", NULL, NULL, NULL, NULL,
     "train @D/nothing.txt " TINY " --out @D/never", NULL, 2, "@D/nothing.txt: no such file or folder"},
    {"corpus_empty_file", "an empty DATA file", an_empty_file, NULL, NULL, NULL,
     "train @D/empty.txt " TINY " --out @D/never", NULL, 2, "no text in @D/empty.txt"},
    {"corpus_empty_folder", "an empty DATA folder", an_empty_folder, NULL, NULL, NULL,
     "train @D/empty " TINY " --out @D/never", NULL, 2, "no text in @D/empty"},
    {"corpus_binary_only", "a DATA folder of binary files only", binary_files_only, NULL, NULL, NULL,
     "train @D/data " TINY " --out @D/never", NULL, 2, "2 binary files skipped"},
    {"corpus_too_short", "a corpus shorter than one window", a_short_text, NULL, NULL, NULL,
     "train @D/short.txt " TINY " --val-fraction 0 --out @D/never", NULL, 2, "corpus too short: 3 tokens, need 17"},
    {"corpus_too_short_for_validation", "a corpus too short to hold out a validation window", a_short_text, NULL,
     NULL, NULL, "train @D/short.txt " TINY " --out @D/never", NULL, 2, "need 33 (2 windows of 16+1 tokens)"},
    {"tokenizer_train_corpus_missing", "`tokenizer train` on a missing path", NULL, NULL, NULL, NULL,
     "tokenizer train @D/nothing -o @D/t.bin", NULL, 2, "@D/nothing: no such file or folder"},
    {"tokenizer_train_corpus_empty", "`tokenizer train` on an empty file", an_empty_file, NULL, NULL, NULL,
     "tokenizer train @D/empty.txt -o @D/t.bin", NULL, 2, "no text in @D/empty.txt"},
    {"eval_data_missing", "`eval` on a missing DATA path", a_run, NULL, NULL, NULL, "eval @D/run @D/nothing.txt", NULL,
     2, "@D/nothing.txt: no such file or folder"},
    {"eval_data_binary_only", "`eval` on binary files only", binary_files_only, NULL, NULL, NULL,
     "eval @D/../reference @D/data", NULL, 2, "no text in @D/data"},

    /* run folders and checkpoints */
    {"run_folder_missing", "a run folder that does not exist", NULL, NULL, NULL, NULL, "eval @D/nothing", NULL, 2,
     "@D/nothing: no such run folder"},
    {"run_folder_is_a_file", "a file given as the run folder", a_file, NULL, NULL, NULL, "sample @D/file", NULL, 2,
     "@D/file is not a run folder"},
    {"run_folder_empty", "an empty folder given as the run folder", an_empty_folder, NULL, NULL, NULL,
     "sample @D/empty", NULL, 2, "not a cllm run folder"},
    {"model_truncated", "`model.safetensors` cut short", model_truncated, NULL, NULL, NULL, "eval @D/run", NULL, 2,
     "lie outside the"},
    {"model_shorter_than_header", "`model.safetensors` of 4 bytes", model_short, NULL, NULL, NULL, "sample @D/run",
     NULL, 2, "truncated: 4 bytes, not even the 8-byte header length"},
    {"model_header_not_json", "`model.safetensors` with a corrupt header", model_header_garbage, NULL, NULL, NULL,
     "eval @D/run", NULL, 2, "header does not start with a JSON object"},
    {"model_header_length_huge", "`model.safetensors` announcing a 2^60-byte header", model_header_length_huge, NULL,
     NULL, NULL, "eval @D/run", NULL, 2, "runs past the end of the"},
    {"model_wrong_dtype", "`model.safetensors` with I32 tensors", model_wrong_dtype, NULL, NULL, NULL, "eval @D/run",
     NULL, 2, "is I32, cllm reads F32"},
    {"model_missing", "a run folder without `model.safetensors`", model_missing, NULL, NULL, NULL, "eval @D/run", NULL,
     2, "model.safetensors is missing"},
    {"config_missing", "a run folder without `config.json`", config_missing, NULL, NULL, NULL, "sample @D/run", NULL,
     2, "config.json is missing"},
    {"config_not_json", "`config.json` that is not JSON", config_not_json, NULL, NULL, NULL, "eval @D/run", NULL, 2,
     "config.json: invalid JSON"},
    {"config_empty", "an empty `config.json`", config_empty, NULL, NULL, NULL, "eval @D/run", NULL, 2,
     "config.json: invalid JSON: unexpected end"},
    {"config_missing_key", "`config.json` without `n_head`", config_missing_key, NULL, NULL, NULL, "eval @D/run", NULL,
     2, "config.json: missing \"n_head\""},
    {"config_wrong_type", "`config.json` with a string for `n_head`", config_wrong_type, NULL, NULL, NULL,
     "sample @D/run", NULL, 2, "\"n_head\" must be an integer"},
    {"config_shape_mismatch", "`config.json` wider than the tensors", config_shape_mismatch, NULL, NULL, NULL,
     "eval @D/run", NULL, 2, "config.json"},
    {"model_nan", "a NaN weight in `model.safetensors`", model_nan, NULL, NULL, NULL, "eval @D/run", NULL, 2,
     "holds NaN at element"},
    {"sample_model_nan", "a NaN weight, through `sample`", model_nan, NULL, NULL, NULL, "sample @D/run --tokens 4",
     NULL, 2, "holds NaN at element"},
    {"resume_model_nan", "a NaN weight, through `train --resume`", model_nan, NULL, NULL, NULL,
     "train --resume @D/run --steps 4", NULL, 2, "holds NaN at element"},
    {"config_beyond_memory", "`config.json` describing a model beyond this machine's memory", config_huge, NULL,
     NULL, NULL, "eval @D/run", NULL, 2, "available"},
    {"eval_data_changed", "`eval` without DATA after the training data changed", run_whose_data_changed, NULL, NULL,
     NULL, "eval @D/run", NULL, 2, "changed since the run was trained"},
    {"eval_data_changed_no_cache", "the same, `tokens.bin` removed", run_whose_data_changed_without_cache, NULL,
     NULL, NULL, "eval @D/run", NULL, 2, "changed since the run was trained"},
    {"resume_data_changed", "`train --resume` after the training data changed", run_whose_data_changed, NULL, NULL,
     NULL, "train --resume @D/run --steps 4", NULL, 2, "changed since the run started"},
    {"resume_data_changed_no_cache", "the same, `tokens.bin` removed", run_whose_data_changed_without_cache, NULL,
     NULL, NULL, "train --resume @D/run --steps 4", NULL, 2, "changed since the run started"},
    {"run_tokenizer_missing", "a run folder without `tokenizer.bin`", tokenizer_missing, NULL, NULL, NULL,
     "eval @D/run", NULL, 2, "tokenizer.bin is missing"},
    {"run_tokenizer_truncated", "a run's `tokenizer.bin` cut short", tokenizer_truncated, NULL, NULL, NULL,
     "sample @D/run", NULL, 2, "corrupt tokenizer file: 100 bytes but the header announces"},
    {"export_run_missing", "`export` of a run folder that does not exist", NULL, NULL, NULL, NULL,
     "export @D/nothing --gguf @D/m.gguf", NULL, 2, "@D/nothing: no such run folder"},
    {"export_not_a_run", "`export` of a file", a_file, NULL, NULL, NULL, "export @D/file --gguf @D/m.gguf", NULL, 2,
     "@D/file is not a run folder"},
    {"export_model_truncated", "`export` of a run whose `model.safetensors` is cut short", model_truncated, NULL,
     NULL, NULL, "export @D/run --gguf @D/m.gguf", NULL, 2, "lie outside the"},
    {"export_cllm_chunker", "`export` of a run whose tokenizer uses the cllm chunker", run_with_cllm_chunker, NULL,
     NULL, NULL, "export @D/run --gguf @D/m.gguf", NULL, 2,
     "splits text with the cllm chunker, not GPT-2's pre-tokenization"},
    {"export_duplicate_tokens", "`export` of a tokenizer with two tokens of the same bytes",
     run_with_duplicate_tokens, gpt2_pretok_unavailable, NULL, NULL, "export @D/run --gguf @D/m.gguf", NULL, 2,
     "cannot be exported for llama.cpp: two tokens have the same text \"abc\""},
    {"resume_not_a_run", "`--resume` of a folder that is not a run", an_empty_folder, NULL, NULL, NULL,
     "train --resume @D/empty", NULL, 2, "@D/empty: no run.json"},
    {"resume_missing_folder", "`--resume` of a folder that does not exist", NULL, NULL, NULL, NULL,
     "train --resume @D/nothing", NULL, 2, "@D/nothing: no run.json"},

    /* --init folders (a Hugging Face GPT-2 to fine-tune) */
    {"init_missing_folder", "`--init` of a folder that does not exist", NULL, NULL, NULL, NULL,
     "train @C --init @D/nothing " INIT_FLAGS, NULL, 2, "--init @D/nothing: No such file or directory"},
    {"init_without_config", "an `--init` folder without `config.json`", init_without_config, NULL, NULL, NULL,
     "train @C --init @D/init " INIT_FLAGS, NULL, 2, "--init @D/init: no config.json"},
    {"init_without_model", "an `--init` folder without `model.safetensors`", init_without_model, NULL, NULL, NULL,
     "train @C --init @D/init " INIT_FLAGS, NULL, 2, "--init @D/init: no model.safetensors"},
    {"init_pickle_only", "an `--init` folder with `pytorch_model.bin` instead of `model.safetensors`", init_pickle_only,
     NULL, NULL, NULL, "train @C --init @D/init " INIT_FLAGS, NULL, 2, "pytorch_model.bin is not read"},
    {"init_without_tokenizer", "an `--init` folder without a tokenizer", init_without_tokenizer, NULL, NULL, NULL,
     "train @C --init @D/init " INIT_FLAGS, NULL, 2, "--init @D/init: no tokenizer: neither tokenizer.bin, tokenizer.json nor"},
    {"init_wrong_dtype", "an `--init` model with I32 tensors", init_wrong_dtype, NULL, NULL, NULL,
     "train @C --init @D/init " INIT_FLAGS, NULL, 2, "is I32, cllm reads F32, F16 or BF16"},
    {"init_shape_mismatch", "an `--init` config.json whose width is not the tensors'", init_shape_mismatch, NULL, NULL,
     NULL, "train @C --init @D/init " INIT_FLAGS, NULL, 2, "has shape [300,16] but config.json implies [300,32]"},
    {"init_beyond_the_options", "an `--init` config.json deeper than `--layers` allows", init_too_deep, NULL, NULL,
     NULL, "train @C --init @D/init " INIT_FLAGS, NULL, 2,
     "@D/init/config.json: n_layer 200 is outside what cllm train takes (1..128)"},
    {"init_erf_gelu", "an `--init` config.json asking for the erf GELU", init_erf_gelu, NULL, NULL, NULL,
     "train @C --init @D/init " INIT_FLAGS, NULL, 2, "must be \"gelu_new\" or \"gelu_pytorch_tanh\""},
    {"init_untied_lm_head", "an `--init` model whose `lm_head.weight` is not `wte`", init_untied_lm_head, NULL, NULL,
     NULL, "train @C --init @D/init " INIT_FLAGS, NULL, 2, "lm_head.weight differs from transformer.wte.weight"},
    {"init_tokenizer_vocabulary", "an `--init` tokenizer of another vocabulary size", init_other_tokenizer, NULL, NULL,
     NULL, "train @C --init @D/init " INIT_FLAGS, NULL, 2, "the tokenizer has 280 tokens but config.json says vocab_size 300"},
    {"init_contradicting_shape", "`--init` with a shape flag that contradicts the folder", an_init_folder, NULL, NULL,
     NULL, "train @C --init @D/init --layers 2 " INIT_FLAGS, NULL, 2,
     "--layers 2 contradicts @D/init/config.json (n_layer 1)"},
    {"init_with_preset", "`--init` with `--preset`", an_init_folder, NULL, NULL, NULL,
     "train @C --init @D/init --preset S " INIT_FLAGS, NULL, 2, "--preset cannot be combined with --init"},
    {"init_with_pretokenize", "`--init` with `--pretokenize`", an_init_folder, NULL, NULL, NULL,
     "train @C --init @D/init --pretokenize cllm " INIT_FLAGS, NULL, 2, "--pretokenize cannot be combined with --init"},
    {"init_with_tokenizer", "`--init` with `--tokenizer`", an_init_folder, NULL, NULL, NULL,
     "train @C --init @D/init --tokenizer @D/run/tokenizer.bin " INIT_FLAGS, NULL, 2,
     "--tokenizer cannot be combined with --init"},
    {"init_on_resume", "`--init` with `--resume`", an_init_folder, NULL, NULL, NULL,
     "train --resume @D/run --init @D/init", NULL, 2, "--init cannot change with --resume"},

    /* tokenizer files */
    {"tokenizer_file_missing", "a tokenizer file that does not exist", NULL, NULL, NULL, NULL,
     "tokenizer encode @D/nothing.bin", NULL, 2, "cannot read @D/nothing.bin"},
    {"tokenizer_file_is_folder", "a folder without tokenizer files given as the tokenizer", NULL, NULL, NULL, NULL,
     "tokenizer decode @D", NULL, 2, "@D: no tokenizer.bin, tokenizer.json, nor vocab.json + merges.txt"},
    {"pretokenize_unknown", "`--pretokenize` naming no pre-tokenizer", NULL, NULL, NULL, NULL,
     "tokenizer train @C --pretokenize bert -o @D/t.bin", NULL, 2, "--pretokenize expects one of cllm|gpt2, got 'bert'"},
    {"train_pretokenize_unknown", "`train --pretokenize` naming no pre-tokenizer", NULL, NULL, NULL, NULL,
     "train @C " TINY " --pretokenize GPT2", NULL, 2, "--pretokenize expects one of cllm|gpt2, got 'GPT2'"},
    {"pretokenize_gpt2_without_utf8proc", "`--pretokenize gpt2` in a build without libutf8proc", NULL, gpt2_available,
     NULL, NULL, "tokenizer train @C --pretokenize gpt2 -o @D/t.bin", NULL, 2, "install libutf8proc-dev"},

    /* Hugging Face tokenizer files */
    {"hf_json_not_json", "`tokenizer.json` cut short", hf_json_not_json, hf_unavailable, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.json", NULL, 2, "@D/run/tokenizer.json: "},
    {"hf_json_wordpiece", "`tokenizer.json` of a WordPiece model", hf_json_wordpiece, hf_unavailable, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.json", NULL, 2, "the model must be BPE"},
    {"hf_json_normalizer", "`tokenizer.json` with a normalizer", hf_json_normalizer, hf_unavailable, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.json", NULL, 2, "a normalizer is not supported"},
    {"hf_json_prefix_space", "`tokenizer.json` whose ByteLevel adds a prefix space", hf_json_prefix_space,
     hf_unavailable, NULL, NULL, "tokenizer encode @D/run/tokenizer.json", NULL, 2,
     "ByteLevel with add_prefix_space is not supported"},
    {"hf_json_unknown_merge", "`tokenizer.json` with a merge of tokens not in the vocabulary", hf_json_unknown_merge,
     hf_unavailable, NULL, NULL, "tokenizer encode @D/run/tokenizer.json", NULL, 2,
     "merge 0: \"zq\" is not in the vocabulary"},
    {"hf_json_id_gap", "`tokenizer.json` whose ids have a gap", hf_json_id_gap, hf_unavailable, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.json", NULL, 2, "no token has id 33"},
    {"hf_json_outside_alphabet", "`tokenizer.json` with a token outside GPT-2's byte alphabet",
     hf_json_outside_alphabet, hf_unavailable, NULL, NULL, "tokenizer encode @D/run/tokenizer.json", NULL, 2,
     "is not in GPT-2's byte-to-unicode alphabet"},
    {"hf_json_added_not_special", "`tokenizer.json` with an added token that is not special",
     hf_json_added_not_special, hf_unavailable, NULL, NULL, "tokenizer encode @D/run/tokenizer.json", NULL, 2,
     "added token \"<|endoftext|>\" is not special"},
    {"hf_merges_three_parts", "`merges.txt` with a line of three tokens", hf_merges_three_parts, hf_unavailable, NULL,
     NULL, "tokenizer encode @D/run", NULL, 2, "merges.txt line 2: merge 0 \"a b c\" is not two tokens"},
    {"hf_vocab_missing_byte", "`vocab.json` without a token for one byte", hf_vocab_missing_byte, hf_unavailable,
     NULL, NULL, "tokenizer encode @D/run", NULL, 2, "no token for the byte 0x01"},
    {"hf_vocab_no_eot", "`vocab.json` without `<|endoftext|>`", hf_vocab_no_eot, hf_unavailable, NULL, NULL,
     "tokenizer encode @D/run", NULL, 2, "no special token named \"<|endoftext|>\""},
    {"tokenizer_file_empty", "an empty tokenizer file", tokenizer_empty, NULL, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.bin", NULL, 2, "corrupt tokenizer file: empty file"},
    {"tokenizer_file_truncated", "a tokenizer file cut short", tokenizer_truncated, NULL, NULL, NULL,
     "tokenizer encode @D/run/tokenizer.bin", NULL, 2, "(truncated?)"},
    {"tokenizer_file_corrupt", "a tokenizer file with one byte flipped", tokenizer_flipped_byte, NULL, NULL, NULL,
     "tokenizer decode @D/run/tokenizer.bin", NULL, 2, "corrupt tokenizer file: checksum mismatch"},
    {"tokenizer_file_not_a_tokenizer", "a text file given as the tokenizer", NULL, NULL, NULL, NULL,
     "tokenizer encode @C", NULL, 2, "not a cllm tokenizer file (bad magic)"},

    /* token ids on stdin for decode */
    {"decode_word", "a word among the ids", a_run, NULL, NULL, NULL, "tokenizer decode @D/run/tokenizer.bin",
     "1\nabc\n", 2, "line 2: 'abc' is not a token id"},
    {"decode_two_ids_on_a_line", "two ids on one line", a_run, NULL, NULL, NULL,
     "tokenizer decode @D/run/tokenizer.bin", "12 13\n", 2, "line 1: '12 13' is not a token id"},
    {"decode_negative_id", "a negative id", a_run, NULL, NULL, NULL, "tokenizer decode @D/run/tokenizer.bin", "-1\n",
     2, "line 1: '-1' is not a token id"},
    {"decode_id_past_vocabulary", "an id past the vocabulary", a_run, NULL, NULL, NULL,
     "tokenizer decode @D/run/tokenizer.bin", "5\n300\n", 2, "line 2: token id 300 out of range (vocabulary 300)"},
    {"decode_huge_id", "an id of 14 digits", a_run, NULL, NULL, NULL, "tokenizer decode @D/run/tokenizer.bin",
     "99999999999999\n", 2, "line 1: '99999999999999' is not a token id"},
    {"decode_empty_line", "an empty line among the ids", a_run, NULL, NULL, NULL,
     "tokenizer decode @D/run/tokenizer.bin", "1\n\n2\n", 2, "line 2: '' is not a token id"},
    {"decode_hex_id", "a hexadecimal id", a_run, NULL, NULL, NULL, "tokenizer decode @D/run/tokenizer.bin", "0x10\n",
     2, "line 1: '0x10' is not a token id"},

    /* metrics.jsonl for plot */
    {"metrics_missing", "a folder without `metrics.jsonl`", an_empty_folder, NULL, NULL, NULL,
     "plot @D/empty -o @D/x.png", NULL, 2, "@D/empty/metrics.jsonl: No such file or directory"},
    {"metrics_empty", "an empty `metrics.jsonl`", metrics_empty, NULL, NULL, NULL, "plot @D/run -o @D/x.png", NULL, 2,
     "no loss values to plot"},
    {"metrics_not_json", "`metrics.jsonl` that is not JSON", metrics_not_json, NULL, NULL, NULL,
     "plot @D/run -o @D/x.png", NULL, 2, "metrics.jsonl:1: expected a JSON object"},
    {"metrics_cut_line", "`metrics.jsonl` with a line cut short before other lines", metrics_cut_line, NULL, NULL, NULL,
     "plot @D/run -o @D/x.png", NULL, 2, "metrics.jsonl:2: unterminated string"},
    {"metrics_without_loss", "`metrics.jsonl` without a loss", metrics_no_loss, NULL, NULL, NULL,
     "plot @D/run -o @D/x.png", NULL, 2, "no loss values to plot"},

    /* output folders and files */
    {"out_is_a_file", "`--out` naming a file", a_file, NULL, NULL, NULL, "train @C " TINY " --out @D/file", NULL, 2,
     "@D/file is not a folder"},
    {"out_under_a_file", "`--out` below a file", a_file, NULL, NULL, NULL, "train @C " TINY " --out @D/file/run", NULL,
     2, "cannot create folder @D/file/run: Not a directory"},
    {"out_unwritable", "`--out` in a folder that cannot be written (0500; a file when root)", unwritable_out, NULL,
     NULL, NULL, "train @C " TINY " --out @D/out/run", NULL, 2, "cannot create folder @D/out/run"},
    {"out_over_existing_run", "`--out` over a run that has a checkpoint", a_run, NULL, NULL, NULL,
     "train @C " TINY " --out @D/run", NULL, 2, "@D/run already holds a run"},
    {"out_folder_of_other_files", "`--out` into a folder of other files (not a run)", a_folder_of_other_files, NULL,
     NULL, NULL, "train @C " TINY " --out @D/mine", NULL, 2, "@D/mine is not empty and is not a cllm run folder"},
    {"resume_while_locked", "`--resume` while another train holds the folder", a_run, NULL, NULL, LOCK_HELD,
     "@D train --resume @D/run --steps 4", NULL, 2, "@D/run is in use by another cllm train"},
    {"out_while_locked", "`--out` over a folder another train holds", a_run, NULL, NULL, LOCK_HELD,
     "@D train @C " TINY " --out @D/run", NULL, 2, "@D/run is in use by another cllm train"},
    {"tokenizer_out_unwritable", "`tokenizer train -o` in a folder that cannot be written", unwritable_out, NULL, NULL,
     NULL, "tokenizer train @C -o @D/out/t.bin", NULL, 2, "cannot write @D/out/t.bin"},
    {"plot_out_unwritable", "`plot -o` in a folder that cannot be written", unwritable_out, NULL, NULL, NULL,
     "plot @D/run -o @D/out/x.png", NULL, 2, "cannot write @D/out/x.png"},
    {"export_gguf_unwritable", "`export --gguf` in a folder that cannot be written", unwritable_out, NULL, NULL,
     NULL, "export @D/run --gguf @D/out/m.gguf", NULL, 2, "cannot write @D/out/m.gguf"},
    {"out_full_disk", "`--out` on a full disk (a full 64 KiB tmpfs)", full_disk, full_disk_unavailable, NULL,
     FULL_DISK, "@D train @C " TINY " --out @D/full/run", NULL, 1, "No space left on device"},
    {"tokenizer_out_full_disk", "`tokenizer train -o` on a full disk", full_disk, full_disk_unavailable, NULL,
     FULL_DISK,
     "@D tokenizer train @C -o @D/full/t.bin", NULL, 1, "cannot write @D/full/t.bin: No space left on device"},
    {"export_gguf_full_disk", "`export --gguf` on a full disk", full_disk, full_disk_unavailable, NULL, FULL_DISK,
     "@D export @D/run --gguf @D/full/m.gguf", NULL, 1, "cannot write @D/full/m.gguf: No space left on device"},
    {"plot_out_full_disk", "`plot -o` on a full disk", full_disk, full_disk_unavailable, NULL, FULL_DISK,
     "@D plot @D/run -o @D/full/x.png", NULL, 1, "cannot write @D/full/x.png"},
};

static const size_t n_rows = sizeof rows / sizeof rows[0];

/* ---- running a row --------------------------------------------------------------------------- */

/* `text` with @D replaced by the row's folder and @C by the corpus (malloc'd). */
static char *expand(const char *text, const char *d) {
    size_t cap = strlen(text) * 2 + 64, n = 0;
    for (const char *p = text; *p; p++) cap += *p == '@' ? strlen(d) + strlen(corpus) : 0;
    char *out = malloc(cap);
    for (const char *p = text; *p; p++) {
        const char *with = p[0] == '@' && p[1] == 'D' ? d : p[0] == '@' && p[1] == 'C' ? corpus : NULL;
        if (with) {
            n += (size_t)sprintf(out + n, "%s", with);
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return out;
}

/* Signs that the process crashed or a runtime complained instead of cllm answering. */
static const char *crash_sign(const char *text) {
    static const char *const signs[] = {"Sanitizer", "runtime error", "Segmentation fault", "core dumped",
                                        "Assertion", "libgomp:", "OMP: ", "Aborted", NULL};
    for (int i = 0; signs[i]; i++)
        if (strstr(text, signs[i])) return signs[i];
    return NULL;
}

static int single_nonempty_line(const char *s) {
    size_t n = strlen(s);
    return n > 1 && s[n - 1] == '\n' && strchr(s, '\n') == s + n - 1 && s[0] != '\n';
}

/* Runs one row; returns 0 when it behaved, else 1 (saying why when `report`). */
static int check_row(const bad_input_row *row, int report) {
    char *d = join(workdir, row->name);
    if (mkdir(d, 0755) != 0) fail_msg("cannot create %s", d);
    const char *why_not = row->unavailable ? row->unavailable(d) : NULL;
    if (why_not) {
        print_message("[ SKIPPED  ] %s: %s\n", row->name, why_not);
        free(d);
        return 0;
    }
    if (row->setup) row->setup(d);
    char *stdin_path = NULL;
    if (row->stdin_text) {
        char *text = expand(row->stdin_text, d);
        stdin_path = write_file(d, "stdin", text, strlen(text));
        free(text);
    }
    /* timeout: a row that hangs fails (status 124) instead of stalling the suite. */
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "timeout 60 env OMP_NUM_THREADS=1 %s %s", row->env ? row->env : "",
             row->wrapper ? row->wrapper : "");
    char *args = expand(row->args, d), *phrase = expand(row->phrase, d);
    run_result r = run_cllm_with(prefix, args, stdin_path);
    const char *sign = crash_sign(r.out) ? crash_sign(r.out) : crash_sign(r.err);
    /* Rows that name --out @D/never must leave no run folder behind. */
    char *never = join(d, "never");
    struct stat st;
    int wrote = stat(never, &st) == 0;
    free(never);
    int bad = r.exit_code != row->exit_status || !single_nonempty_line(r.err) || !strstr(r.err, phrase) || sign ||
              wrote;
    if (bad && report)
        print_error("[  FAILED  ] %s: cllm %s\n  expected exit %d and one stderr line containing '%s'\n"
                    "  got exit %d, stderr (%d lines): %s  stdout: %.300s%s\n",
                    row->name, args, row->exit_status, phrase, r.exit_code, count_lines(r.err), r.err, r.out,
                    wrote ? "\n  and it wrote DIR/never" : "");
    run_result_free(&r);
    free(args);
    free(phrase);
    free(stdin_path);
    /* Put write permission back so that the folder can be removed when not root. */
    char *out = join(d, "out");
    chmod(out, 0755);
    free(out);
    free(d);
    return bad;
}

static void test_every_row(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < n_rows; i++) failures += check_row(&rows[i], 1);
    if (failures) fail_msg("%d of %zu bad-input rows misbehaved (see above)", failures, n_rows);
}

/* The checker itself: rows that misbehave on purpose must each be caught. */
static void test_checker_catches_misbehaviour(void **state) {
    (void)state;
    static const bad_input_row wrong[] = {
        {"wrong_status", "", NULL, NULL, NULL, NULL, "frob", NULL, 1, "unknown command"},
        {"wrong_phrase", "", NULL, NULL, NULL, NULL, "frob", NULL, 2, "no such phrase"},
        {"second_stderr_line", "", NULL, NULL, NULL, "sh -c 'echo first >&2; exec \"$0\" \"$@\"'", "frob", NULL, 2,
         "unknown command"},
        {"crash_on_stdout", "", NULL, NULL, NULL, "sh -c 'echo Segmentation fault; exec \"$0\" \"$@\"'", "frob",
         NULL, 2, "unknown command"},
        {"no_stderr", "", NULL, NULL, NULL, NULL, "--version", NULL, 0, ""},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        if (!check_row(&wrong[i], 0)) fail_msg("the checker let %s through", wrong[i].name);
}

static void test_row_names_are_unique(void **state) {
    (void)state;
    for (size_t i = 0; i < n_rows; i++)
        for (size_t j = i + 1; j < n_rows; j++)
            if (!strcmp(rows[i].name, rows[j].name)) fail_msg("two rows named %s", rows[i].name);
}

/* ---- the doc --------------------------------------------------------------------------------- */

static const char *const doc_header = "| Input | stderr contains | Exit | Row |\n|---|---|---|---|\n";

/* Markdown cell text: a '|' would end the cell. */
static void put_cell(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', out);
        fputc(*s, out);
    }
}

/* The phrase as the doc shows it: @D as DIR, @C as corpus.txt. */
static void put_phrase(FILE *out, const char *phrase) {
    for (const char *p = phrase; *p; p++) {
        if (p[0] == '@' && p[1] == 'D') fputs("DIR", out), p++;
        else if (p[0] == '@' && p[1] == 'C') fputs("corpus.txt", out), p++;
        else if (*p == '|') fputs("\\|", out);
        else fputc(*p, out);
    }
}

static void print_table(FILE *out) {
    fputs(doc_header, out);
    for (size_t i = 0; i < n_rows; i++) {
        fputs("| ", out);
        put_cell(out, rows[i].what);
        fputs(" | `", out);
        put_phrase(out, rows[i].phrase);
        fprintf(out, "` | %d | `%s` |\n", rows[i].exit_status, rows[i].name);
    }
}

/* The table in docs/RELIABILITY.md's "Bad input" section (malloc'd): from its header line to the first line that
 * does not start with '|'. */
static char *doc_table(void) {
    size_t n;
    char *doc = (char *)read_whole_file(CLLM_SOURCE_DIR "/docs/RELIABILITY.md", &n);
    if (!doc) fail_msg("cannot read docs/RELIABILITY.md");
    const char *section = strstr(doc, "\n## Bad input");
    const char *start = section ? strstr(section, "\n| Input |") : NULL;
    if (!start) {
        free(doc);
        return NULL;
    }
    start++;
    const char *end = start;
    while (*end == '|') {
        const char *nl = strchr(end, '\n');
        end = nl ? nl + 1 : end + strlen(end);
    }
    char *table = strndup(start, (size_t)(end - start));
    free(doc);
    return table;
}

static void test_doc_table_matches(void **state) {
    (void)state;
    char *expected = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&expected, &len);
    print_table(mem);
    fclose(mem);
    char *doc = doc_table();
    if (!doc || strcmp(doc, expected) != 0) {
        /* Name the first row that differs, so the fix is obvious. */
        const char *a = doc ? doc : "", *b = expected;
        while (*a && *a == *b) a++, b++;
        while (a > (doc ? doc : "") && a[-1] != '\n') a--, b--;
        fail_msg("docs/RELIABILITY.md's bad-input table is not test_bad_input.c's (regenerate it with "
                 "`build/test_bad_input --print-table`); first difference:\n  doc:  %.200s\n  test: %.200s",
                 a, b);
    }
    free(doc);
    free(expected);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--print-table")) {
        print_table(stdout);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_names_are_unique),
        cmocka_unit_test(test_checker_catches_misbehaviour),
        cmocka_unit_test(test_doc_table_matches),
        cmocka_unit_test(test_every_row),
    };
    return cmocka_run_group_tests(tests, setup_reference_run, teardown_reference_run);
}
