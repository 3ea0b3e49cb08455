"""Running ``python -m chrononaut.demo`` as a child process, as a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

#: Long enough for a first start of the embedded server on a busy machine; only a
#: hung demo ever waits this long.
START_TIMEOUT = 180


def start_demo(
    temp_dir: Path, *args: str, ignore_sigint: bool = False
) -> tuple[subprocess.Popen[str], str, str]:
    """Start the demo on a free port with its temporary files under ``temp_dir``.

    ``ignore_sigint`` starts it the way a shell starts a background job, with SIGINT
    ignored.

    :return: the process, the URL it printed, and what it printed before the URL.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "chrononaut.demo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(temp_dir)},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        if ignore_sigint
        else None,
    )
    watchdog = threading.Timer(START_TIMEOUT, process.kill)
    watchdog.start()
    printed = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"running at (http://\S+)", line)
            if found:
                return process, found.group(1), "".join(printed)
            printed.append(line)
    finally:
        watchdog.cancel()
    raise AssertionError(f"the demo exited with {process.wait()} before printing its URL")


def stop_demo(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> str:
    """Send ``signum`` to the demo and wait for it to exit.

    :return: what it printed after its URL.
    """
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    return output


def servers_under(directory: Path) -> list[psutil.Process]:
    """The running PostgreSQL processes whose data directory is under ``directory``."""
    found = []
    for candidate in psutil.process_iter(["name", "cmdline"]):
        cmdline = candidate.info["cmdline"] or []
        if candidate.info["name"] == "postgres" and any(str(directory) in part for part in cmdline):
            found.append(candidate)
    return found
