"""Keep Snakemake's scheduler to one pending wake-up timer (snakemake/snakemake#3804).

With a job rate limit (``--max-jobs-per-timespan``; Snakemake's default is 100/1s),
every scheduling pass that still has ready jobs ends by starting a
``threading.Timer`` that wakes the scheduler after the timespan, so that jobs held
back by the limit are submitted later. That wake-up is itself a pass and starts
another timer, and every finished job adds a pass of its own. After k finished
blocks, k timer chains run side by side: k threads, and k passes per timespan, each
weighing every ready block. A block stage has thousands of ready jobs at once, so the
scheduler's CPU grows with the cube of the block count (829 s at 1951 blocks, on
2 cores), and at a few thousand blocks the process can no longer start threads.

One pending timer is all the rate limiter needs: whenever a pass ends, a wake-up
within one timespan is guaranteed. :func:`coalesce_reevaluation_timers` makes the
scheduler start a timer only when none is pending. Set the environment variable
``SNAKESTREAM_KEEP_SNAKEMAKE_TIMERS=1`` to leave Snakemake's behaviour unchanged.
"""

import os
import threading

OPT_OUT = "SNAKESTREAM_KEEP_SNAKEMAKE_TIMERS"
_LOCK = threading.Lock()


def _schedule_once(scheduler, delay):
    """Start a wake-up of ``scheduler`` after ``delay`` s unless one is pending."""
    def wake():
        with _LOCK:
            scheduler._snakestream_timer = None
        scheduler._open_jobs.release()

    with _LOCK:
        if getattr(scheduler, "_snakestream_timer", None) is not None:
            return
        timer = threading.Timer(delay, wake)
        timer.daemon = True
        scheduler._snakestream_timer = timer
        timer.start()


def coalesce_reevaluation_timers(scheduler_class=None):
    """Patch Snakemake's ``JobScheduler`` to keep at most one wake-up timer.

    Parameters
    ----------
    scheduler_class : type, optional
        The class to patch; default ``snakemake.scheduling.job_scheduler.JobScheduler``.

    Returns
    -------
    bool
        True if the class is patched (now or before); False if the opt-out variable
        is set or this Snakemake has no such method (then nothing is changed).
    """
    if os.environ.get(OPT_OUT):
        return False
    if scheduler_class is None:
        try:
            from snakemake.scheduling.job_scheduler import JobScheduler as scheduler_class
        except ImportError:
            return False
    if not hasattr(scheduler_class, "_schedule_reevalutation"):
        return False
    scheduler_class._schedule_reevalutation = _schedule_once
    return True
