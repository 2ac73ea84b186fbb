#include "fuzz_support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/base/common.h"

void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: property broken: %s\n", file, line, what);
    abort();
}

static char scratch[64];

/* The scratch folder is flat: its files, then itself. */
static void remove_scratch(void) {
    DIR *d = opendir(scratch);
    if (!d) return;
    char path[4096];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(scratch);
}

const char *fuzz_scratch_dir(void) {
    if (!scratch[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%.40s/cllm-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        FUZZ_ASSERT(mkdtemp(scratch) != NULL, "mkdtemp");
        atexit(remove_scratch);
    }
    return scratch;
}

const char *fuzz_write(const char *dir, const char *name, const void *data, size_t n) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!data) {
        unlink(path);
        return path;
    }
    FILE *f = fopen(path, "wb");
    FUZZ_ASSERT(f != NULL, "cannot create a scratch file");
    FUZZ_ASSERT(n == 0 || fwrite(data, 1, n, f) == n, "cannot write a scratch file");
    FUZZ_ASSERT(fclose(f) == 0, "cannot close a scratch file");
    return path;
}

int fuzz_split(const uint8_t *data, size_t n, const uint8_t **parts, size_t *sizes, int max_parts) {
    const size_t sep = sizeof FUZZ_SPLIT - 1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; k + 1 < max_parts && i + sep <= n; i++) {
        if (memcmp(data + i, FUZZ_SPLIT, sep) != 0) continue;
        parts[k] = data + start, sizes[k] = i - start, k++;
        start = i + sep;
        i = start - 1;
    }
    parts[k] = data + start, sizes[k] = n - start, k++;
    return k;
}

/* The tokenizer.bin layout (docs/TOKENIZER.md): a 24-byte header (28 in version 2) whose last
 * u32 is body_bytes, the body, then a u64 FNV-1a 64 of everything before. */
enum { header_bytes = 24, checksum_bytes = 8 };

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint8_t *fuzz_fix_tokenizer(const uint8_t *data, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    FUZZ_ASSERT(copy != NULL, "out of memory");
    if (n) memcpy(copy, data, n);
    /* Version 2 has one more header field: body_bytes comes 4 bytes later. */
    size_t header = header_bytes + (n > 8 && data[8] == 2 ? 4 : 0);
    if (n < header + checksum_bytes) return copy;
    if (!(data[n - 1] & 1)) put_le(copy + header - 4, n - header - checksum_bytes, 4);
    put_le(copy + n - checksum_bytes, cllm_fnv1a64(copy, n - checksum_bytes, CLLM_FNV1A64_OFFSET), 8);
    return copy;
}
