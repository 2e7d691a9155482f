#pragma once
/* The seccomp filter every shell task runs under. It is compiled once, in the runner, with
 * libseccomp and exported as classic BPF; the task's child process only loads the finished
 * program (prctl(PR_SET_SECCOMP)) as the very last step before execve, so nothing between fork
 * and execve allocates or calls into libseccomp (the crun way).
 *
 * Default action: allow. Denied with EPERM (so a probe sees EPERM, not the kernel's EINVAL or
 * ENOSYS): the syscalls listed in sandbox.c and docs/security.md — ptrace and cross-process
 * memory access, mounts and namespaces, the kernel keyring, bpf, perf_event_open, userfaultfd,
 * io_uring, kexec, modules, reboot, swap, ioctl(TIOCSTI/TIOCLINUX). clone3 gets ENOSYS, so C
 * libraries fall back to clone, whose namespace flags the filter can see. System calls of
 * another architecture (32-bit int 0x80) kill the process. */
#include <linux/filter.h>

/* Compiles the filter. Call once before any task; 0 or a negative errno. */
int sbx_init(void);
/* The compiled program (valid after sbx_init), or NULL. Read-only and shared. */
const struct sock_fprog *sbx_filter(void);
/* The names of the denied syscalls, NULL-terminated (for docs and tests). */
extern const char *const sbx_denied[];
