// SPDX-License-Identifier: GPL-2.0-only
/*
 * A workload whose own fault handler is slow on purpose: a service thread reads each MISSING fault
 * from the userfaultfd, sleeps SECONDS (longer than uffdprobe's 2 s hang limit), then answers it with
 * UFFDIO_COPY.  The main thread touches PAGES pages one after the other and checks each holds what the
 * handler put there.  Every fault is answered by the program itself, only late: on every kernel this
 * is slow, never a hang.  A second answer from outside (a "rescue") makes the handler's UFFDIO_COPY fail
 * with EEXIST: the program then exits 3.
 * Usage: uffd_slow_handler [PAGES [SECONDS]]   (default 2 pages, 3 s)
 * Exit: 0 every page answered by the handler and intact; 1 wrong data; 2 set-up failed; 3 EEXIST.
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

static int uffd;
static long page_size, pages, delay;
static char *source;

static void *handler(void *unused)
{
	(void)unused;
	for (long served = 0; served < pages; served++) {
		struct uffd_msg msg;
		struct pollfd p = { .fd = uffd, .events = POLLIN };

		if (poll(&p, 1, -1) < 0 || read(uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			perror("uffd_slow_handler: reading a fault");
			exit(2);
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uintptr_t page = msg.arg.pagefault.address & ~(uintptr_t)(page_size - 1);
		printf("uffd_slow_handler: fault at %#lx read; answering in %ld s\n", (unsigned long)page, delay);
		fflush(stdout);
		sleep(delay);  /* slow on purpose: the fault is in hand, the answer comes */
		memset(source, 'a' + (int)(served % 26), page_size);
		struct uffdio_copy copy = { .dst = page, .src = (uintptr_t)source, .len = page_size };
		if (ioctl(uffd, UFFDIO_COPY, &copy)) {
			if (errno == EEXIST) {
				fprintf(stderr, "uffd_slow_handler: UFFDIO_COPY: EEXIST, someone else answered our fault\n");
				exit(3);
			}
			perror("uffd_slow_handler: UFFDIO_COPY");
			exit(2);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pages = argc > 1 ? atol(argv[1]) : 2;
	delay = argc > 2 ? atol(argv[2]) : 3;
	page_size = sysconf(_SC_PAGESIZE);
	struct uffdio_api api = { .api = UFFD_API };
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	char *area = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	source = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)area, .len = pages * page_size },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	pthread_t thread;

	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) || area == MAP_FAILED || source == MAP_FAILED ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg) || pthread_create(&thread, NULL, handler, NULL)) {
		perror("uffd_slow_handler: set-up");
		return 2;
	}
	for (long i = 0; i < pages; i++) {
		char got = area[i * page_size];  /* a MISSING fault, answered SECONDS later */
		if (got != 'a' + (int)(i % 26)) {
			fprintf(stderr, "uffd_slow_handler: page %ld holds %d\n", i, got);
			return 1;
		}
	}
	pthread_join(thread, NULL);
	printf("uffd_slow_handler: %ld page(s), each answered by our own handler after %ld s\n", pages, delay);
	return 0;
}
