"""Paper cuts a daily user meets, each on the real command line: NO_COLOR, "did you mean" for a mistyped
scenario or recipe name."""
import os
import pty
import select
import subprocess
import sys

from uffdprobe.exitcodes import Exit


def _on_a_terminal(argv: list, env: dict, timeout: float = 300) -> tuple:
    """Run `python -m uffdprobe ARGV` with stdout and stderr on a pseudo-terminal: (exit status, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "uffdprobe", *argv], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env, cwd="/")
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise TimeoutError(out.decode(errors="replace")[-2000:])
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        status = proc.wait(timeout=60)
    return status, out.decode(errors="replace")


def test_no_color_turns_the_tables_colours_off(kf):
    """The matrix table on a terminal is coloured; with NO_COLOR set (any value but empty) it is not."""
    argv = ["matrix", "--kernel", "host", "--scenario", "cow-leak", "--memory", "anon-4k", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    status, coloured = _on_a_terminal(argv, env)
    assert status == Exit.OK, coloured
    assert "\033[32mPASS" in coloured  # PASS in green
    for value in ("1", "anything"):
        status, plain = _on_a_terminal(argv, {**env, "NO_COLOR": value})
        assert status == Exit.OK and "PASS" in plain and "\033[" not in plain, plain
    status, empty = _on_a_terminal(argv, {**env, "NO_COLOR": ""})
    assert status == Exit.OK and "\033[32mPASS" in empty  # an empty NO_COLOR does not count (no-color.org)
