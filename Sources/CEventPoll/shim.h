#ifndef CEVENTPOLL_SHIM_H
#define CEVENTPOLL_SHIM_H
#include <stdint.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* The FastCGI front door's epoll(7) calls. struct epoll_event is packed on x86-64
   (__EPOLL_PACKED), so Swift never sees it: events and a 64-bit tag go in and out as plain
   integers. accept4(2) is declared only under _GNU_SOURCE, which Swift's Glibc module is not
   built with, so it is reached through syscall(2) (as syncfs is in CFileSync). */

enum {
    SCEP_EPOLLIN = EPOLLIN,
    SCEP_EPOLLERR = EPOLLERR,
    SCEP_EPOLLHUP = EPOLLHUP,
    SCEP_EPOLLRDHUP = EPOLLRDHUP,
    SCEP_EPOLLET = EPOLLET,
    SCEP_EPOLL_CTL_ADD = EPOLL_CTL_ADD,
    SCEP_EPOLL_CTL_DEL = EPOLL_CTL_DEL,
    SCEP_EPOLL_CTL_MOD = EPOLL_CTL_MOD,
    SCEP_MAX_EVENTS = 64,
};

static inline int scep_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static inline int scep_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t tag) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = tag;
    return epoll_ctl(epfd, op, fd, &event);
}

/* Up to SCEP_MAX_EVENTS events: their tags and event bits into the two arrays. */
static inline int scep_epoll_wait(int epfd, uint64_t *tags, uint32_t *events, int timeout_ms) {
    struct epoll_event list[SCEP_MAX_EVENTS];
    int n = epoll_wait(epfd, list, SCEP_MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        tags[i] = list[i].data.u64;
        events[i] = list[i].events;
    }
    return n;
}

/* A connection from a listening socket that is non-blocking: the new descriptor is blocking
   (libfcgi reads it so) and close-on-exec. */
static inline int scep_accept(int fd) { return (int)syscall(SYS_accept4, fd, 0, 0, SOCK_CLOEXEC); }
#endif
