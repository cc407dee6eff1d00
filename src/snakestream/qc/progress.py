"""How far a run is, from the files on disk alone: blocks, slabs, rate and ETA.

Nothing here talks to Snakemake or locks its working directory, so it works from
another shell (or another host on the shared file system) while a run goes on.

Times come from file modification times:

* a block is finished when its file ``<output>/blocks/zNNNN/yNNNN/<id>.npz`` is written
  (written once, atomically, at the end of its job): its mtime is its completion time;
* the run started at the oldest log file under ``<output>/logs/`` (every rule writes
  one when its job starts; the first is the fixed grid or the global stage). After a
  restart the elapsed time still counts from the first run's start.

Block categories (they add up to the block grid):

``ok``, ``fallback``
    block file written, with that status;
``empty``
    block file written, status ``skipped``: the block passed the foreground threshold
    but its crop held no signal (or fell outside the moving image) at run time;
``below threshold``
    the fixed mask's foreground fraction is below ``blocks.foreground_fraction``: never
    a job, nothing to wait for;
``failed``
    no block file, and its log holds an error;
``left``
    the remaining blocks to be aligned (failed ones included: a rerun retries them).
"""

import glob
import os
import time
from dataclasses import dataclass, field

from snakestream.errors import BlockFileError
from snakestream.fields.blockfile import load_block

RATE_WINDOW = 600.0  # seconds of recent block completions the rate is measured over


@dataclass
class Progress:
    """A snapshot of a run, see the module docstring for the categories.

    Attributes
    ----------
    counts : dict
        Blocks per category: ok, fallback, empty, unreadable, failed, left, below threshold.
    total : int
        Blocks of the grid.
    failed : list of str
        Ids of the failed blocks, sorted.
    slabs : dict
        {"gather": (done, of), "warp": (done, of)}.
    started : float or None
        Epoch seconds the run started (oldest log), None before any job.
    finished_times : list of float
        Completion times (epoch seconds) of the block files, sorted.
    now : float
        When the snapshot was taken (epoch seconds).
    """

    counts: dict
    total: int
    failed: list
    slabs: dict
    started: float = None
    finished_times: list = field(default_factory=list)
    now: float = 0.0

    def rate(self, *, window=RATE_WINDOW):
        """Blocks finished per minute over the last ``window`` seconds (or since the
        run started, if that is shorter); 0.0 when none finished in it."""
        if self.started is None:
            return 0.0
        span = min(window, self.now - self.started)
        recent = sum(t >= self.now - span for t in self.finished_times)
        return 60.0 * recent / span if span > 0 else 0.0

    def eta_seconds(self, *, window=RATE_WINDOW):
        """Seconds until the blocks left are done at the current rate; 0 when none are
        left, None when nothing finished recently (no rate to extrapolate)."""
        if self.counts["left"] == 0:
            return 0.0
        rate = self.rate(window=window)
        return 60.0 * self.counts["left"] / rate if rate > 0 else None


def block_files(out):
    """{block id: path} of the block files written so far under ``out``."""
    return {os.path.basename(p)[:-4]: p for p in glob.glob(f"{out}/blocks/z*/y*/*.npz")}


def has_error(log):
    """Whether a job's log file holds an error (a traceback or an ERROR line)."""
    with open(log, errors="replace") as fh:
        text = fh.read()
    return "ERROR" in text or "Traceback" in text


def failed_blocks(out, written):
    """Ids of blocks with no file (not in ``written``) whose log holds an error, sorted."""
    return sorted(os.path.basename(log)[:-4]
                  for log in glob.glob(f"{out}/logs/blocks/z*/y*/*.log")
                  if os.path.basename(log)[:-4] not in written and has_error(log))


def error_logs(out, *, since=0.0):
    """Logs under ``<out>/logs`` written at or after ``since`` (epoch seconds) that hold
    an error, oldest first: where to look after a failed run."""
    logs = [p for p in glob.glob(f"{out}/logs/**/*.log", recursive=True)
            if os.path.getmtime(p) >= since and has_error(p)]
    return sorted(logs, key=os.path.getmtime)


def run_start(out):
    """Epoch seconds of the oldest log file under ``<out>/logs`` (None if none)."""
    logs = glob.glob(f"{out}/logs/**/*.log", recursive=True)
    return min(os.path.getmtime(p) for p in logs) if logs else None


def block_counts(out, grid):
    """Block categories of the module docstring, the failed ids and completion times.

    Parameters
    ----------
    out : str
        The run's output folder.
    grid : snakestream.grid.layout.BlockGrid
        The block grid (``Layout.from_config(cfg).blocks``).

    Returns
    -------
    counts : dict
    failed : list of str
    times : list of float
        Sorted mtimes (epoch seconds) of the block files.
    """
    counts = {"ok": 0, "fallback": 0, "empty": 0, "unreadable": 0}
    label = {"ok": "ok", "fallback": "fallback", "skipped": "empty"}
    files = block_files(out)
    times = []
    for path in files.values():
        try:
            counts[label[load_block(path)[1]["status"]]] += 1
            times.append(os.path.getmtime(path))
        except (BlockFileError, FileNotFoundError):  # half-written, or replaced meanwhile
            counts["unreadable"] += 1
    failed = failed_blocks(out, files)
    n_aligned = int(grid.aligned.sum())
    counts["failed"] = len(failed)
    counts["left"] = max(n_aligned - sum(counts[k] for k in ("ok", "fallback", "empty")), 0)
    counts["below threshold"] = len(grid.ids) - n_aligned
    return counts, failed, sorted(times)


def slab_counts(out, layout):
    """{"gather": (done, of), "warp": (done, of)}: slab markers written per stage."""
    return {stage: (len(glob.glob(f"{out}/{stage}/slab_*.json")), layout.n_slabs)
            for stage in ("gather", "warp")}


def snapshot(cfg, layout, *, now=None):
    """The :class:`Progress` of the run of a validated config.

    Parameters
    ----------
    cfg : dict
        Validated config (:func:`snakestream.config.load`).
    layout : snakestream.grid.layout.Layout
        ``Layout.from_config(cfg)``.
    now : float, optional
        Epoch seconds of the snapshot; the current time by default.
    """
    out = cfg["output"].rstrip("/")
    if layout.blocks is not None:
        counts, failed, times = block_counts(out, layout.blocks)
        total = len(layout.blocks.ids)
    else:
        counts, failed, times, total = {"left": 0}, [], [], 0
    return Progress(counts=counts, total=total, failed=failed, slabs=slab_counts(out, layout),
                    started=run_start(out), finished_times=times,
                    now=time.time() if now is None else now)


def duration(seconds):
    """``1h02m``, ``3m05s`` or ``12s`` for a number of seconds; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_progress(progress, *, window=RATE_WINDOW, max_ids=20):
    """The lines ``snakestream progress`` prints for a :class:`Progress`."""
    lines = []
    c = progress.counts
    if progress.total:
        done = c["ok"] + c["fallback"] + c["empty"] + c["below threshold"]
        lines.append(f"blocks: {done} of {progress.total} done (ok {c['ok']} | fallback "
                     f"{c['fallback']} | empty {c['empty']} | below threshold "
                     f"{c['below threshold']}) | failed {c['failed']} | left {c['left']}"
                     + (f" | unreadable {c['unreadable']}" if c["unreadable"] else ""))
        if progress.failed:
            lines.append("failed: " + " ".join(progress.failed[:max_ids])
                         + (" ..." if len(progress.failed) > max_ids else ""))
    elapsed = None if progress.started is None else progress.now - progress.started
    lines.append(f"elapsed {duration(elapsed)} | rate {progress.rate(window=window):.1f} "
                 f"blocks/min (last {duration(window)}) | "
                 f"ETA {duration(progress.eta_seconds(window=window))}")
    for stage, (n, of) in progress.slabs.items():
        lines.append(f"{stage}: {n} of {of} slabs")
    return "\n".join(lines)
