/* Run folders: the writer's lock and the checkpoint commit protocol
 * (include/cllm/train/runfolder.h, docs/RELIABILITY.md). */
#include "cllm/train/runfolder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cllm/data/hf_tokenizer.h"

/* The files a checkpoint folder holds, each reachable from DIR by a fixed
 * link through `latest`. */
static const char *const checkpoint_files[] = {"optimizer.safetensors", "model.safetensors", "config.json"};
enum { N_CHECKPOINT_FILES = sizeof checkpoint_files / sizeof checkpoint_files[0] };

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory"); }

static cllm_status fsync_folder(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cllm_fail(CLLM_ERR_INTERNAL, "cannot open folder %s: %s", dir, strerror(errno));
    int failed = fsync(fd) != 0 && errno != EINVAL; /* EINVAL: the file system cannot sync folders */
    int e = errno;
    close(fd);
    return failed ? cllm_fail(CLLM_ERR_INTERNAL, "cannot sync folder %s: %s", dir, strerror(e)) : CLLM_OK;
}

/* ---- the lock ------------------------------------------------------------------ */

static long holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n > 0 ? strtol(buf, NULL, 10) : 0;
}

cllm_status cllm_run_lock_acquire(const char *dir, cllm_run_lock *lock) {
    lock->fd = -1;
    lock->path = cllm_path_join(dir, CLLM_RUN_LOCK_FILE);
    if (!lock->path) return oom();
    int fd = open(lock->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(lock->path);
        lock->path = NULL;
        return cllm_fail(e == ENOSPC || e == EIO ? CLLM_ERR_INTERNAL : CLLM_ERR_INPUT,
                         "cannot use run folder %s: %s", dir, strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        free(lock->path);
        lock->path = NULL;
        if (e != EWOULDBLOCK) return cllm_fail(CLLM_ERR_INTERNAL, "cannot lock run folder %s: %s", dir, strerror(e));
        if (pid > 0)
            return cllm_fail(CLLM_ERR_INPUT, "%s is in use by another cllm train (pid %ld): wait for it or stop it", dir,
                             pid);
        return cllm_fail(CLLM_ERR_INPUT, "%s is in use by another cllm train: wait for it or stop it", dir);
    }
    /* The pid is only for the message above: the lock is the flock itself. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* Nothing depends on the pid being there; a full disk shows up at the first real write. */
    }
    lock->fd = fd;
    return CLLM_OK;
}

void cllm_run_lock_release(cllm_run_lock *lock, int remove_file) {
    if (lock->fd >= 0) {
        if (remove_file && lock->path) unlink(lock->path);
        close(lock->fd);
    }
    free(lock->path);
    lock->fd = -1;
    lock->path = NULL;
}

/* ---- what a folder holds ------------------------------------------------------------ */

static int lexists(const char *dir, const char *name, struct stat *sb) {
    char *p = cllm_path_join(dir, name);
    int ok = p && lstat(p, sb) == 0;
    free(p);
    return ok;
}

static int is_temporary(const char *name) { return strstr(name, ".tmp.") != NULL; }
static int is_checkpoint_name(const char *name) { return strncmp(name, "checkpoint-", 11) == 0; }

/* /proc/locks names each flock by its file's device and inode
 * ("1: FLOCK  ADVISORY  WRITE 4242 fe:00:10978392 0 EOF"): reading it
 * touches no lock, so a writer starting at that moment is never refused.
 * Without /proc, a shared lock taken and dropped at once says the same. */
int cllm_run_lock_held(const char *dir) {
    char *path = cllm_path_join(dir, CLLM_RUN_LOCK_FILE);
    struct stat sb;
    int exists = path && stat(path, &sb) == 0;
    if (!exists) {
        free(path);
        return 0;
    }
    FILE *locks = fopen("/proc/locks", "r");
    if (locks) {
        char want[64], line[256];
        snprintf(want, sizeof want, " %02x:%02x:%llu ", major(sb.st_dev), minor(sb.st_dev),
                 (unsigned long long)sb.st_ino);
        int held = 0;
        while (!held && fgets(line, sizeof line, locks)) held = strstr(line, "FLOCK") && strstr(line, want);
        fclose(locks);
        free(path);
        return held;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) return 0;
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int cllm_run_has_checkpoint(const char *dir) {
    struct stat sb;
    char *latest = cllm_path_join(dir, CLLM_RUN_LATEST);
    int committed = latest && stat(latest, &sb) == 0 && S_ISDIR(sb.st_mode);
    free(latest);
    if (committed) return 1;
    /* The earlier layout: a plain model file, not a link into a missing `latest`. */
    return lexists(dir, "model.safetensors", &sb) && S_ISREG(sb.st_mode);
}

char *cllm_run_checkpoint_dir(const char *dir) {
    struct stat sb;
    if (lexists(dir, CLLM_RUN_LATEST, &sb)) return cllm_path_join(dir, CLLM_RUN_LATEST);
    return strdup(dir);
}

int cllm_run_folder_is_ours(const char *dir) {
    static const char *const ours[] = {"run.json",          "tokenizer.bin",       "metrics.jsonl",
                                       "loss.png",          CLLM_RUN_LOCK_FILE,    CLLM_RUN_LATEST,
                                       "model.safetensors", "config.json",         "optimizer.safetensors",
                                       "optimizer.prev.safetensors"};
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    int only_ours = 1;
    for (struct dirent *e; only_ours && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        int known = is_temporary(e->d_name) || is_checkpoint_name(e->d_name);
        for (size_t i = 0; !known && i < sizeof ours / sizeof ours[0]; i++) known = strcmp(e->d_name, ours[i]) == 0;
        for (int i = 0; !known && i < CLLM_HF_TOKENIZER_N_FILES; i++)
            known = strcmp(e->d_name, cllm_hf_tokenizer_files[i]) == 0;
        only_ours = known;
    }
    closedir(d);
    return only_ours;
}

/* The name `latest` points to, in buf; "" when there is none. */
static void committed_name(const char *dir, char *buf, size_t n) {
    buf[0] = '\0';
    char *latest = cllm_path_join(dir, CLLM_RUN_LATEST);
    if (!latest) return;
    ssize_t len = readlink(latest, buf, n - 1);
    buf[len > 0 ? len : 0] = '\0';
    free(latest);
}

/* ---- removing leftovers --------------------------------------------------------------- */

/* A checkpoint folder holds files only; anything else in it (not ours) keeps
 * the folder, which is then merely left behind. */
static void remove_checkpoint_folder(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *p = cllm_path_join(path, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

static void remove_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_temporary(e->d_name)) continue;
        char *p = cllm_path_join(dir, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && !S_ISDIR(sb.st_mode)) unlink(p);
        free(p);
    }
    closedir(d);
}

/* Every checkpoint-* folder but `keep` ("" keeps none). */
static void remove_other_checkpoints(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_checkpoint_name(e->d_name) || strcmp(e->d_name, keep) == 0) continue;
        char *p = cllm_path_join(dir, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_checkpoint_folder(p);
        free(p);
    }
    closedir(d);
}

/* path becomes a symbolic link to target by one rename (a link made beside
 * it first), so it is at every instant either what it was or the link. */
static cllm_status replace_with_link(const char *path, const char *target) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) == 0 && rename(tmp, path) == 0) return CLLM_OK;
    cllm_status st = cllm_fail(CLLM_ERR_INTERNAL, "cannot link %s to %s: %s (a run folder needs a file system with "
                               "symbolic links)", path, target, strerror(errno));
    unlink(tmp);
    return st;
}

/* DIR/name -> latest/name, replaced by a rename when it is anything else
 * (the earlier layout's plain file, a missing link after a crash). */
static cllm_status ensure_top_level_link(const char *dir, const char *name) {
    char target[256];
    snprintf(target, sizeof target, "%s/%s", CLLM_RUN_LATEST, name);
    char *path = cllm_path_join(dir, name);
    if (!path) return oom();
    char have[256];
    ssize_t len = readlink(path, have, sizeof have - 1);
    if (len > 0 && (size_t)len == strlen(target) && memcmp(have, target, (size_t)len) == 0) {
        free(path);
        return CLLM_OK;
    }
    cllm_status st = replace_with_link(path, target);
    free(path);
    return st;
}

static cllm_status ensure_top_level_links(const char *dir) {
    cllm_status st = CLLM_OK;
    for (int i = 0; st == CLLM_OK && i < N_CHECKPOINT_FILES; i++) st = ensure_top_level_link(dir, checkpoint_files[i]);
    return st;
}

/* Before the first commit the links dangle, which readers see as "no
 * checkpoint yet"; made then, they need no step at the commit itself. The
 * earlier layout's plain files stay until the commit: they are its state. */
static cllm_status make_missing_top_level_links(const char *dir) {
    cllm_status st = CLLM_OK;
    for (int i = 0; st == CLLM_OK && i < N_CHECKPOINT_FILES; i++) {
        struct stat sb;
        if (!lexists(dir, checkpoint_files[i], &sb)) st = ensure_top_level_link(dir, checkpoint_files[i]);
    }
    return st;
}

cllm_status cllm_run_remove_leftovers(const char *dir) {
    char keep[256];
    committed_name(dir, keep, sizeof keep);
    remove_temporaries(dir);
    remove_other_checkpoints(dir, keep);
    if (keep[0] == '\0') return fsync_folder(dir);
    char *ckpt = cllm_path_join(dir, keep);
    if (!ckpt) return oom();
    remove_temporaries(ckpt);
    free(ckpt);
    /* A crash during a commit may have left a top-level link unmade. */
    cllm_status st = ensure_top_level_links(dir);
    return st == CLLM_OK ? fsync_folder(dir) : st;
}

/* ---- the save ------------------------------------------------------------------------------ */

static void checkpoint_name(int64_t step, char *buf, size_t n) { snprintf(buf, n, "checkpoint-%08" PRId64, step); }

cllm_status cllm_run_checkpoint_begin(const char *dir, int64_t step, char **ckpt_dir) {
    *ckpt_dir = NULL;
    char name[64], keep[256];
    checkpoint_name(step, name, sizeof name);
    committed_name(dir, keep, sizeof keep);
    if (strcmp(name, keep) == 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "%s: the checkpoint of step %" PRId64 " is already committed", dir, step);
    cllm_status st = make_missing_top_level_links(dir);
    if (st != CLLM_OK) return st;
    char *path = cllm_path_join(dir, name);
    if (!path) return oom();
    remove_checkpoint_folder(path); /* a dead save's, if any */
    if (mkdir(path, 0755) != 0) {
        int e = errno;
        st = cllm_fail(e == ENOSPC || e == EIO || e == EDQUOT ? CLLM_ERR_INTERNAL : CLLM_ERR_INPUT,
                                   "cannot create folder %s: %s", path, strerror(e));
        free(path);
        return st;
    }
    *ckpt_dir = path;
    return CLLM_OK;
}

cllm_status cllm_run_checkpoint_commit(const char *dir, int64_t step) {
    char name[64];
    checkpoint_name(step, name, sizeof name);
    char *ckpt = cllm_path_join(dir, name);
    char *latest = cllm_path_join(dir, CLLM_RUN_LATEST);
    cllm_status st = ckpt && latest ? CLLM_OK : oom();
    if (st == CLLM_OK) st = fsync_folder(ckpt);
    /* The commit: before this rename the folder is the previous checkpoint, after it the new one. */
    if (st == CLLM_OK) st = replace_with_link(latest, name);
    if (st == CLLM_OK) st = fsync_folder(dir);
    if (st == CLLM_OK) st = ensure_top_level_links(dir);
    if (st == CLLM_OK) {
        char *prev = cllm_path_join(dir, "optimizer.prev.safetensors");
        if (prev) unlink(prev);
        free(prev);
        remove_other_checkpoints(dir, name);
        st = fsync_folder(dir);
    }
    free(ckpt);
    free(latest);
    return st;
}
