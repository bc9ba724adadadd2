// SPDX-License-Identifier: GPL-2.0-only
/*
 * A workload stuck outside userfaultfd: vfork() a child that sleeps instead of calling exec, so the
 * parent waits in wait_for_vfork_done (TASK_KILLABLE: "D" in /proc) for as long as the child sleeps.
 * Usage: vfork_sleep SECONDS
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 600;
	pid_t child;

	printf("vfork_sleep: the vfork child sleeps %us before it exits\n", seconds);
	fflush(stdout);
	child = vfork();
	if (child == 0) {
		sleep(seconds);
		_exit(0);
	}
	waitpid(child, NULL, 0);
	return 0;
}
