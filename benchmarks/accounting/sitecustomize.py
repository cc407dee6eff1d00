"""Per-process accounting for benchmarks/pipeline_bench.py (inactive unless asked).

pipeline_bench.py puts this folder first on PYTHONPATH and sets
SNAKESTREAM_BENCH_ACCOUNT to a file; every Python process of the run (Snakemake and
each job's script) then appends one JSON line at exit: its command line, wall time
since the process started, user+system CPU seconds and peak resident memory. Job
scripts are told apart by their file name (Snakemake copies a rule's script to
``.snakemake/scripts/tmpXXXX.<name>.py``).
"""
import os

_PATH = os.environ.get("SNAKESTREAM_BENCH_ACCOUNT")
if _PATH:
    import atexit
    import json
    import resource
    import sys
    import time

    def _elapsed():
        """Seconds since this process started (from /proc, so interpreter start-up counts)."""
        try:
            with open("/proc/self/stat") as fh:
                ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime") as fh:
                return float(fh.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
        except Exception:
            return float("nan")

    def _record():
        t = os.times()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        end = time.time()
        rec = {"argv": sys.argv[:3], "pid": os.getpid(), "start": end - _elapsed(), "end": end,
               "cpu_s": t.user + t.system, "peak_mem_mb": usage.ru_maxrss / 1024}
        try:
            with open(_PATH, "a") as fh:  # one short line per write: appends do not interleave
                fh.write(json.dumps(rec) + "\n")
        except OSError:
            pass

    atexit.register(_record)
