/* Memory checks before big allocations.
 *
 * A model that cannot fit is the user's input being wrong for this machine
 * (a mistyped config.json or --embd), so it is refused up front as bad input
 * (exit 2) with the figures, rather than failing in malloc (exit 1) or, with
 * Linux's overcommit, being killed part-way through by the OOM killer. */
#ifndef CLLM_BASE_MEMORY_H
#define CLLM_BASE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

/* Bytes a new allocation can get now: MemAvailable from /proc/meminfo, lowered
 * to the room left under a cgroup v2 memory.max when one is set; without
 * /proc/meminfo, sysconf's available (else total) physical pages. 0 when
 * nothing tells. */
uint64_t cllm_memory_available(void);

/* The most memory this process has had resident so far (getrusage's
 * ru_maxrss), in bytes; 0 when the system does not tell. */
uint64_t cllm_memory_peak_rss(void);

/* "6.3 GB", "512.0 kB", "12 bytes": decimal units, one decimal. */
void cllm_format_bytes(double bytes, char *buf, size_t n);

/* CLLM_OK when `bytes` fit in cllm_memory_available() (or it is unknown);
 * otherwise CLLM_ERR_INPUT "<what> needs 6.3 GB, 2.1 GB available". */
cllm_status cllm_memory_check(double bytes, const char *what);

#endif
