/* The tasks' seccomp filter. Why each entry is denied is in docs/security.md ("Shell task
 * sandbox"); keep the two lists in step. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

const char *const sbx_denied[] = {
	/* other processes' memory: the runner's environ and secrets, other tasks */
	"ptrace",
	"process_vm_readv",
	"process_vm_writev",
	"kcmp",
	"pidfd_getfd",
	/* file system namespaces and mounts */
	"mount",
	"umount2",
	"pivot_root",
	"chroot",
	"move_mount",
	"open_tree",
	"fsopen",
	"fsconfig",
	"fsmount",
	"fspick",
	"mount_setattr",
	/* namespaces: user namespaces open kernel code paths meant for root */
	"unshare",
	"setns",
	/* the kernel keyring is not namespaced */
	"keyctl",
	"add_key",
	"request_key",
	/* large kernel attack surfaces */
	"bpf",
	"perf_event_open",
	"userfaultfd",
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
	/* the host itself */
	"kexec_load",
	"kexec_file_load",
	"init_module",
	"finit_module",
	"delete_module",
	"reboot",
	"swapon",
	"swapoff",
	"acct",
	"quotactl",
	"open_by_handle_at",
	"iopl",
	"ioperm",
	"syslog",
	"vhangup",
	"lookup_dcookie",
	"uselib",
	NULL,
};

static struct sock_fprog sbx_prog;

static int sbx_deny(scmp_filter_ctx ctx, const char *name, int err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr < 0) /* not a syscall on this architecture */
		return 0;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)err), nr, 0);
}

static int sbx_build(scmp_filter_ctx ctx)
{
	static const unsigned long ns_flags[] = {
		CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
		CLONE_NEWUTS,  CLONE_NEWIPC, CLONE_NEWCGROUP,
	};
	int r;

	for (size_t i = 0; sbx_denied[i]; i++)
		if ((r = sbx_deny(ctx, sbx_denied[i], EPERM)) < 0)
			return r;
	/* clone(2) with any namespace flag, the way unshare(2) would. */
	for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
		if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					  SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]))) <
		    0)
			return r;
	/* clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc and musl
	 * fall back to clone. */
	if ((r = sbx_deny(ctx, "clone3", ENOSYS)) < 0)
		return r;
	/* Faking terminal input. The kernel compares only the low 32 bits of the command, so the
	 * filter masks the same way (high bits set must not slip past). */
	if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI))) < 0 ||
	    (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX))) < 0)
		return r;
	return 0;
}

int sbx_init(void)
{
	scmp_filter_ctx ctx;
	struct sock_filter *data = NULL;
	size_t len = 0, cap = 64 * 1024;
	int p[2] = { -1, -1 }, r;

	if (sbx_prog.filter)
		return 0;
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	/* Loading is ours (in the child, after our own PR_SET_NO_NEW_PRIVS). */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
	    (r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
	    (r = sbx_build(ctx)) < 0)
		goto out;
	/* libseccomp 2.5 exports to an fd only. A pipe rather than a memfd: the runner's AppArmor
	 * profile allows no file writes outside /tmp. Non-blocking, so a filter larger than the
	 * pipe fails instead of hanging. */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		goto out;
	}
	(void)fcntl(p[1], F_SETPIPE_SZ, (int)cap);
	if ((r = seccomp_export_bpf(ctx, p[1])) < 0)
		goto out;
	close(p[1]);
	p[1] = -1;
	data = malloc(cap);
	if (!data) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(p[0], (char *)data + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap)
			break;
	}
	if (len == 0 || len == cap || len % sizeof(struct sock_filter) != 0 ||
	    len / sizeof(struct sock_filter) > 0xffff) {
		r = -EINVAL;
		goto out;
	}
	sbx_prog.len = (unsigned short)(len / sizeof(struct sock_filter));
	sbx_prog.filter = data;
	data = NULL;
	r = 0;
out:
	free(data);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	seccomp_release(ctx);
	return r;
}

const struct sock_fprog *sbx_filter(void) { return sbx_prog.filter ? &sbx_prog : NULL; }
