/* The corpus reader: files and folders of raw text, read as bytes.
 *
 * Two ways in. Streaming, for corpora of any size: cllm_corpus_list walks the
 * paths (names and sizes only, nothing read), then a cllm_corpus_reader reads
 * the listed files one document at a time, holding one file in memory, and
 * keeps the running FNV-1a hash of every document's bytes in order (the
 * corpus hash run.json records). In memory, for small inputs and tests:
 * cllm_corpus_load concatenates every document into one buffer, each
 * recording where its bytes lie and which path they came from; it is the
 * same walk and the same reader. */
#ifndef CLLM_DATA_CORPUS_H
#define CLLM_DATA_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

typedef struct { char *name; size_t offset, length; } cllm_doc;   /* bytes are corpus->bytes[offset..offset+length) */
typedef struct {
    uint8_t *bytes; size_t n_bytes;         /* all documents' bytes, concatenated */
    cllm_doc *docs; size_t n_docs;
    size_t n_files_read, n_binary_skipped;  /* binary = NUL byte in the first 8 KiB */
} cllm_corpus;

/* Files and folders (walked recursively, sorted byte-wise by name, hidden entries skipped,
   symlink loops detected, binary files skipped and counted). n_paths == 0: the built-in default corpus.
   Missing path, unreadable file, no text at all: CLLM_ERR_INPUT with a message naming the path. */
cllm_status cllm_corpus_load(const char *const *paths, int n_paths, cllm_corpus *out);
/* The same, abandoned soon after *stop becomes non-zero (checked between folder entries and between reads of at most
   64 MiB): CLLM_ERR_INTERRUPTED, *out empty. stop may be NULL. */
cllm_status cllm_corpus_load_stoppable(const char *const *paths, int n_paths, const cllm_stop_flag *stop,
                                       cllm_corpus *out);
void cllm_corpus_free(cllm_corpus *c);

/* The walk alone: the regular files under the paths, in reading order, and their sizes when listed. Named paths
   must exist (CLLM_ERR_INPUT naming it); what the files hold is only known when they are read. n_paths == 0: the
   built-in corpus (builtin = 1, no paths). A stop request: CLLM_ERR_INTERRUPTED, *out empty. */
typedef struct {
    char **paths; size_t n_files;
    uint64_t total_bytes; /* sum of the sizes when listed: for progress, never trusted */
    int builtin;
} cllm_corpus_files;
cllm_status cllm_corpus_list(const char *const *paths, int n_paths, const cllm_stop_flag *stop, cllm_corpus_files *out);
void cllm_corpus_files_free(cllm_corpus_files *f);

/* One document of a stream: bytes valid until the next read. bytes == NULL: the end. */
typedef struct { const uint8_t *bytes; size_t length; const char *name; } cllm_corpus_doc;
typedef struct {
    const cllm_corpus_files *files; size_t next;  /* next file to read */
    uint8_t *buf; size_t cap;                      /* the current file */
    const cllm_stop_flag *stop;
    uint64_t hash;                                 /* FNV-1a 64 of the documents read so far, concatenated */
    size_t n_bytes, n_docs, n_files_read, n_binary_skipped;
} cllm_corpus_reader;
void cllm_corpus_reader_init(cllm_corpus_reader *r, const cllm_corpus_files *files, const cllm_stop_flag *stop);
/* The next text document (binary and empty files are counted and passed over). An unreadable file:
   CLLM_ERR_INPUT naming it; a stop request (polled between files and between reads of at most 64 MiB):
   CLLM_ERR_INTERRUPTED. */
cllm_status cllm_corpus_reader_next(cllm_corpus_reader *r, cllm_corpus_doc *doc);
void cllm_corpus_reader_free(cllm_corpus_reader *r);
/* After the last document: CLLM_ERR_INPUT "no text in PATH (...)" if nothing held text, else CLLM_OK. */
cllm_status cllm_corpus_no_text(const cllm_corpus_reader *r, const char *const *paths, int n_paths);

/* A corpus of one document made from caller-provided bytes (copied): handy for
   tests and for tools that already hold the text. Empty bytes: CLLM_ERR_INPUT. */
cllm_status cllm_corpus_from_bytes(const void *bytes, size_t n, const char *name, cllm_corpus *out);

#endif
