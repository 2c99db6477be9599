#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "CSyncShims.h"

int csync_pipe_cloexec_nonblock(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

void csync_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, 15);
    truncated[15] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int csync_syncfs(int fd) {
    return syncfs(fd);
}

static struct sigaction csync_previous_abort;

static void csync_abort_handler(int signo, siginfo_t *info, void *context) {
    // The handler installed before ours: the Swift runtime's backtracer prints where every
    // thread is (the point of a watchdog abort), resets the fatal signals to SIG_DFL and returns.
    if (csync_previous_abort.sa_flags & SA_SIGINFO) {
        if (csync_previous_abort.sa_sigaction != NULL) csync_previous_abort.sa_sigaction(signo, info, context);
    } else if (csync_previous_abort.sa_handler != SIG_DFL && csync_previous_abort.sa_handler != SIG_IGN) {
        csync_previous_abort.sa_handler(signo);
    }
    // Then die by the signal: default action, unblocked, raised again (all async-signal-safe).
    struct sigaction fatal;
    memset(&fatal, 0, sizeof fatal);
    fatal.sa_handler = SIG_DFL;
    sigemptyset(&fatal.sa_mask);
    sigaction(SIGABRT, &fatal, NULL);
    sigset_t abort_only;
    sigemptyset(&abort_only);
    sigaddset(&abort_only, SIGABRT);
    pthread_sigmask(SIG_UNBLOCK, &abort_only, NULL);
    raise(SIGABRT);
    _exit(128 + SIGABRT);
}

int csync_make_sigabrt_fatal(void) {
    struct sigaction current;
    if (sigaction(SIGABRT, NULL, &current) != 0) return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == csync_abort_handler) return 0;
    csync_previous_abort = current;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = csync_abort_handler;
    // Keep the previous handler's alternate stack and mask; SA_SIGINFO for the chained call.
    action.sa_flags = SA_SIGINFO | (current.sa_flags & SA_ONSTACK);
    action.sa_mask = current.sa_mask;
    return sigaction(SIGABRT, &action, NULL);
}
