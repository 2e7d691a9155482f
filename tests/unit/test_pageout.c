/* pageout: the executable's read-only pages are handed back after start, and code still runs. */
#include "pageout.h"
#include "tap.h"

#include <errno.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

/* Resident KiB of the executable's mappings that are not writable, from /proc/self/smaps. */
static long exe_ro_rss_kib(void)
{
	char exe[4096], line[4352], perms[8], path[4096];
	long kib = 0, v;
	int ours = 0;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	FILE *f = fopen("/proc/self/smaps", "re");
	if (n <= 0 || !f) {
		if (f)
			fclose(f);
		return -1;
	}
	exe[n] = '\0';
	while (fgets(line, sizeof(line), f)) {
		path[0] = '\0';
		if (sscanf(line, "%*x-%*x %7s %*s %*s %*s %4095s", perms, path) >= 1 &&
		    strchr(line, '-') < strchr(line, ' ') && strlen(perms) == 4) {
			ours = strcmp(path, exe) == 0 && perms[1] != 'w';
			continue;
		}
		if (ours && sscanf(line, "Rss: %ld kB", &v) == 1)
			kib += v;
	}
	fclose(f);
	return kib;
}

/* Read every page of the executable's read-only mappings, so they are all resident (raw reads
 * across globals: not for ASan to check). */
__attribute__((no_sanitize("address"))) static void touch_exe(void)
{
	char exe[4096], line[4352], perms[8], path[4096];
	unsigned long lo, hi;
	volatile unsigned char sum = 0;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	FILE *f = fopen("/proc/self/maps", "re");
	if (n <= 0 || !f) {
		if (f)
			fclose(f);
		return;
	}
	exe[n] = '\0';
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095s", &lo, &hi, perms, path) == 4 &&
		    strcmp(path, exe) == 0 && perms[0] == 'r' && perms[1] != 'w')
			for (unsigned long p = lo; p < hi; p += 4096)
				sum += *(volatile unsigned char *)p;
	fclose(f);
	(void)sum;
}

int main(void)
{
	uintptr_t s = 0;
	size_t len = 0;
	struct statfs sf;

	is_int(pageout_range(0x400000, 0x1234, 0x10, 4096, &s, &len), 0, "a small segment");
	ok(s == 0x401000 && len == 4096, "is the one page holding it (%#lx + %zu)",
	   (unsigned long)s, len);
	is_int(pageout_range(0x400000, 0xfff, 2, 4096, &s, &len), 0,
	       "a segment across a page edge");
	ok(s == 0x400000 && len == 8192, "covers both pages (%#lx + %zu)", (unsigned long)s, len);
	is_int(pageout_range(0, 0, 0, 4096, &s, &len), -EINVAL, "an empty segment is refused");
	is_int(pageout_range(0, 0, 1, 3000, &s, &len), -EINVAL, "a page size not a power of 2");
	is_int(pageout_range(UINTPTR_MAX - 10, 5, 100, 4096, &s, &len), -EINVAL,
	       "a range past the address space is refused, not wrapped");

	touch_exe();
	long before = exe_ro_rss_kib();
	long r = pageout_startup();
	long after = exe_ro_rss_kib();
	diag("read-only pages of the executable resident: %ld KiB before, %ld KiB after; "
	     "advised %ld bytes",
	     before, after, r);
	if (r == -ENOSYS) {
		ok(1, "kernel without MADV_PAGEOUT: -ENOSYS and nothing changed");
	} else if (statfs("/proc/self/exe", &sf) == 0 &&
		   (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC)) {
		/* Pages of a file in memory are never written back: there is nothing to reclaim. */
		ok(r > 0, "advised %ld bytes (the executable is on tmpfs: nothing reclaimable)", r);
	} else {
		ok(r > 0 && before > 0 && after * 2 < before,
		   "most resident read-only pages were reclaimed (%ld → %ld KiB)", before, after);
	}
	is_int(pageout_range(0x1000, 0, 4096, 4096, &s, &len), 0,
	       "code paged out runs again (faulted back in)");
	return done_testing();
}
