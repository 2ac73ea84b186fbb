/* Available memory and the up-front check (see cllm/train/memory.h). */
#include "cllm/base/memory.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The "MemAvailable:  123 kB" line, in bytes; 0 if absent. */
static uint64_t meminfo_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t bytes = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            bytes = (uint64_t)kb * 1024;
            break;
        }
    }
    fclose(f);
    return bytes;
}

/* One unsigned number from a file; 0 when missing or not a number (cgroup
 * files say "max" when there is no limit). */
static uint64_t read_u64_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
    return (uint64_t)v;
}

/* Room left under the cgroup v2 limit of this process's cgroup as the
 * container sees it (its namespace root); 0 when there is no limit. */
static uint64_t cgroup_room(void) {
    uint64_t limit = read_u64_file("/sys/fs/cgroup/memory.max");
    if (limit == 0) return 0;
    uint64_t used = read_u64_file("/sys/fs/cgroup/memory.current");
    return used < limit ? limit - used : 1;
}

static uint64_t sysconf_available(void) {
    long page = sysconf(_SC_PAGESIZE);
    long pages = sysconf(_SC_AVPHYS_PAGES);
    if (pages <= 0) pages = sysconf(_SC_PHYS_PAGES);
    return page > 0 && pages > 0 ? (uint64_t)page * (uint64_t)pages : 0;
}

uint64_t cllm_memory_available(void) {
    uint64_t avail = meminfo_available();
    if (avail == 0) avail = sysconf_available();
    uint64_t room = cgroup_room();
    if (room > 0 && (avail == 0 || room < avail)) avail = room;
    return avail;
}

uint64_t cllm_memory_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024; /* kilobytes on Linux */
}

void cllm_format_bytes(double bytes, char *buf, size_t n) {
    static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    if (!(bytes >= 1000.0)) {
        snprintf(buf, n, "%.0f bytes", bytes);
        return;
    }
    int u = 0;
    bytes /= 1000.0;
    while (bytes >= 1000.0 && u + 1 < (int)(sizeof units / sizeof units[0])) {
        bytes /= 1000.0;
        u++;
    }
    snprintf(buf, n, "%.1f %s", bytes, units[u]);
}

cllm_status cllm_memory_check(double bytes, const char *what) {
    uint64_t avail = cllm_memory_available();
    if (avail == 0 || bytes <= (double)avail) return CLLM_OK;
    char need[32], have[32];
    cllm_format_bytes(bytes, need, sizeof need);
    cllm_format_bytes((double)avail, have, sizeof have);
    return cllm_fail(CLLM_ERR_INPUT, "%s needs %s, %s available", what, need, have);
}
