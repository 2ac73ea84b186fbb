/* killshim: an LD_PRELOAD library for the crash-injection test. It counts
 * the file-system steps a process makes (rename, fsync, unlink, mkdir, ...)
 * and SIGKILLs the process just before the k-th one, so a test can stop a
 * save at every point between two steps and check what a crash leaves.
 *
 * Environment (deliberately not CLLM_*: cllm rejects unknown CLLM_* names):
 *   KILLSHIM_AT=k     SIGKILL before the k-th counted call (1-based); unset
 *                     or 0: never kill, only count.
 *   KILLSHIM_OPS=...  comma-separated calls to count (default: all of them):
 *                     rename renameat renameat2 fsync fdatasync syncfs unlink
 *                     unlinkat rmdir remove symlink symlinkat link linkat
 *                     mkdir mkdirat
 *   KILLSHIM_LOG=F    append one line per counted call to F: "k call path"
 *                     (the killed one ends with " KILL"), so a run in counting
 *                     mode lists every kill point and a failure names its step.
 *
 * Only calls that go through the dynamic linker are seen: glibc's own
 * internal calls (stdio's write and close, remove()'s unlink) are not, which
 * is why remove is counted by itself. A kill in the middle of a write is the
 * job of the test's kills at random instants. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long kill_at = -1;        /* -1: not read yet; 0: never */
static const char *counted_ops;  /* NULL: every call */
static const char *log_path;
static long calls;

static void read_settings(void) {
    if (kill_at >= 0) return;
    const char *at = getenv("KILLSHIM_AT");
    long k = at ? strtol(at, NULL, 10) : 0;
    counted_ops = getenv("KILLSHIM_OPS");
    log_path = getenv("KILLSHIM_LOG");
    kill_at = k > 0 ? k : 0;
}

/* Whether `op` is in the comma-separated KILLSHIM_OPS (a whole word). */
static int op_counted(const char *op) {
    if (!counted_ops || !*counted_ops) return 1;
    size_t n = strlen(op);
    for (const char *p = counted_ops; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, op, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* One line per call, written with a single write(2) on an O_APPEND file so
 * that lines of several threads or processes never interleave. errno is
 * preserved: the intercepted call must see the caller's errno untouched. */
static void log_call(long k, const char *op, const char *path, int killing) {
    if (!log_path) return;
    int saved = errno;
    char line[4352];
    int n = snprintf(line, sizeof line, "%ld %s %s%s\n", k, op, path ? path : "-", killing ? " KILL" : "");
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
    errno = saved;
}

/* What an fd names, for the log: fsync has no path of its own. */
static const char *fd_path(int fd, char *buf, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int saved = errno;
    ssize_t n = readlink(link, buf, size - 1);
    errno = saved;
    if (n < 0) return "?";
    buf[n] = '\0';
    return buf;
}

/* Called before every intercepted call: counts it and, at the chosen one,
 * kills the process before the call happens. */
static void step(const char *op, const char *path) {
    read_settings();
    if (!op_counted(op)) return;
    long k = __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
    int killing = kill_at > 0 && k == kill_at;
    log_call(k, op, path, killing);
    if (killing) kill(getpid(), SIGKILL);
}

static void step_fd(const char *op, int fd) {
    char buf[4096];
    step(op, fd_path(fd, buf, sizeof buf));
}

/* dlsym returns void *; a function pointer is copied out of it bytewise so
 * that no conversion between object and function pointers is written. */
static void *next_symbol(const char *name) {
    void *sym = dlsym(RTLD_NEXT, name);
    if (!sym) {
        fprintf(stderr, "killshim: %s not found\n", name);
        _exit(127);
    }
    return sym;
}

typedef int path2_fn(const char *, const char *);
typedef int at2_fn(int, const char *, int, const char *);
typedef int at2_flags_fn(int, const char *, int, const char *, unsigned int);
typedef int at2_iflags_fn(int, const char *, int, const char *, int);
typedef int fd_fn(int);
typedef int path_fn(const char *);
typedef int at_flags_fn(int, const char *, int);
typedef int symlinkat_fn(const char *, int, const char *);
typedef int mkdir_fn(const char *, mode_t);
typedef int mkdirat_fn(int, const char *, mode_t);

/* The next definition of the call: looked up once, then cached. */
#define REAL(type, name, var)              \
    static type *var;                      \
    if (!var) {                            \
        void *sym_ = next_symbol(name);    \
        memcpy(&var, &sym_, sizeof var);   \
    }

int rename(const char *from, const char *to) {
    REAL(path2_fn, "rename", real);
    step("rename", to);
    return real(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(at2_fn, "renameat", real);
    step("renameat", to);
    return real(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags) {
    REAL(at2_flags_fn, "renameat2", real);
    step("renameat2", to);
    return real(fromfd, from, tofd, to, flags);
}

int fsync(int fd) {
    REAL(fd_fn, "fsync", real);
    step_fd("fsync", fd);
    return real(fd);
}

int fdatasync(int fd) {
    REAL(fd_fn, "fdatasync", real);
    step_fd("fdatasync", fd);
    return real(fd);
}

int syncfs(int fd) {
    REAL(fd_fn, "syncfs", real);
    step_fd("syncfs", fd);
    return real(fd);
}

int unlink(const char *path) {
    REAL(path_fn, "unlink", real);
    step("unlink", path);
    return real(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(at_flags_fn, "unlinkat", real);
    step("unlinkat", path);
    return real(dirfd, path, flags);
}

int rmdir(const char *path) {
    REAL(path_fn, "rmdir", real);
    step("rmdir", path);
    return real(path);
}

int remove(const char *path) {
    REAL(path_fn, "remove", real);
    step("remove", path);
    return real(path);
}

int symlink(const char *target, const char *path) {
    REAL(path2_fn, "symlink", real);
    step("symlink", path);
    return real(target, path);
}

int symlinkat(const char *target, int dirfd, const char *path) {
    REAL(symlinkat_fn, "symlinkat", real);
    step("symlinkat", path);
    return real(target, dirfd, path);
}

int link(const char *from, const char *to) {
    REAL(path2_fn, "link", real);
    step("link", to);
    return real(from, to);
}

int linkat(int fromfd, const char *from, int tofd, const char *to, int flags) {
    REAL(at2_iflags_fn, "linkat", real);
    step("linkat", to);
    return real(fromfd, from, tofd, to, flags);
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir_fn, "mkdir", real);
    step("mkdir", path);
    return real(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat_fn, "mkdirat", real);
    step("mkdirat", path);
    return real(dirfd, path, mode);
}
