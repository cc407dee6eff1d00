"""Errors that end a job with one clear line naming the file and the fix."""


class SnakestreamError(Exception):
    """Base class; ``str(err)`` is a single line meant for the user."""

    def __init__(self, where, problem, fix=None):
        self.where, self.problem, self.fix = str(where), problem, fix
        text = f"{where}: {problem}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(" ".join(text.split()))


class InputError(SnakestreamError):
    """An input volume, mask or point file is missing, unreadable or inconsistent."""


class ConfigError(SnakestreamError):
    """The configuration names an unknown key or an invalid value."""


class BlockFileError(SnakestreamError):
    """A per-block result file is missing, corrupt or from another run."""


class AlignmentError(SnakestreamError):
    """A registration step could not produce a usable transform."""
