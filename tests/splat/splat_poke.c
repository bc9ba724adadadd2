/* Test-only (tests/test_splat.py): poke the prctl the splat-on-request recipe adds, as an --exec program.
 * argv[1] "warn" (default) or "bug". Exit 0 when the call returned 0, 1 when it was refused (any kernel
 * without the hook: EINVAL). */
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/prctl.h>

#define UFFDPROBE_PR_SPLAT 0x75667370
#define SPLAT_WARN 0x5741524eUL
#define SPLAT_BUG 0x00425547UL

int main(int argc, char **argv)
{
	unsigned long what = (argc > 1 && !strcmp(argv[1], "bug")) ? SPLAT_BUG : SPLAT_WARN;

	if (prctl(UFFDPROBE_PR_SPLAT, what, 0UL, 0UL, 0UL)) {
		printf("prctl refused: %s\n", strerror(errno));
		return 1;
	}
	printf("prctl returned 0\n");
	return 0;
}
