"""Headless Chromium for the report tests: screenshots, the DOM after scripts ran, and
the page's console errors.

``ensure_chromium()`` installs Debian's ``chromium`` when it is missing (``apt-get``, as
root, like :mod:`realslurm` installs SLURM) and skips the test with the reason when it
cannot. ``load(url)`` runs the page once with ``--dump-dom`` and Chromium's stderr
logging (``--enable-logging=stderr --v=1``), which prints every console message as an
``INFO:CONSOLE`` line; ``screenshot(url, path)`` writes a PNG. ``--virtual-time-budget``
lets the page's asynchronous work (image decoding, canvas drawing) finish first.
"""
import os
import re
import shutil
import subprocess

import debian

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=8000", "--no-first-run", "--disable-extensions"]
# Chromium logs every console message (console.log/error, uncaught exceptions, rejected
# promises) as `INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`, without its
# level: the report page logs nothing, so every one counts
_CONSOLE = re.compile(r'CONSOLE[:(]\d+\)?\] "(.*)", source: (.*)')


def chromium():
    """Path of the chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def ensure_chromium():
    """The chromium binary, installed with apt-get when missing (root); else skip."""
    debian.ensure_packages(["chromium"], ["chromium"])
    return chromium()


def _run(args, tmp_dir, timeout=120):
    # a fresh profile per call: no state shared between loads
    profile = os.path.join(tmp_dir, f"profile-{len(os.listdir(tmp_dir))}")
    return subprocess.run([ensure_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


def console_errors(stderr):
    """Every console message in Chromium's stderr log (the log does not give their level:
    uncaught exceptions, rejected promises, console.error and console.log alike), as
    'message (source)' strings."""
    return [f"{m.group(1)} ({m.group(2)})"
            for m in map(_CONSOLE.search, stderr.splitlines()) if m]


def load(url, tmp_dir, window=(1400, 2400)):
    """(DOM after the scripts ran, console errors) of a page."""
    proc = _run(["--enable-logging=stderr", "--v=1", f"--window-size={window[0]},{window[1]}",
                 "--dump-dom", url], tmp_dir)
    return proc.stdout, console_errors(proc.stderr)


def screenshot(url, path, tmp_dir, window=(1400, 2400)):
    """Write a PNG screenshot of ``url``; returns the console errors of that load."""
    proc = _run(["--enable-logging=stderr", "--v=1", f"--window-size={window[0]},{window[1]}",
                 f"--screenshot={path}", url], tmp_dir)
    assert os.path.exists(path), proc.stderr[-2000:]
    return console_errors(proc.stderr)
