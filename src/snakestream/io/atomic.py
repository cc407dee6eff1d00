"""Atomic writes: a file or directory appears complete under its name, or not at all.

Every output is written under a temporary name next to its final path and renamed
onto it on success, so an interrupted job never leaves a half-written output that a
re-run would take as done.
"""

import contextlib
import json
import os
import secrets
import shutil

from snakestream.errors import InputError

__all__ = ["atomic_path", "remove_path", "replace_path", "require_writable_folder", "write_json"]


def remove_path(path):
    """Delete the file, link or directory tree at `path` if there is one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def replace_path(src, dst):
    """Move `src` onto `dst`, replacing a file or directory already there."""
    if os.path.lexists(dst) and (os.path.isdir(dst) or os.path.isdir(src)):
        folder, name = os.path.split(dst)
        old = os.path.join(folder, f".{name}.old-{os.getpid()}-{secrets.token_hex(3)}")
        os.rename(dst, old)
        try:
            os.replace(src, dst)
        except OSError:
            os.rename(old, dst)
            raise
        remove_path(old)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; move it onto `path` on success.

    The temporary name is ``.<name>.tmp-<pid>-<random><suffix>`` in the same
    directory (created if missing), keeping the suffix so format detection
    works. On normal exit it replaces `path` (file or directory); on an
    exception the temporary is removed and the exception re-raised.

    Parameters
    ----------
    path : str or os.PathLike
        Final path of the file or directory to write.

    Yields
    ------
    str
        Absolute temporary path to write to instead of `path`.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(name)[1]
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}")
    try:
        yield tmp
        replace_path(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (the slab/stage markers of the workflow)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)


def _nearest_existing(path):
    """`path` or its closest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def require_writable_folder(path, *, where="output", create=True):
    """InputError (one line naming `path` and the fix) unless a folder can be written there.

    Parameters
    ----------
    path : str
        The folder (it need not exist yet).
    where : str
        The config key that names it, for the message.
    create : bool
        Create the folder and write and delete a probe file in it (the real test);
        False (a dry run) writes nothing and only checks that the closest existing
        ancestor is a folder this process may write into.
    """
    fix = (f"set {where} to a folder you can write to, or make {path} writable "
           f"(e.g. mkdir -p {path} && chmod u+w {path}).")
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise InputError(f"{where} {path}", f"cannot be a folder: {existing} is a file.",
                         f"set {where} to another folder, or move the file {existing} away.")
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"{where} {path}", f"is not writable ({existing} is read-only "
                             "for this user).", fix)
        return
    probe = os.path.join(path, f".write-test-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise InputError(f"{where} {path}", f"is not writable ({err.strerror}).", fix) from None
