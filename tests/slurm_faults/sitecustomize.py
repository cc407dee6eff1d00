"""TEST-ONLY fault injection for align_block jobs on the real SLURM (tests/test_slurm.py).

Nothing in the workflow imports this. A test puts this folder on ``PYTHONPATH`` and
sets ``SNAKESTREAM_TEST_FAULTS`` to a JSON file; Python then imports this module at
start-up in every process of that run (the SLURM jobs inherit the environment), and
it acts only in ``scripts/align_block.py`` processes, before the block job starts::

    {"events": "/tmp/.../events.jsonl",
     "blocks": {"z0000_y0000_x0001": {"ballast_mb": 500},   # hold this much memory, every attempt
                "z0001_y0000_x0000": {"sleep_once": 150}},  # sleep before the first attempt only
     "roles": [{"name": "timeout", "sleep_once": 150}]}     # the same, for the blocks that
                                                            # start first (in this order)

``ballast_mb`` makes the block's job step use more memory than its first request (the
retry asks for twice as much); ``sleep_once`` makes its first attempt outlive a short
time limit, or gives a test time to ``scancel`` it (a marker file next to the events
file makes later attempts skip the sleep). ``roles`` go to the first blocks that start,
whichever they are (``roles.json`` next to the events file says which got which), so
a fault can be timed from the start of the block stage. Every align_block process appends a JSON
line (block, event, SLURM job id, time) to the events file.
"""
import fcntl
import json
import os
import sys
import time


def _block_id():
    """The block of this align_block process: its output file's name (rules/blocks.smk:
    ``align_block.py THREADS TABLE AFFINE OUTPUT LOG SETTINGS``)."""
    return os.path.basename(sys.argv[4]).rsplit(".", 1)[0]


def _record(events, **entry):
    with open(events, "a") as fh:
        fh.write(json.dumps({**entry, "job": os.environ.get("SLURM_JOB_ID"),
                             "time": time.time()}) + "\n")


def _role(spec, bid):
    """This block's role: kept from an earlier attempt, else the next unassigned one."""
    path = os.path.join(os.path.dirname(spec["events"]), "roles.json")
    with open(path + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        roles = {}
        if os.path.exists(path):
            with open(path) as fh:
                roles = json.load(fh)
        if bid not in roles and len(roles) < len(spec.get("roles", [])):
            roles[bid] = spec["roles"][len(roles)]
            with open(path + ".tmp", "w") as fh:
                json.dump(roles, fh)
            os.replace(path + ".tmp", path)
        return roles.get(bid, {})


def _inject():
    spec_path = os.environ.get("SNAKESTREAM_TEST_FAULTS")
    if not spec_path or len(sys.argv) < 7 or not sys.argv[0].endswith("align_block.py"):
        return
    with open(spec_path) as fh:
        spec = json.load(fh)
    bid = _block_id()
    events = spec["events"]
    _record(events, block=bid, event="start")
    fault = spec.get("blocks", {}).get(bid) or _role(spec, bid)
    if fault.get("ballast_mb"):
        global _BALLAST
        _BALLAST = b"\x01" * (int(fault["ballast_mb"]) << 20)  # every page written: resident
        _record(events, block=bid, event="ballast")
        time.sleep(5)  # SLURM polls the step's memory every second (JobAcctGatherFrequency)
    marker = os.path.join(os.path.dirname(events), f"{bid}.slept")
    if fault.get("sleep_once") and not os.path.exists(marker):
        open(marker, "w").close()
        _record(events, block=bid, event="sleep")
        time.sleep(float(fault["sleep_once"]))


_inject()
