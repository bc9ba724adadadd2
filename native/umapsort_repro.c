// SPDX-License-Identifier: GPL-2.0-only
/*
 * umapsort-repro: the umapsort eviction hang of 2020, as one small C program.
 *
 * LLNL's umap serves the page faults of a userfaultfd-registered region (MISSING | WP) from service
 * threads, and evicts a dirty page the way this program does: write-protect it (UFFDIO_WRITEPROTECT),
 * write it to the backing store with an O_DIRECT pwrite() issued by the service thread itself, then
 * MADV_DONTNEED.  The O_DIRECT write reads the page through get_user_pages().  Where that read is a read
 * (every kernel but v5.8 .. v5.9-rc3 and the backports of 17839856fd58), the write completes.  Where
 * GUP breaks COW for every lookup, the read becomes a write fault on a write-protected page:
 * handle_userfault() parks the service thread until somebody answers the fault, and the only one who
 * would is the service thread.  Nothing here bounds that wait: on such a kernel the program hangs.
 *
 * The store is a file created in $UFFDPROBE_SCRATCH_DIR (else the working directory) and sized with
 * posix_fallocate() on its O_DIRECT descriptor, as umap creates its store.
 *
 * Usage: umapsort-repro [PAGES]   (default 4)
 * Exit: 0 every page evicted, its data read back from the store and faulted back in intact;
 *       1 the data did not match; 2 set-up failed (no userfaultfd, no WP, no O_DIRECT or fallocate).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

static long page_size, npages;
static int uffd, store_fd, cmd_pipe[2], done_pipe[2];
static char *area;
static char store_path[4096];

static void die(int code, const char *what)
{
	fprintf(stderr, "umapsort-repro: %s: %s\n", what, strerror(errno));
	if (store_path[0])
		unlink(store_path);
	exit(code);
}

static void say(const char *fmt, long arg)
{
	printf("umapsort-repro: ");
	printf(fmt, arg);
	putchar('\n');
	fflush(stdout);
}

static void write_protect(char *page, int on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)page, .len = page_size },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		die(2, "UFFDIO_WRITEPROTECT");
}

/* A MISSING fault: fill the page from the store (O_DIRECT read), as umap's fill workers do. */
static void fill(char *page, int write, void *bounce)
{
	off_t off = (page - area);
	struct uffdio_copy copy = {
		.dst = (uintptr_t)page, .src = (uintptr_t)bounce, .len = page_size,
		.mode = write ? 0 : UFFDIO_COPY_MODE_WP,  /* a read-filled page is clean: trap its first write */
	};
	if (pread(store_fd, bounce, page_size, off) != page_size)
		die(2, "pread(O_DIRECT) filling a page");
	if (ioctl(uffd, UFFDIO_COPY, &copy) && errno != EEXIST)
		die(2, "UFFDIO_COPY");
}

/* Eviction, from the service thread: write-protect, O_DIRECT write from the mapped page, drop it. */
static void evict(void)
{
	for (long i = 0; i < npages; i++) {
		char *page = area + i * page_size;
		write_protect(page, 1);
		say("evicting page %ld: O_DIRECT pwrite from the write-protected page", i);
		if (pwrite(store_fd, page, page_size, i * page_size) != page_size)
			die(2, "pwrite(O_DIRECT) of a write-protected page");
		if (madvise(page, page_size, MADV_DONTNEED))
			die(2, "madvise(MADV_DONTNEED)");
	}
}

static void *service(void *arg)
{
	void *bounce;
	(void)arg;
	if (posix_memalign(&bounce, page_size, page_size))
		die(2, "posix_memalign");
	for (;;) {
		struct pollfd p[2] = { { .fd = uffd, .events = POLLIN }, { .fd = cmd_pipe[0], .events = POLLIN } };
		struct uffd_msg msg;
		char cmd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die(2, "poll");
		}
		if (p[0].revents & POLLIN) {
			ssize_t n = read(uffd, &msg, sizeof(msg));
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n != sizeof(msg))
				die(2, "read(userfaultfd)");
			if (msg.event != UFFD_EVENT_PAGEFAULT)
				continue;
			char *page = (char *)(uintptr_t)(msg.arg.pagefault.address & ~(uint64_t)(page_size - 1));
			if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
				write_protect(page, 0);  /* a write to a clean page: it is dirty now */
			else
				fill(page, !!(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE), bounce);
		}
		if (p[1].revents & POLLIN) {
			if (read(cmd_pipe[0], &cmd, 1) != 1 || cmd == 'q')
				break;
			evict();
			if (write(done_pipe[1], "e", 1) != 1)
				die(2, "write(done pipe)");
		}
	}
	free(bounce);
	return NULL;
}

static char pattern(long page, long i)
{
	return (char)('A' + (page * 7 + i) % 26);
}

static int check(const char *where, const char *data, long page)
{
	for (long i = 0; i < page_size; i++)
		if (data[i] != pattern(page, i)) {
			printf("umapsort-repro: page %ld byte %ld %s is %#x, wrote %#x\n", page, i, where,
			       (unsigned char)data[i], (unsigned char)pattern(page, i));
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("UFFDPROBE_SCRATCH_DIR");
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };
	pthread_t thread;
	void *readback;
	int bad = 0, err;
	char cmd = 'e';

	page_size = sysconf(_SC_PAGESIZE);
	npages = argc > 1 ? strtol(argv[1], NULL, 10) : 4;
	if (npages < 1 || npages > 65536) {
		fprintf(stderr, "usage: umapsort-repro [PAGES from 1 to 65536]\n");
		return 2;
	}
	snprintf(store_path, sizeof(store_path), "%s/umapsort-repro.%d.store", dir && *dir ? dir : ".",
		 (int)getpid());
	store_fd = open(store_path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
	if (store_fd < 0) {
		store_path[0] = 0;
		die(2, "open(O_DIRECT) of the store (give a directory on ext4 or xfs: UFFDPROBE_SCRATCH_DIR)");
	}
	err = posix_fallocate(store_fd, 0, npages * page_size);
	if (err) {
		errno = err;
		die(2, "posix_fallocate on the O_DIRECT store (ext2 refuses it: use ext4 or xfs)");
	}
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		die(2, "userfaultfd");
	if (ioctl(uffd, UFFDIO_API, &api))
		die(2, "UFFDIO_API with UFFD_FEATURE_PAGEFAULT_FLAG_WP");
	area = mmap(NULL, npages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		die(2, "mmap");
	reg.range.start = (uintptr_t)area;
	reg.range.len = npages * page_size;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		die(2, "UFFDIO_REGISTER MISSING|WP on anonymous memory");
	if (pipe(cmd_pipe) || pipe(done_pipe))
		die(2, "pipe");
	if (pthread_create(&thread, NULL, service, NULL))
		die(2, "pthread_create");

	for (long p = 0; p < npages; p++)  /* MISSING faults, filled by the service thread, then written */
		for (long i = 0; i < page_size; i++)
			area[p * page_size + i] = pattern(p, i);
	say("%ld page(s) written through the uffd service thread; asking it to evict them", npages);
	if (write(cmd_pipe[1], &cmd, 1) != 1 || read(done_pipe[0], &cmd, 1) != 1)
		die(2, "talking to the service thread");

	if (posix_memalign(&readback, page_size, page_size))
		die(2, "posix_memalign");
	for (long p = 0; p < npages; p++) {
		if (pread(store_fd, readback, page_size, p * page_size) != page_size)
			die(2, "pread(O_DIRECT) of the store");
		bad |= check("in the store", readback, p);
		bad |= check("faulted back in", area + p * page_size, p);  /* refilled from the store */
	}
	cmd = 'q';
	if (write(cmd_pipe[1], &cmd, 1) != 1)
		die(2, "write(command pipe)");
	pthread_join(thread, NULL);
	unlink(store_path);
	if (bad)
		return 1;
	say("%ld page(s) evicted with O_DIRECT, read back and faulted back in: data intact", npages);
	return 0;
}
