"""What a block costs on a real SLURM besides its registration, next to a local run.

Starts the one-node SLURM of the tests (tests/realslurm.py: Debian's slurmctld/slurmd,
installed when missing; root), generates a demo pair of ``--shape`` voxels cut into
12x48x48 blocks with the tests' few iterations (registration well under a second a
block, so the overhead is not hidden in it), and runs the block stage

* locally: ``--profile profiles/local --cores 1`` (the warm worker, one block at a time);
* on SLURM: ``--profile profiles/slurm`` with the squeue status check (no accounting),
  batches of ``--group`` blocks (the profile's 20), 2 CPUs.

From SLURM's own logs (millisecond timestamps: slurmctld's submit/start/complete of
each batch job, slurmd's launch/end of each job step) it splits each batch into

    queue      submission -> the batch job starts (sbatch accepted -> allocation)
    batch      allocation -> first block's step (the batch's own Snakemake starts)
    step       each block's step, minus its registration (srun, the step's Snakemake
               start, the block process's imports, reading crops, writing its file)
    tail       last step -> batch ends

and reports per block: (queue + batch + tail) / batch size + step overhead, against the
block's registration time (QC ``seconds``). The local figure is the block stage's span
over the blocks minus the mean registration. Snakemake's polling delay (the SLURM
plugin adds 10 s per poll that saw no job finish) is reported apart: it holds no CPU
but delays the next stage.

Usage::

    .venv/bin/python benchmarks/slurm_overhead.py [--shape 48 192 192] [--group 20]
        [--out benchmarks/out/slurm_overhead]

Prints a table and writes ``slurm_overhead.json`` under --out.
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import realslurm  # noqa: E402
from snakestream.fields.blockfile import load_block  # noqa: E402
from snakestream.demo.scene import make_demo  # noqa: E402
from conftest import cluster_config, write_config  # noqa: E402

STAMP = r"\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\]"


def _t(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def _events(text, pattern):
    """{id: time} of the log lines matching ``pattern`` (one group: the id)."""
    return {m.group(2): _t(m.group(1)) for m in re.finditer(STAMP + r" " + pattern, text)}


def block_qc(out):
    return [load_block(f)[1] for f in glob.glob(str(out / "blocks" / "z*" / "y*" / "*.npz"))]


def snakemake(args, env, log):
    t0 = time.time()
    with open(log, "w") as fh:
        code = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, env=env,
                              stdout=fh, stderr=subprocess.STDOUT).returncode
    if code:
        sys.exit(f"snakemake failed ({code}), see {log}")
    return time.time() - t0


def local_run(folder, data):
    cfg = write_config(folder / "local.yaml", cluster_config(data, folder / "local"))
    targets = [str(folder / "local" / "blocks" / "qc.tsv")]
    snakemake([*targets, "--profile", "profiles/local", "--cores", "1", "--configfile", cfg,
               "--directory", str(folder / "work_local")], os.environ, folder / "local.log")
    out = folder / "local"
    spans = []
    for bench in glob.glob(str(out / "benchmarks" / "blocks" / "z*" / "y*" / "*.tsv")):
        seconds = float(open(bench).read().splitlines()[1].split("\t")[0])
        log = bench.replace(str(out / "benchmarks"), str(out / "logs")).replace(".tsv", ".log")
        end = os.path.getmtime(log)
        spans.append((end - seconds, end))
    qcs = block_qc(out)
    span = max(e for _, e in spans) - min(s for s, _ in spans)
    registration = statistics.mean(q["seconds"] for q in qcs)
    return {"blocks": len(qcs), "registration_s": round(registration, 3),
            "span_s": round(span, 1),
            "overhead_per_block_s": round(span / len(qcs) - registration, 2)}


def slurm_run(folder, data, cluster, group):
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    profile = folder / "profile_slurm"
    profile.mkdir(exist_ok=True)
    # the profile's documented switch for a cluster without accounting
    (profile / "config.yaml").write_text(text.replace("# slurm-status-command: squeue",
                                                      "slurm-status-command: squeue"))
    cfg = write_config(folder / "slurm.yaml", cluster_config(data, folder / "slurm"))
    targets = [str(folder / "slurm" / "blocks" / "qc.tsv")]
    log = folder / "slurm.log"
    wall = snakemake([*targets, "--profile", str(profile), "--configfile", cfg,
                      "--directory", str(folder / "work_slurm"), "--group-components",
                      f"blocks={group}"], cluster.env, log)
    run_id = re.search(r"SLURM run ID: (\S+)", log.read_text()).group(1)
    comments = dict(line.split("|", 1) for line in cluster.run(
        "squeue", "-h", "-t", "all", "-n", run_id, "-o", "%i|%k").splitlines())
    batches = [j for j, c in comments.items() if c == "rule_blocks_align_block"]
    ctld, slurmd = cluster.log("slurmctld"), cluster.log("slurmd")
    submit = _events(ctld, r"_slurm_rpc_submit_batch_job: JobId=(\d+)")
    start = _events(ctld, r"(?:sched/backfill: _start_job: Started|sched: Allocate) JobId=(\d+)")
    done = _events(ctld, r"_job_complete: JobId=(\d+) done")
    step_start = _events(slurmd, r"launch task StepId=(\d+\.\d+)")
    step_end = _events(slurmd, r"\[(\d+\.\d+)\] done with job")
    qcs = block_qc(folder / "slurm")
    rows = []
    for job in batches:
        members = [q for q in qcs if q["slurm_job_id"] == job]
        steps = sorted(s for s in step_start if s.split(".")[0] == job)
        first, last = min(step_start[s] for s in steps), max(step_end[s] for s in steps)
        step_s = sum(step_end[s] - step_start[s] for s in steps)
        registration = sum(q["seconds"] for q in members)
        rows.append({"job": job, "blocks": len(members), "steps": len(steps),
                     "queue_s": start[job] - submit[job], "batch_s": first - start[job],
                     "tail_s": done[job] - last, "step_overhead_s": step_s - registration,
                     "registration_s": registration, "wall_s": done[job] - submit[job]})
    n = sum(r["blocks"] for r in rows)
    per_block = {k: sum(r[k] for r in rows) / n
                 for k in ("queue_s", "batch_s", "tail_s", "step_overhead_s", "registration_s")}
    # the step's overhead split: the block's own process (its Snakemake benchmark, the
    # shell command's wall: interpreter, imports, I/O) and the rest (srun, the step's
    # Snakemake parsing the workflow and building its DAG)
    walls = [float(open(f).read().splitlines()[1].split("\t")[0]) for f in
             glob.glob(str(folder / "slurm" / "benchmarks" / "blocks" / "z*" / "y*" / "*.tsv"))]
    per_block["block_process_s"] = statistics.mean(walls) - per_block["registration_s"]
    per_block["step_snakemake_s"] = per_block["step_overhead_s"] - per_block["block_process_s"]
    # Snakemake noticing a finished batch: its log's 'Finished jobid' (1 s resolution)
    return {"blocks": n, "batches": len(rows), "group": group, "run_wall_s": round(wall, 1),
            "per_block": {k: round(v, 3) for k, v in per_block.items()},
            "overhead_per_block_s": round(per_block["queue_s"] + per_block["batch_s"]
                                          + per_block["tail_s"] + per_block["step_overhead_s"], 2),
            "batches_detail": [{k: (round(v, 2) if isinstance(v, float) else v)
                                for k, v in r.items()} for r in rows]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 192, 192])
    parser.add_argument("--group", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "slurm_overhead"))
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if not (data / "truth.npz").exists():
        make_demo(data, shape=tuple(args.shape), spacing=(0.8, 0.4, 0.4), seed=5)
    local = local_run(folder, data)
    print(f"local: {local}", flush=True)
    with realslurm.running_cluster() as cluster:
        slurm = slurm_run(folder, data, cluster, args.group)
    result = {"shape": args.shape, "local": local, "slurm": slurm,
              "load_average_1min": os.getloadavg()[0]}
    (folder / "slurm_overhead.json").write_text(json.dumps(result, indent=1))
    pb = slurm["per_block"]
    print(f"\nblocks: local {local['blocks']}, SLURM {slurm['blocks']} in {slurm['batches']} batches")
    print(f"registration per block: local {local['registration_s']} s, SLURM {pb['registration_s']} s")
    print(f"overhead per block: local {local['overhead_per_block_s']} s, "
          f"SLURM {slurm['overhead_per_block_s']} s = queue {pb['queue_s']} + batch start "
          f"{pb['batch_s']} + step {pb['step_overhead_s']} (block process {pb['block_process_s']}, "
          f"srun + step's Snakemake {pb['step_snakemake_s']}) + tail {pb['tail_s']}")


if __name__ == "__main__":
    main()
