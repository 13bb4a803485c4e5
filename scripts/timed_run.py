"""
Run a command and copy its output to a log, each line prefixed with the seconds since the start.

    python3 scripts/timed_run.py LOG -- python3 train.py config/shakespeare_char_swiglu.py

The clock starts before the process does, so the times count start-up, imports and compilation:
the wall time a user waits. The command's exit status is passed on.
"""

import subprocess
import sys
import time


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: timed_run.py LOG -- COMMAND [ARG ...]")
    log_path, command = sys.argv[1], sys.argv[3:]
    start = time.time()
    with (
        open(log_path, "w") as log,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc,
    ):
        for line in proc.stdout:
            log.write(f"{time.time() - start:.2f}\t{line}")
            log.flush()
            sys.stdout.write(line)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
