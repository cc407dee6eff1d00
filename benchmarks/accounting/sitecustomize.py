"""Per-process accounting for benchmarks/pipeline_bench.py (inactive unless asked).

pipeline_bench.py puts this folder first on PYTHONPATH and sets
SNAKESTREAM_BENCH_ACCOUNT to a file; every Python process of the run (Snakemake and
each job's script) then appends one JSON line at exit: its command line, wall time
since the process started, user+system CPU seconds and peak resident memory. Job
scripts are told apart by their file name (Snakemake copies a rule's script to
``.snakemake/scripts/tmpXXXX.<name>.py``). The warm worker's processes
(``src/snakestream/smk/worker.py``) also say their role (``worker``, a job's ``client``, the
worker's ``child`` running a job, or a ``job`` run in its own process) and the rule and
wildcards of the job they serve; a child's record covers it from its fork on.
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
        rec = {"argv": [a[:200] for a in sys.argv[:3]], "pid": os.getpid(),
               "start": end - _elapsed(), "end": end,
               "cpu_s": t.user + t.system, "peak_mem_mb": usage.ru_maxrss / 1024}
        rec.update(globals().get("_REG", {}))
        smk = getattr(sys.modules.get("__main__"), "snakemake", None)  # a job's script
        if smk is not None:
            try:
                rec["rule"] = smk.rule
                rec["wildcards"] = dict(smk.wildcards.items())
            except Exception:
                pass
        # the warm worker (src/snakestream/smk/worker.py): the worker itself, a job's client
        # (its shell process), a forked child running a job, or a job run in-process
        role = os.environ.get("SNAKESTREAM_PROCESS_ROLE")  # smk/worker.py's ROLE_ENV
        if role:
            rec["worker_role"] = role
            job = json.loads(os.environ.get("SNAKESTREAM_JOB") or "{}")  # its JOB_ENV
            if job:
                rec["rule"] = job.get("rule")
                rec["wildcards"] = job.get("wildcards")
        try:
            with open(_PATH, "a") as fh:  # one short line per write: appends do not interleave
                fh.write(json.dumps(rec) + "\n")
        except OSError:
            pass

    atexit.register(_record)

if _PATH:
    # Time spent inside registration steps (CPU and wall), by wrapping
    # snakestream.register.align.run_step as soon as that module is imported.
    import importlib.abc
    import importlib.util

    _REG = {"registration_cpu_s": 0.0, "registration_wall_s": 0.0, "steps": 0}

    def _wrap(module):
        inner = module.run_step

        def run_step(*args, **kwargs):
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                _REG["registration_cpu_s"] += time.process_time() - c0
                _REG["registration_wall_s"] += time.perf_counter() - t0
                _REG["steps"] += 1

        module.run_step = run_step

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "snakestream.register.align":
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            exec_module = loader.exec_module

            def exec_and_wrap(module):
                exec_module(module)
                _wrap(module)

            loader.exec_module = exec_and_wrap
            return spec

    sys.meta_path.insert(0, _Finder())
