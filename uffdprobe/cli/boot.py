# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe boot KERNEL -- COMMAND...`: run one command in a kernel booted under QEMU."""

import argparse
import sys

from uffdprobe.exitcodes import Exit, UffdprobeError
from .vocab import complete_kernel, completes, deprecated, write_json
from uffdprobe.vm.outcome import OUTCOME_EXIT


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `boot` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "boot",
        help="boot a kernel in QEMU and run one command in it",
        description="Boot KERNEL (a recipe name or .toml path, built or taken from the cache; a bzImage, "
        "vmlinuz or Debian linux-image .deb; optionally LABEL=KERNEL) in QEMU with the host root "
        "read-only, run COMMAND in it and exit with its status; 10 PANIC, 11 BOOT_FAIL, "
        "12 VM_TIMEOUT, 13 QEMU killed from outside, 14 results channel lost, 2 bad input.",
    )
    completes(
        p.add_argument("kernel", help="recipe name or .toml path, bzImage/vmlinuz path or a linux-image .deb"),
        complete_kernel,
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] to run in the guest")
    p.add_argument(
        "--accel",
        choices=["auto", "kvm", "tcg"],
        default="auto",
        help="accelerator (default: probe KVM once, cached, else TCG)",
    )
    p.add_argument(
        "--vm-timeout", dest="timeout", type=float, default=300, help="overall limit in seconds (default 300)"
    )
    p.add_argument("--timeout", dest="timeout", type=float, action=deprecated("--vm-timeout"), help=argparse.SUPPRESS)
    p.add_argument(
        "--silence-timeout", type=float, default=120, help="limit on console silence in seconds (default 120)"
    )
    p.add_argument(
        "--guest-memory-mb",
        dest="memory",
        type=int,
        default=1024,
        metavar="MIB",
        help="guest memory in MiB (default 1024)",
    )
    p.add_argument(
        "--memory", dest="memory", type=int, action=deprecated("--guest-memory-mb"), help=argparse.SUPPRESS
    )  # --memory is a memory kind in run, matrix and bisect
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument(
        "--results-dir",
        dest="run_dir",
        metavar="DIR",
        help="the folder for this boot's files: console log, channel, disks (default: a fresh one in the cache)",
    )
    p.add_argument("--run-dir", dest="run_dir", action=deprecated("--results-dir"), help=argparse.SUPPRESS)
    p.add_argument("--append", action="append", default=[], help="extra kernel argument (repeatable)")
    p.add_argument(
        "--json",
        metavar="FILE|-",
        help="write the boot result as JSON to FILE (- for stdout, instead of the guest command's output)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run_boot, error_prefix="uffdprobe boot")
    return p


def run_boot(args) -> int:
    """Handler of `boot`: returns the guest command's exit status or the outcome's exit code."""
    from uffdprobe.vm.boot import Terminated, boot
    from uffdprobe.exitcodes import UsageError
    from uffdprobe.run import kernel_arg

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no guest command: use `boot KERNEL -- COMMAND [ARGS...]`")
    if args.json:  # refused before the boot, not after it
        from uffdprobe.osutil import outputs

        outputs.check_all([("--json", args.json)])
    spec = kernel_arg.resolve(args.kernel, option="boot")
    if spec.kind == "host":
        raise UsageError(
            "boot host: the running kernel is not booted in QEMU; give a recipe, a bzImage "
            "or a .deb (run scenarios on the host with `uffdprobe run`)"
        )
    image = kernel_arg.bootable(spec, progress=not args.quiet)
    progress = None if args.quiet else (lambda msg: print(f"uffdprobe boot: {msg}", file=sys.stderr, flush=True))
    try:
        result = boot(
            image,
            command,
            timeout=args.timeout,
            silence_timeout=args.silence_timeout,
            accel=None if args.accel == "auto" else args.accel,
            memory_mb=args.memory,
            cpus=args.cpus,
            run_dir=args.run_dir,
            extra_append=args.append,
            progress=progress,
        )
    except (KeyboardInterrupt, Terminated):
        raise UffdprobeError("interrupted; QEMU stopped, files written so far are kept", Exit.INTERRUPTED) from None
    if args.json:
        write_json(args.json, result.to_json())
    if args.json != "-":
        from uffdprobe.vm.console import guest_output

        for line in guest_output(result.console_log.read_text(errors="replace")):
            print(line)
    if result.outcome == "OK":
        if not args.quiet:
            print(
                f"uffdprobe boot: OK, command exited {result.exit_status} "
                f"({result.timings['launch_to_command_done']}s after launch)",
                file=sys.stderr,
            )
        return min(max(result.exit_status, 0), 255)
    for line in result.panic_lines[-30:]:
        print(f"  {line}", file=sys.stderr)
    print(f"uffdprobe boot: {result.outcome}: {result.reason}; console log: {result.console_log}", file=sys.stderr)
    return OUTCOME_EXIT[result.outcome]
