"""What every rule script does first: pin threads, log to the rule's log, fail in one line."""

import contextlib
import os
import re
import sys
import traceback

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMEXPR_NUM_THREADS",
                "BLOSC_NTHREADS")


def pin_threads(threads):
    """Limit ITK, OpenMP, BLAS and Blosc to ``threads`` so a 1-core job uses 1 core."""
    threads = max(1, int(threads))
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        import numcodecs.blosc as blosc

        blosc.set_nthreads(threads)
    except Exception:  # blosc is optional for some stores
        pass
    return threads


@contextlib.contextmanager
def rule_context(snakemake, threads=None):
    """Pin threads (``threads`` overrides the job's), send output to ``snakemake.log[0]``, turn known errors into one line.

    A :class:`~snakestream.errors.SnakestreamError` is written to the log and to
    stderr as its single line and the job exits with status 1; other errors keep
    their traceback in the log.
    """
    from snakestream.errors import SnakestreamError

    pin_threads(threads or snakemake.threads)
    log_path = snakemake.log[0] if len(snakemake.log) else os.devnull
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        try:
            yield log
        except SnakestreamError as err:
            print(f"ERROR {err}", file=log, flush=True)
            print(f"snakestream error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
        except Exception:
            traceback.print_exc(file=log)
            raise


_DRY_RUN_FLAGS = {"-n", "--dry-run", "--dryrun", "--just-print"}


def is_dry_run(argv=None):
    """Whether the Snakemake command line (``sys.argv`` by default) asks for a dry run.

    At parse time Snakemake has not yet chosen its executor (``workflow.dryrun`` is
    False even under ``-n``), so the flags are read: ``-n``, ``--dry-run``,
    ``--dryrun`` and short flags grouped with n (``-np``).
    """
    argv = sys.argv[1:] if argv is None else argv
    return any(arg in _DRY_RUN_FLAGS or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", arg) is not None
               and arg.isascii() and "-" not in arg[1:] for arg in argv)
