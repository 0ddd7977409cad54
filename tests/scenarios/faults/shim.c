/* Fault injection for tests/scenarios/faults.rs, loaded into the real `claude-code-auth` process with
 * LD_PRELOAD. CCAUTH_FAULT chooses the fault:
 *   fsync-eio       every fsync and fdatasync fails with EIO (a failing disk);
 *   dirsync-eio     fsync of a directory fails with EIO (files sync);
 *   kill-at-rename  the process kills itself with SIGKILL when it is about to rename a file over
 *                   one named `.credentials.json` (the instant between a complete temporary
 *                   file and its rename).
 * Anything else: no fault. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int fsync(int fd) {
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

int rename(const char *from, const char *to) {
    if (fault("kill-at-rename") && ends_with(to, "/.credentials.json")) {
        kill(getpid(), SIGKILL);
    }
    int (*real)(const char *, const char *) =
        (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    return real(from, to);
}
