// SPDX-License-Identifier: GPL-2.0-only
/*
 * A workload that waits on its own userfaultfd: it registers a page (MISSING, or WP after filling it)
 * and touches it from the only thread that could answer, on a blocking descriptor nobody reads.  It
 * hangs in handle_userfault on every kernel until someone else answers the fault; then it prints the
 * byte it wrote and exits 0.  Usage: uffd_selfwait missing|wp
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

int main(int argc, char **argv)
{
	int wp = argc > 1 && !strcmp(argv[1], "wp");
	long ps = sysconf(_SC_PAGESIZE);
	struct uffdio_api api = { .api = UFFD_API, .features = wp ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0 };
	int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	volatile char *area = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = { .range = { .start = (uintptr_t)area, .len = ps },
				       .mode = wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_writeprotect prot = { .range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };

	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) || area == MAP_FAILED) {
		perror("uffd_selfwait: set-up");
		return 2;
	}
	if (wp)
		area[0] = 1;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) || (wp && ioctl(uffd, UFFDIO_WRITEPROTECT, &prot))) {
		perror("uffd_selfwait: register");
		return 2;
	}
	printf("uffd_selfwait: writing the %s page at %p\n", wp ? "write-protected" : "missing", (void *)area);
	fflush(stdout);
	area[0] = 42;
	printf("uffd_selfwait: resumed, the page holds %d\n", area[0]);
	return 0;
}
