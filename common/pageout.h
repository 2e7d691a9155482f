#pragma once
/* Hand the kernel back the executable's clean file pages once start-up is over.
 *
 * A long-running daemon touches most of its code and read-only data once, at start (TLS and
 * provider set-up, configuration parsing, discovery), and little of it again while idle; the
 * kernel's fault-around keeps the 64 KiB around every touched page resident as well. Those pages
 * are clean and would be reclaimed under memory pressure anyway: MADV_PAGEOUT reclaims them now,
 * and what the process still uses faults back in on demand. Writable segments (relocated data,
 * heap) are left alone. */
#include <stddef.h>
#include <stdint.h>

/* The page-aligned [*start, *start + *len) covering a segment at base + vaddr of memsz bytes.
 * Returns 0, or -EINVAL when the range is empty or would overflow. */
int pageout_range(uintptr_t base, uintptr_t vaddr, uintptr_t memsz, uintptr_t pagesz,
		  uintptr_t *start, size_t *len);

/* MADV_PAGEOUT over the main executable's read-only PT_LOAD segments (text, rodata). Returns
 * the bytes advised (their sum, not what was resident), or -errno: -EINVAL or -ENOSYS on a
 * kernel before 5.4, where nothing changes. */
long pageout_startup(void);
