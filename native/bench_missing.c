// SPDX-License-Identifier: GPL-2.0-only
/*
 * MISSING faults served per second by a C handler: one thread touches N fresh pages, one handler
 * thread answers each fault with UFFDIO_COPY.  The same workload as uffdprobe's Python benchmark,
 * so the two rates compare the handler language and nothing else.  Usage: bench_missing PAGES
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
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

static long page_size;
static long npages;
static int uffd;
static char *area, *src;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void *handler(void *arg)
{
	struct uffd_msg msgs[64];
	long served = 0;

	(void)arg;
	while (served < npages) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		ssize_t n;
		int i;

		if (poll(&p, 1, 5000) <= 0)
			die("poll");
		n = read(uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN)
				continue;
			die("read");
		}
		for (i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			struct uffdio_copy c = {
				.dst = msgs[i].arg.pagefault.address & ~(uint64_t)(page_size - 1),
				.src = (uint64_t)src, .len = (uint64_t)page_size,
			};
			if (ioctl(uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST)
				die("UFFDIO_COPY");
			served++;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { 0 };
	struct timespec t0, t1;
	pthread_t thread;
	volatile char sink = 0;
	long i;

	npages = argc > 1 ? atol(argv[1]) : 20000;
	page_size = sysconf(_SC_PAGESIZE);
	uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		die("userfaultfd");
	if (ioctl(uffd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	area = mmap(NULL, npages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || src == MAP_FAILED)
		die("mmap");
	memset(src, 0x5a, page_size);
	reg.range.start = (uint64_t)area;
	reg.range.len = (uint64_t)(npages * page_size);
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	if (pthread_create(&thread, NULL, handler, NULL))
		die("pthread_create");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < npages; i++)
		sink += area[i * page_size];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(thread, NULL);
	if (sink != (char)(0x5a * npages))
		fprintf(stderr, "warning: unexpected page contents\n");
	printf("%ld %.6f\n", npages, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
