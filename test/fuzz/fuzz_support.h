/* Shared glue for the libFuzzer targets in test/fuzz: a private scratch
 * folder, writing the fuzz input (or pieces of it) as files there, and the
 * tokenizer checksum fix-up. Every harness aborts (so libFuzzer reports a
 * crash) when a property the product promises does not hold. */
#ifndef CLLM_FUZZ_SUPPORT_H
#define CLLM_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* A folder of this process, made on first use and reused for every input
 * (files in it are overwritten, so nothing accumulates). */
const char *fuzz_scratch_dir(void);

/* dir/name := bytes; dir/name removed when data is NULL. Aborts on I/O errors
 * (the scratch folder is ours: a failure there is the harness's bug). Returns
 * the path in a static buffer valid until the next call. */
const char *fuzz_write(const char *dir, const char *name, const void *data, size_t n);

/* Splits data at FUZZ_SPLIT into at most max_parts pieces; returns the count.
 * Pieces point into data. The separator is a text line, so the seed script
 * can build multi-file inputs with printf. */
#define FUZZ_SPLIT "\n--cllm-fuzz-part--\n"
int fuzz_split(const uint8_t *data, size_t n, const uint8_t **parts, size_t *sizes, int max_parts);

/* A malloc'd copy of a tokenizer.bin image with its checksum recomputed, so
 * that mutations reach the field checks behind it. body_bytes (the length
 * field) is made consistent with the size too unless the input's last byte
 * (part of the checksum, overwritten anyway) is odd: both kinds of lie about
 * the length stay reachable. Images shorter than the fixed header are copied
 * unchanged. */
uint8_t *fuzz_fix_tokenizer(const uint8_t *data, size_t n);

/* Reports a broken property and aborts. */
#define FUZZ_ASSERT(cond, what) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, what))
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
