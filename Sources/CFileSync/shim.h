#ifndef CFILESYNC_SHIM_H
#define CFILESYNC_SHIM_H
#include <unistd.h>
#include <sys/syscall.h>

/* syncfs(2) flushes one filesystem (every file's data and metadata on it) in one call. Glibc
   declares it only under _GNU_SOURCE, which Swift's Glibc module is not built with, so it is
   reached through syscall(2). The file store's journal checkpoint uses it: one flush for every
   certificate file, index line and marker written since the last checkpoint. */
static inline int scep_syncfs(int fd) {
    return (int)syscall(SYS_syncfs, fd);
}
#endif
