"""The ``snakestream`` command: run the installed workflow, watch it, find blocks, start configs.

    snakestream run my.yaml [--profile local|lsf|slurm] [snakemake args...]
    snakestream progress my.yaml [--watch SECONDS]
    snakestream which-block my.yaml (--um Z Y X | --voxel Z Y X)
    snakestream init my.yaml --fixed PATH [--fixed-dataset D] --moving PATH [...]

Relative paths in a config are taken from the folder the command runs in (Snakemake's
working directory is that folder), as with ``snakemake --configfile``. Errors are one
line on stderr; exit status 2 for usage errors, 1 for bad input or a failed run.
"""

import argparse
import os
import subprocess
import sys
import time

from snakestream.config import load, workflow_root
from snakestream.errors import SnakestreamError

PROFILES = ("local", "lsf", "slurm")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit status 2) and no abbreviated options
    (``--pro`` is Snakemake's business, not a short ``--profile``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def snakemake_command(configfile, profile, extra, *, root=None):
    """The ``python -m snakemake`` command line ``snakestream run`` executes.

    Parameters
    ----------
    configfile : str
        The run's config.
    profile : str or None
        local, lsf, slurm (the installed profiles/NAME), a profile folder, or None.
    extra : list of str
        Further Snakemake arguments, passed unchanged (targets, --cores, -n, ...).
    root : str, optional
        The workflow folder; :func:`snakestream.config.workflow_root` by default.
    """
    root = workflow_root() if root is None else root
    cmd = [sys.executable, "-m", "snakemake", *extra, "--snakefile",
           os.path.join(root, "Snakefile"), "--directory", os.getcwd()]
    if profile:
        cmd += ["--profile", os.path.join(root, "profiles", profile)
                if profile in PROFILES else profile]
    return cmd + ["--configfile", configfile]  # last: --configfile takes several values


def cmd_run(args, extra):
    from snakestream.qc.progress import error_logs

    cfg = load(args.config)  # a bad config is one line here, before Snakemake starts
    started = time.time()
    status = subprocess.call(snakemake_command(args.config, args.profile, extra))
    if status != 0:  # the quiet profiles hide Snakemake's per-job error blocks
        logs = error_logs(cfg["output"].rstrip("/"), since=started - 1)
        if logs:
            print(f"snakestream run: Snakemake failed (status {status}); errors in: "
                  + " ".join(logs[:10]) + (" ..." if len(logs) > 10 else ""), file=sys.stderr)
    return status


def cmd_progress(args, extra):
    from snakestream.grid.layout import Layout
    from snakestream.qc.progress import format_progress, snapshot

    cfg = load(args.config)
    layout = Layout.from_config(cfg)
    while True:
        text = format_progress(snapshot(cfg, layout), window=args.window)
        print(time.strftime("%H:%M:%S"), text, sep="\n", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)


def cmd_which_block(args, extra):
    from snakestream.errors import InputError
    from snakestream.grid.blocks import read_table
    from snakestream.grid.layout import Layout
    from snakestream.grid.locate import voxel_of, which_block_lines

    cfg = load(args.config)
    out = cfg["output"].rstrip("/")
    if args.voxel:
        voxel = args.voxel
    else:
        layout = Layout.from_config(cfg)
        voxel = voxel_of(args.um, layout.spacing, origin=layout.origin).tolist()
    table = f"{out}/blocks/table.tsv"
    if not os.path.exists(table):
        raise InputError(table, "does not exist yet.",
                         f"run `snakestream run {args.config} {table}` first.")
    lines = which_block_lines(read_table(table), voxel, out=out, configfile=args.config)
    if not lines:
        raise InputError(args.config, f"voxel {voxel} is outside the fixed image.")
    print("\n".join(lines))
    return 0


def cmd_init(args, extra):
    from snakestream.smk.init_config import config_text, describe_input, write_config

    fixed = describe_input(args.fixed, args.fixed_dataset, option="--fixed-dataset")
    moving = describe_input(args.moving, args.moving_dataset, option="--moving-dataset")
    output = args.output or os.path.join(
        "results", os.path.splitext(os.path.basename(args.config))[0])
    write_config(args.config, config_text(fixed, moving, output=output,
                                          fixed_mask=args.fixed_mask,
                                          fixed_mask_dataset=args.fixed_mask_dataset),
                 force=args.force)
    load(args.config)  # what was written validates
    print(f"wrote {args.config}: fixed {fixed['shape']} voxels at {fixed['spacing']} µm, "
          f"moving {moving['shape']} at {moving['spacing']} µm")
    return 0


def parser():
    """The argument parser of ``snakestream`` and its sub-commands."""
    top = _Parser(prog="snakestream", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the installed workflow on a config",
                         description="Run the workflow; arguments after the config that "
                         "snakestream does not know go to Snakemake unchanged.")
    run.add_argument("config")
    run.add_argument("--profile", default="local",
                     help="local, lsf, slurm (the installed profiles/NAME) or a profile "
                     "folder; 'none' for no profile (default: local)")
    run.set_defaults(func=cmd_run)

    prog = sub.add_parser("progress", help="blocks done, failed and left; rate and ETA")
    prog.add_argument("config")
    prog.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                      help="print again every SECONDS")
    prog.add_argument("--window", type=float, default=600, metavar="SECONDS",
                      help="the rate counts blocks finished in the last SECONDS (default 600)")
    prog.set_defaults(func=cmd_progress)

    which = sub.add_parser("which-block", help="the block(s) covering a fixed voxel or point")
    which.add_argument("config")
    where = which.add_mutually_exclusive_group(required=True)
    where.add_argument("--voxel", nargs=3, type=int, metavar=("Z", "Y", "X"))
    where.add_argument("--um", nargs=3, type=float, metavar=("Z", "Y", "X"),
                       help="a fixed-image point in µm")
    which.set_defaults(func=cmd_which_block)

    init = sub.add_parser("init", help="write a commented config for a fixed/moving pair")
    init.add_argument("config", help="the YAML file to write")
    init.add_argument("--fixed", required=True, metavar="PATH")
    init.add_argument("--fixed-dataset", metavar="D")
    init.add_argument("--fixed-mask", metavar="PATH")
    init.add_argument("--fixed-mask-dataset", metavar="D")
    init.add_argument("--moving", required=True, metavar="PATH")
    init.add_argument("--moving-dataset", metavar="D")
    init.add_argument("--output", metavar="FOLDER",
                      help="the results folder (default: results/<config name>)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)
    return top


def main(argv=None):
    """Entry point of the ``snakestream`` console script; returns the exit status."""
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "run":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run" and args.profile == "none":
        args.profile = None
    try:
        return args.func(args, extra)
    except (SnakestreamError, FileNotFoundError) as err:
        print(f"snakestream {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def script_main(command, argv=None):
    """``scripts/progress.py`` and ``scripts/which_block.py``: the sub-command
    ``command`` with those scripts' ``--configfile X`` spelling of the config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--configfile" in argv:
        i = argv.index("--configfile")
        argv[i:i + 2] = argv[i + 1:i + 2]
    return main([command, *argv])


if __name__ == "__main__":
    sys.exit(main())
