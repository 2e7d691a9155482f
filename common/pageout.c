/* See pageout.h: release the executable's start-up pages after start. */
#include "pageout.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21 /* Linux 5.4 */
#endif

int pageout_range(uintptr_t base, uintptr_t vaddr, uintptr_t memsz, uintptr_t pagesz,
		  uintptr_t *start, size_t *len)
{
	uintptr_t s, e;
	if (!pagesz || (pagesz & (pagesz - 1)) || !memsz)
		return -EINVAL;
	if (__builtin_add_overflow(base, vaddr, &s) || __builtin_add_overflow(s, memsz, &e) ||
	    __builtin_add_overflow(e, pagesz - 1, &e))
		return -EINVAL;
	s &= ~(pagesz - 1);
	e &= ~(pagesz - 1);
	if (e <= s)
		return -EINVAL;
	*start = s;
	*len = e - s;
	return 0;
}

struct pageout_acc {
	long bytes;
	int err;
	int seen;
};

static int pageout_phdr(struct dl_phdr_info *info, size_t size, void *ud)
{
	struct pageout_acc *acc = ud;
	uintptr_t pagesz = (uintptr_t)sysconf(_SC_PAGESIZE), start;
	size_t len;
	(void)size;
	if (acc->seen++) /* the first object is the executable itself */
		return 1;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
			continue;
		if (pageout_range(info->dlpi_addr, ph->p_vaddr, ph->p_memsz, pagesz, &start, &len) <
		    0)
			continue;
		if (madvise((void *)start, len, MADV_PAGEOUT) < 0) {
			acc->err = errno == EINVAL ? -ENOSYS : -errno;
			return 1;
		}
		acc->bytes += (long)len;
	}
	return 1;
}

long pageout_startup(void)
{
	struct pageout_acc acc = { 0 };
	dl_iterate_phdr(pageout_phdr, &acc);
	return acc.err ? acc.err : acc.bytes;
}
