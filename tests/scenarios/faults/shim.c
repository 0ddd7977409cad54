/* Fault injection for tests/scenarios/faults.rs and stopping.rs, loaded into the real
 * `claude-code-auth` process with LD_PRELOAD. CCAUTH_FAULT chooses the fault:
 *   fsync-eio       every fsync and fdatasync fails with EIO (a failing disk);
 *   dirsync-eio     fsync of a directory fails with EIO (files sync);
 *   kill-at-rename  the process kills itself with SIGKILL when it is about to rename a file over
 *                   one named `.credentials.json` (the instant between a complete temporary
 *                   file and its rename);
 *   refuse-credential-write
 *                   renaming over a file named `.credentials.json` fails with EIO and opening
 *                   one for writing with EROFS (a medium that refuses the write after the
 *                   refresh: the rotated login must go to a rescue file).
 * CCAUTH_PAUSE holds the process (the calling thread; signals are still delivered) for
 * CCAUTH_PAUSE_MS milliseconds (default 2000) the first time it reaches a point, after creating
 * the file CCAUTH_PAUSE_MARK names, so a test knows it is there:
 *   fill     before the document is written from the start of a `.ccauth-*.tmp` file;
 *   fsync    before that file is fsynced;
 *   rename   before a file is renamed over one named `.credentials.json`;
 *   dirsync  before a directory is fsynced (after the rename);
 *   owner    after the owner record is renamed into place beside the CLI's refresh lock
 *            (both refresh locks held, nothing sent yet).
 * Anything else: no fault. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int fault(const char *name) {
    const char *chosen = getenv("CCAUTH_FAULT");
    return chosen != NULL && strcmp(chosen, name) == 0;
}

static int ends_with(const char *text, const char *suffix) {
    size_t t = strlen(text), s = strlen(suffix);
    return t >= s && strcmp(text + t - s, suffix) == 0;
}

static int is_directory(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether `fd` is a temporary file of ours (`.ccauth-<pid>-<n>.tmp`). */
static int is_temp_file(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = 0;
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    return strncmp(name, ".ccauth-", 8) == 0 && ends_with(name, ".tmp");
}

static int paused = 0;

/* Hold here if CCAUTH_PAUSE names `point` and no pause happened yet. */
static void pause_at(const char *point) {
    const char *chosen = getenv("CCAUTH_PAUSE");
    if (chosen == NULL || strcmp(chosen, point) != 0 || __atomic_exchange_n(&paused, 1, __ATOMIC_SEQ_CST)) {
        return;
    }
    const char *mark = getenv("CCAUTH_PAUSE_MARK");
    if (mark != NULL) {
        int fd = open(mark, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0) {
            close(fd);
        }
    }
    const char *ms = getenv("CCAUTH_PAUSE_MS");
    long millis = ms != NULL ? atol(ms) : 2000;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += millis / 1000;
    until.tv_nsec += (millis % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    if (offset == 0 && is_temp_file(fd)) {
        pause_at("fill");
    }
    ssize_t (*real)(int, const void *, size_t, off_t) =
        (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    return real(fd, buf, count, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    return pwrite64(fd, buf, count, offset);
}

int fsync(int fd) {
    if (is_directory(fd)) {
        pause_at("dirsync");
    } else if (is_temp_file(fd)) {
        pause_at("fsync");
    }
    if (fault("fsync-eio") || (fault("dirsync-eio") && is_directory(fd))) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (fault("fsync-eio")) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

/* Whether a write of the credential file is to be refused. */
static int refused(const char *path, int flags) {
    return fault("refuse-credential-write") && (flags & (O_WRONLY | O_RDWR)) &&
           ends_with(path, "/.credentials.json");
}

/* The real `symbol` (open or open64) on `path`, unless the write is to be refused. */
static int open_with(const char *symbol, const char *path, int flags, mode_t mode) {
    if (refused(path, flags)) {
        errno = EROFS;
        return -1;
    }
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, symbol);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = (mode_t)va_arg(args, int);
        va_end(args);
    }
    return open_with("open64", path, flags, mode);
}

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = (mode_t)va_arg(args, int);
        va_end(args);
    }
    return open_with("open", path, flags, mode);
}

int rename(const char *from, const char *to) {
    if (ends_with(to, "/.credentials.json")) {
        pause_at("rename");
    }
    if (fault("refuse-credential-write") && ends_with(to, "/.credentials.json")) {
        errno = EIO;
        return -1;
    }
    if (fault("kill-at-rename") && ends_with(to, "/.credentials.json")) {
        kill(getpid(), SIGKILL);
    }
    int (*real)(const char *, const char *) =
        (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    int renamed = real(from, to);
    if (renamed == 0 && ends_with(to, "/.oauth_refresh.lock.owner")) {
        int saved = errno;
        pause_at("owner");
        errno = saved;
    }
    return renamed;
}
