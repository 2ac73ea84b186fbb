/* The corpus reader: files and folders of raw text, read as bytes.
 *
 * Every document's bytes are concatenated into one buffer so that the
 * tokenizer and the dataset can work on a single allocation; each document
 * records where its bytes lie and which path they came from. */
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

/* A corpus of one document made from caller-provided bytes (copied): handy for
   tests and for tools that already hold the text. Empty bytes: CLLM_ERR_INPUT. */
cllm_status cllm_corpus_from_bytes(const void *bytes, size_t n, const char *name, cllm_corpus *out);

#endif
