"""Debian packages the tests need (SLURM, munge, MariaDB, Chromium), installed with
apt-get when a command is missing. Needs root; elsewhere the test is skipped with the
command to run. A failed install is an error, not a skip: CI must not pass without
the real tools."""
import fcntl
import os
import shutil
import subprocess

import pytest

_APT_UPDATED = []


def ensure_packages(packages, commands):
    """Install ``packages`` unless every one of ``commands`` is on PATH or in /usr/sbin."""
    if all(shutil.which(c) or os.path.exists(f"/usr/sbin/{c}") for c in commands):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{', '.join(commands)} missing and cannot be installed here (needs root "
                    f"and apt-get): apt-get install {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # test processes (pytest -n) install one at a time: apt holds a lock of its own
    with open("/tmp/snakestream-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(shutil.which(c) or os.path.exists(f"/usr/sbin/{c}") for c in commands):
            return
        steps = [] if _APT_UPDATED else [["apt-get", "update", "-qq"]]
        _APT_UPDATED.append(True)
        for cmd in steps + [["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *packages]]:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}"
                                   f"{proc.stderr[-2000:]}")
