#ifndef CSYNCSHIMS_H
#define CSYNCSHIMS_H

/// pipe2(2) with O_CLOEXEC | O_NONBLOCK, which Glibc's Swift module does not export.
/// Returns 0 or -1 with errno set, like pipe2.
int csync_pipe_cloexec_nonblock(int fds[2]);

/// Names the calling thread (visible in /proc/PID/task/*/comm). Truncates to 15 bytes.
void csync_set_thread_name(const char *name);

/// syncfs(2): commits every cached write of the filesystem holding `fd`. Returns 0 or -1 with errno.
int csync_syncfs(int fd);

/// Makes SIGABRT fatal even when another process sends it (systemd's watchdog does, with
/// kill(2)): the handler installed before (the Swift runtime's crash handler, which prints a
/// backtrace) still runs first, then the process dies by SIGABRT. Without this, the Swift
/// runtime's handler returns after the backtrace and, for a signal sent with kill(2), the
/// program simply goes on running. Returns 0 or -1 with errno set, like sigaction.
int csync_make_sigabrt_fatal(void);

#endif
