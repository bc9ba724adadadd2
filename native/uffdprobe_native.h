// SPDX-License-Identifier: GPL-2.0-only
/*
 * uffdprobe native layer: thin, GIL-free wrappers over the userfaultfd ABI and
 * the memory syscalls the scenarios use.  Every function returns -1 and leaves
 * errno set on failure, so the Python layer can raise with errno and call name.
 * Struct layouts and ioctl numbers come from <linux/userfaultfd.h>, completed by
 * uffd_uapi_fallback.h where that header is older than the uAPI the bindings name;
 * a constant neither has is reported with value 0 and present = 0 in up_constants[].
 */
#ifndef UFFDPROBE_NATIVE_H
#define UFFDPROBE_NATIVE_H
#include <stdint.h>
#include <stddef.h>

/* A decoded struct uffd_msg, flattened so Python reads plain fields. */
struct up_msg {
	uint8_t event;
	uint64_t flags;    /* PAGEFAULT: flags */
	uint64_t address;  /* PAGEFAULT: address; REMAP: from; REMOVE/UNMAP: start */
	uint64_t arg2;     /* REMAP: to; REMOVE/UNMAP: end */
	uint64_t arg3;     /* REMAP: len */
	uint32_t ptid;     /* PAGEFAULT with UFFD_FEATURE_THREAD_ID */
	uint32_t ufd;      /* FORK: the child's new userfaultfd */
};

/* One struct page_region of a PAGEMAP_SCAN answer: [start, end) and its PAGE_IS_* categories. */
struct up_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

/* One named constant from the system headers. */
struct up_const {
	const char *group;
	const char *name;
	uint64_t value;
	int present;
};

extern const struct up_const up_constants[];
extern const int up_nconstants;

int up_userfaultfd(int flags);
int up_dev_userfaultfd(int flags);
/* pidfd_getfd(2): a duplicate, in this process, of descriptor `fd` of the process behind `pidfd`. */
int up_pidfd_getfd(int pidfd, int fd);
int up_api(int fd, uint64_t api, uint64_t *features, uint64_t *ioctls);
int up_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls);
int up_unregister(int fd, uint64_t start, uint64_t len);
int up_wake(int fd, uint64_t start, uint64_t len);
int up_copy(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode, int64_t *copied);
int up_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *zeropage);
int up_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode);
int up_continue(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *mapped);
int up_move(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode, int64_t *moved);
int up_poison(int fd, uint64_t start, uint64_t len, uint64_t mode, int64_t *updated);
/* PAGEMAP_SCAN on pagemap_fd: regions into out[max]; returns their number, *walk_end where it stopped. */
int up_pagemap_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t max_pages,
		    uint64_t inverted, uint64_t mask, uint64_t anyof, uint64_t ret_mask,
		    struct up_region *out, uint64_t max, uint64_t *walk_end);
int up_read_msgs(int fd, struct up_msg *out, int max);
int up_poll_in(int fd, int timeout_ms);
int up_wait_msgs(int fd, struct up_msg *out, int max, int timeout_ms);
struct up_reader;
struct up_reader *up_reader_start(int fd, int timeout_ms);
int up_reader_join(struct up_reader *r, struct up_msg *out, int max);

void *up_mmap(void *addr, uint64_t len, int prot, int flags, int fd, int64_t off);
int up_munmap(uint64_t addr, uint64_t len);
int up_mprotect(uint64_t addr, uint64_t len, int prot);
int up_madvise(uint64_t addr, uint64_t len, int advice);
/* mremap(2); returns MAP_FAILED ((void *)-1) on failure, as mmap does. */
void *up_mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr);
/* move_pages(2) of one page of this process to `node`: *status gets the page's node or a negative errno. */
int64_t up_move_page(uint64_t addr, int node, int flags, int *status);
int up_mincore(uint64_t addr, uint64_t len, unsigned char *vec);
int up_memfd_create(const char *name, unsigned int flags);
int up_fallocate(int fd, int mode, int64_t off, int64_t len);
int64_t up_vmsplice(int fd, uint64_t addr, uint64_t len, unsigned int flags);
int64_t up_process_vm_readv(int pid, uint64_t local, uint64_t remote, uint64_t len);
int64_t up_process_vm_writev(int pid, uint64_t local, uint64_t remote, uint64_t len);
int64_t up_pwrite(int fd, uint64_t addr, uint64_t len, int64_t off);
int64_t up_pread(int fd, uint64_t addr, uint64_t len, int64_t off);
uint64_t up_touch(uint64_t addr, uint64_t len, uint64_t stride, int write, uint8_t value);
void up_memcpy(uint64_t dst, uint64_t src, uint64_t len);
int up_gettid(void);
/* umap-evict workload helpers: they touch the uffd region, so they run without the GIL. */
void up_sort_u64(uint64_t addr, uint64_t n);
void up_scramble_u64(uint64_t addr, uint64_t n, uint64_t block, uint64_t seed);
void up_checksum_u64(uint64_t addr, uint64_t n, uint64_t *sum, uint64_t *xor_,
		     uint64_t *unsorted, uint64_t *hash);
void up_rewrite_u64(uint64_t addr);
#endif
