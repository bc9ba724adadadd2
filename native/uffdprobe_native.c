// SPDX-License-Identifier: GPL-2.0-only
/* uffdprobe native layer; see uffdprobe_native.h for the conventions. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/fs.h>
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>
#include "uffd_uapi_fallback.h"
#include "uffdprobe_native.h"

#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438 /* the same in the generic and the x86_64 tables; headers before 5.6 lack it */
#endif

#define C(group, name) { group, #name, (uint64_t)(name), 1 }
/* For a name newer than both the header and uffd_uapi_fallback.h: listed, reported absent. */
#define ABSENT(group, name) { group, #name, 0, 0 }

/* Every name comes from the header, or from uffd_uapi_fallback.h where the header is older. */
const struct up_const up_constants[] = {
	C("api", UFFD_API),
	C("feature", UFFD_FEATURE_PAGEFAULT_FLAG_WP),
	C("feature", UFFD_FEATURE_EVENT_FORK),
	C("feature", UFFD_FEATURE_EVENT_REMAP),
	C("feature", UFFD_FEATURE_EVENT_REMOVE),
	C("feature", UFFD_FEATURE_MISSING_HUGETLBFS),
	C("feature", UFFD_FEATURE_MISSING_SHMEM),
	C("feature", UFFD_FEATURE_EVENT_UNMAP),
	C("feature", UFFD_FEATURE_SIGBUS),
	C("feature", UFFD_FEATURE_THREAD_ID),
	C("feature", UFFD_FEATURE_MINOR_HUGETLBFS),
	C("feature", UFFD_FEATURE_MINOR_SHMEM),
	C("feature", UFFD_FEATURE_EXACT_ADDRESS),
	C("feature", UFFD_FEATURE_WP_HUGETLBFS_SHMEM),
	C("feature", UFFD_FEATURE_WP_UNPOPULATED),
	C("feature", UFFD_FEATURE_POISON),
	C("feature", UFFD_FEATURE_WP_ASYNC),
	C("feature", UFFD_FEATURE_MOVE),
	C("ioctl", _UFFDIO_REGISTER),
	C("ioctl", _UFFDIO_UNREGISTER),
	C("ioctl", _UFFDIO_WAKE),
	C("ioctl", _UFFDIO_COPY),
	C("ioctl", _UFFDIO_ZEROPAGE),
	C("ioctl", _UFFDIO_WRITEPROTECT),
	C("ioctl", _UFFDIO_CONTINUE),
	C("ioctl", _UFFDIO_MOVE),
	C("ioctl", _UFFDIO_POISON),
	C("ioctl", _UFFDIO_API),
	C("register", UFFDIO_REGISTER_MODE_MISSING),
	C("register", UFFDIO_REGISTER_MODE_WP),
	C("register", UFFDIO_REGISTER_MODE_MINOR),
	C("copy", UFFDIO_COPY_MODE_DONTWAKE),
	C("copy", UFFDIO_COPY_MODE_WP),
	C("zeropage", UFFDIO_ZEROPAGE_MODE_DONTWAKE),
	C("writeprotect", UFFDIO_WRITEPROTECT_MODE_WP),
	C("writeprotect", UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	C("continue", UFFDIO_CONTINUE_MODE_DONTWAKE),
	C("continue", UFFDIO_CONTINUE_MODE_WP),
	C("move", UFFDIO_MOVE_MODE_DONTWAKE),
	C("move", UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES),
	C("poison", UFFDIO_POISON_MODE_DONTWAKE),
	C("event", UFFD_EVENT_PAGEFAULT),
	C("event", UFFD_EVENT_FORK),
	C("event", UFFD_EVENT_REMAP),
	C("event", UFFD_EVENT_REMOVE),
	C("event", UFFD_EVENT_UNMAP),
	C("pagefault", UFFD_PAGEFAULT_FLAG_WRITE),
	C("pagefault", UFFD_PAGEFAULT_FLAG_WP),
	C("pagefault", UFFD_PAGEFAULT_FLAG_MINOR),
	C("open", UFFD_USER_MODE_ONLY),
	C("open", O_CLOEXEC),
	C("open", O_NONBLOCK),
	C("ioctl_number", UFFDIO_API),
	C("ioctl_number", UFFDIO_REGISTER),
	C("ioctl_number", UFFDIO_UNREGISTER),
	C("ioctl_number", UFFDIO_WAKE),
	C("ioctl_number", UFFDIO_COPY),
	C("ioctl_number", UFFDIO_ZEROPAGE),
	C("ioctl_number", UFFDIO_WRITEPROTECT),
	C("ioctl_number", UFFDIO_CONTINUE),
	C("ioctl_number", UFFDIO_MOVE),
	C("ioctl_number", UFFDIO_POISON),
	C("ioctl_number", USERFAULTFD_IOC_NEW),
	C("mman", PROT_NONE),
	C("mman", PROT_READ),
	C("mman", PROT_WRITE),
	C("mman", MAP_PRIVATE),
	C("mman", MAP_SHARED),
	C("mman", MAP_ANONYMOUS),
	C("mman", MAP_FIXED),
	C("mman", MAP_NORESERVE),
	C("mman", MAP_POPULATE),
	C("madvise", MADV_DONTNEED),
	C("madvise", MADV_HUGEPAGE),
	C("madvise", MADV_NOHUGEPAGE),
	C("madvise", MADV_DONTFORK),
	C("madvise", MADV_REMOVE),
	C("madvise", MADV_COLLAPSE),
	C("madvise", MADV_PAGEOUT),
	C("madvise", MADV_WILLNEED),
	C("madvise", MADV_POPULATE_READ),
	C("madvise", MADV_POPULATE_WRITE),
	C("mremap", MREMAP_MAYMOVE),
	C("mremap", MREMAP_FIXED),
	C("mempolicy", MPOL_MF_MOVE),
	C("mempolicy", MPOL_MF_MOVE_ALL),
	C("memfd", MFD_CLOEXEC),
	C("memfd", MFD_HUGETLB),
	C("memfd", MFD_ALLOW_SEALING),
	C("falloc", FALLOC_FL_KEEP_SIZE),
	C("falloc", FALLOC_FL_PUNCH_HOLE),
	C("pagemap_scan", PAGE_IS_WPALLOWED),
	C("pagemap_scan", PAGE_IS_WRITTEN),
	C("pagemap_scan", PAGE_IS_FILE),
	C("pagemap_scan", PAGE_IS_PRESENT),
	C("pagemap_scan", PAGE_IS_SWAPPED),
	C("pagemap_scan", PAGE_IS_PFNZERO),
	C("pagemap_scan", PAGE_IS_HUGE),
	C("pagemap_scan", PAGE_IS_SOFT_DIRTY),
	C("pagemap_scan", PM_SCAN_WP_MATCHING),
	C("pagemap_scan", PM_SCAN_CHECK_WPASYNC),
	C("ioctl_number", PAGEMAP_SCAN),
	C("splice", SPLICE_F_GIFT),
	C("splice", SPLICE_F_NONBLOCK),
};
const int up_nconstants = sizeof(up_constants) / sizeof(up_constants[0]);

int up_userfaultfd(int flags)
{
	return (int)syscall(__NR_userfaultfd, flags);
}

int up_pidfd_getfd(int pidfd, int fd)
{
	return (int)syscall(__NR_pidfd_getfd, pidfd, fd, 0);
}

int up_dev_userfaultfd(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd, saved;

	if (dev < 0)
		return -1;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	saved = errno;
	close(dev);
	errno = saved;
	return fd;
}

int up_api(int fd, uint64_t api, uint64_t *features, uint64_t *ioctls)
{
	struct uffdio_api a = { .api = api, .features = *features };
	int ret = ioctl(fd, UFFDIO_API, &a);

	*features = a.features;
	*ioctls = a.ioctls;
	return ret;
}

int up_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls)
{
	struct uffdio_register r = { .range = { start, len }, .mode = mode };
	int ret = ioctl(fd, UFFDIO_REGISTER, &r);

	*ioctls = r.ioctls;
	return ret;
}

int up_unregister(int fd, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { start, len };
	return ioctl(fd, UFFDIO_UNREGISTER, &r);
}

int up_wake(int fd, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { start, len };
	return ioctl(fd, UFFDIO_WAKE, &r);
}

int up_copy(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode, int64_t *copied)
{
	struct uffdio_copy c = { .dst = dst, .src = src, .len = len, .mode = mode };
	int ret = ioctl(fd, UFFDIO_COPY, &c);

	*copied = c.copy;
	return ret;
}

int up_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *zeropage)
{
	struct uffdio_zeropage z = { .range = { start, len }, .mode = mode };
	int ret = ioctl(fd, UFFDIO_ZEROPAGE, &z);

	*zeropage = z.zeropage;
	return ret;
}

int up_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode)
{
	struct uffdio_writeprotect w = { .range = { start, len }, .mode = mode };
	return ioctl(fd, UFFDIO_WRITEPROTECT, &w);
}

int up_continue(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *mapped)
{
	struct uffdio_continue c = { .range = { start, len }, .mode = mode };
	int ret = ioctl(fd, UFFDIO_CONTINUE, &c);

	*mapped = c.mapped;
	return ret;
}

int up_move(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode, int64_t *moved)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len, .mode = mode };
	int ret = ioctl(fd, UFFDIO_MOVE, &m);

	*moved = m.move;
	return ret;
}

int up_poison(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *updated)
{
	struct uffdio_poison p = { .range = { start, len }, .mode = mode };
	int ret = ioctl(fd, UFFDIO_POISON, &p);

	*updated = p.updated;
	return ret;
}

int up_pagemap_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t max_pages,
		    uint64_t inverted, uint64_t mask, uint64_t anyof, uint64_t ret_mask,
		    struct up_region *out, uint64_t max, uint64_t *walk_end)
{
	struct pm_scan_arg a = {
		.size = sizeof(a), .flags = flags, .start = start, .end = end,
		.vec = (uint64_t)(uintptr_t)out, .vec_len = max, .max_pages = max_pages,
		.category_inverted = inverted, .category_mask = mask,
		.category_anyof_mask = anyof, .return_mask = ret_mask,
	};
	int ret;

	_Static_assert(sizeof(struct up_region) == sizeof(struct page_region), "page_region layout");
	ret = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);
	*walk_end = a.walk_end;
	return ret;
}

int up_read_msgs(int fd, struct up_msg *out, int max)
{
	struct uffd_msg msgs[64];
	ssize_t n;
	int i, count;

	if (max > 64)
		max = 64;
	n = read(fd, msgs, sizeof(msgs[0]) * (size_t)max);
	if (n < 0)
		return -1;
	count = (int)(n / (ssize_t)sizeof(msgs[0]));
	for (i = 0; i < count; i++) {
		struct uffd_msg *m = &msgs[i];
		struct up_msg *o = &out[i];

		memset(o, 0, sizeof(*o));
		o->event = m->event;
		switch (m->event) {
		case UFFD_EVENT_PAGEFAULT:
			o->flags = m->arg.pagefault.flags;
			o->address = m->arg.pagefault.address;
			o->ptid = m->arg.pagefault.feat.ptid;
			break;
		case UFFD_EVENT_FORK:
			o->ufd = m->arg.fork.ufd;
			break;
		case UFFD_EVENT_REMAP:
			o->address = m->arg.remap.from;
			o->arg2 = m->arg.remap.to;
			o->arg3 = m->arg.remap.len;
			break;
		case UFFD_EVENT_REMOVE:
		case UFFD_EVENT_UNMAP:
			o->address = m->arg.remove.start;
			o->arg2 = m->arg.remove.end;
			break;
		}
	}
	return count;
}

int up_poll_in(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int ret;

	do {
		ret = poll(&p, 1, timeout_ms);
	} while (ret < 0 && errno == EINTR);
	if (ret > 0 && (p.revents & (POLLERR | POLLNVAL))) {
		errno = (p.revents & POLLNVAL) ? EBADF : EIO;
		return -1;
	}
	return ret;
}

/*
 * Poll and read in one call without the GIL: returns messages read, 0 on timeout.  A thread that
 * must read an event while another thread holds the GIL in the kernel (fork() with EVENT_FORK
 * waits for its FORK message to be read) can only do it this way.
 */
int up_wait_msgs(int fd, struct up_msg *out, int max, int timeout_ms)
{
	int ret = up_poll_in(fd, timeout_ms);

	if (ret <= 0)
		return ret;
	ret = up_read_msgs(fd, out, max);
	if (ret < 0 && errno == EAGAIN)
		return 0;
	return ret;
}

/*
 * A message reader that is a plain pthread: it never needs the GIL, so it can read the FORK event
 * that fork() waits for while the forking thread holds the GIL.  A Python thread cannot do this
 * reliably: it needs the GIL for the bytecodes before its GIL-free wait, and may not get it.
 */
struct up_reader {
	pthread_t thread;
	int fd, timeout_ms, n, err;
	struct up_msg msgs[8];
};

static void *up_reader_main(void *arg)
{
	struct up_reader *r = arg;

	r->n = up_wait_msgs(r->fd, r->msgs, 8, r->timeout_ms);
	r->err = r->n < 0 ? errno : 0;
	return NULL;
}

struct up_reader *up_reader_start(int fd, int timeout_ms)
{
	struct up_reader *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return NULL;
	r->fd = fd;
	r->timeout_ms = timeout_ms;
	err = pthread_create(&r->thread, NULL, up_reader_main, r);
	if (err) {
		free(r);
		errno = err;
		return NULL;
	}
	return r;
}

/* Join the reader (it ends by its own timeout) and copy out what it read; frees it. */
int up_reader_join(struct up_reader *r, struct up_msg *out, int max)
{
	int i, n;

	pthread_join(r->thread, NULL);
	n = r->n;
	if (n < 0)
		errno = r->err;
	for (i = 0; i < n && i < max; i++)
		out[i] = r->msgs[i];
	free(r);
	return n;
}

void *up_mmap(void *addr, uint64_t len, int prot, int flags, int fd, int64_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

int up_munmap(uint64_t addr, uint64_t len)
{
	return munmap((void *)addr, len);
}

int up_mprotect(uint64_t addr, uint64_t len, int prot)
{
	return mprotect((void *)addr, len, prot);
}

int up_madvise(uint64_t addr, uint64_t len, int advice)
{
	return madvise((void *)addr, len, advice);
}

void *up_mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr)
{
	return mremap((void *)old_addr, old_len, new_len, flags, (void *)new_addr);
}

int64_t up_move_page(uint64_t addr, int node, int flags, int *status)
{
	void *pages[1] = { (void *)addr };
	int nodes[1] = { node };

	*status = -1;
	return syscall(__NR_move_pages, 0, 1UL, pages, nodes, status, flags);
}

int up_mincore(uint64_t addr, uint64_t len, unsigned char *vec)
{
	return mincore((void *)addr, len, vec);
}

int up_memfd_create(const char *name, unsigned int flags)
{
	return memfd_create(name, flags);
}

int up_fallocate(int fd, int mode, int64_t off, int64_t len)
{
	return fallocate(fd, mode, off, len);
}

int64_t up_vmsplice(int fd, uint64_t addr, uint64_t len, unsigned int flags)
{
	struct iovec iov = { (void *)addr, len };
	return vmsplice(fd, &iov, 1, flags);
}

int64_t up_process_vm_readv(int pid, uint64_t local, uint64_t remote, uint64_t len)
{
	struct iovec l = { (void *)local, len }, r = { (void *)remote, len };
	return process_vm_readv(pid, &l, 1, &r, 1, 0);
}

int64_t up_process_vm_writev(int pid, uint64_t local, uint64_t remote, uint64_t len)
{
	struct iovec l = { (void *)local, len }, r = { (void *)remote, len };
	return process_vm_writev(pid, &l, 1, &r, 1, 0);
}

int64_t up_pwrite(int fd, uint64_t addr, uint64_t len, int64_t off)
{
	return pwrite(fd, (const void *)addr, len, off);
}

int64_t up_pread(int fd, uint64_t addr, uint64_t len, int64_t off)
{
	return pread(fd, (void *)addr, len, off);
}

/* Touch one byte every `stride` bytes: read (summed, so it is not elided) or write `value`. */
uint64_t up_touch(uint64_t addr, uint64_t len, uint64_t stride, int write, uint8_t value)
{
	volatile uint8_t *p = (volatile uint8_t *)addr;
	uint64_t off, sum = 0;

	for (off = 0; off < len; off += stride) {
		if (write)
			p[off] = value;
		else
			sum += p[off];
	}
	return sum;
}

/* memcpy between raw addresses, called without the GIL because either side may fault. */
void up_memcpy(uint64_t dst, uint64_t src, uint64_t len)
{
	memcpy((void *)dst, (const void *)src, len);
}

int up_gettid(void)
{
	return (int)syscall(SYS_gettid);
}

/*
 * umap-evict workload helpers.  They read and write a uffd-registered region,
 * so they must run in C with the GIL released: the fault handler is Python.
 */

static int up_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort n uint64 values at addr in place (umapsort's sort step). */
void up_sort_u64(uint64_t addr, uint64_t n)
{
	qsort((void *)addr, n, sizeof(uint64_t), up_cmp_u64);
}

/* Reverse the array, then shuffle each `block`-element chunk with a seeded xorshift64. */
void up_scramble_u64(uint64_t addr, uint64_t n, uint64_t block, uint64_t seed)
{
	uint64_t *v = (uint64_t *)addr, i, j, k, t, s = seed | 1;

	for (i = 0; i < n / 2; i++) {
		t = v[i];
		v[i] = v[n - 1 - i];
		v[n - 1 - i] = t;
	}
	for (i = 0; block > 1 && i < n; i += block) {
		uint64_t len = n - i < block ? n - i : block;

		for (j = len - 1; j > 0; j--) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			k = s % (j + 1);
			t = v[i + j];
			v[i + j] = v[i + k];
			v[i + k] = t;
		}
	}
}

/* Order-free sum and xor, the count of descending neighbours, and an order-dependent FNV-1a hash. */
void up_checksum_u64(uint64_t addr, uint64_t n, uint64_t *sum, uint64_t *xor_,
		     uint64_t *unsorted, uint64_t *hash)
{
	const uint64_t *v = (const uint64_t *)addr;
	uint64_t i, s = 0, x = 0, u = 0, h = 0xcbf29ce484222325ULL;

	for (i = 0; i < n; i++) {
		s += v[i];
		x ^= v[i];
		u += i > 0 && v[i - 1] > v[i];
		h = (h ^ v[i]) * 0x100000001b3ULL;
	}
	*sum = s;
	*xor_ = x;
	*unsorted = u;
	*hash = h;
}

/* Store back the value already at addr: a plain CPU write (test-only eviction knob). */
void up_rewrite_u64(uint64_t addr)
{
	volatile uint64_t *p = (volatile uint64_t *)addr;

	*p = *p;
}
