"""Checks of the cluster set-up that the workflow runs before any job (rules/cluster.smk).

Pure functions of what the caller gathered (resources given on the command line or
in the profile, command output), so they are testable without a cluster.

LSF project: with no ``lsf_project`` resource, snakemake-executor-plugin-lsf (0.3)
guesses one from ``bhist -l -a | grep Project`` (the most common ``Project <name>``).
A fresh account has no job history, and then the plugin either raises a bare
``IndexError`` in ``get_project`` or submits without ``-P`` (which sites that bill by
project reject, job by job). The workflow stops first, with one line saying what to set.
"""
import re
from collections import Counter

LSF_PROJECT = "lsf_project"  # the LSF plugin's resource for bsub -P
LSF_PROJECT_FIX = ("set it with --default-resources lsf_project=NAME (a command-line "
                   "--default-resources replaces the profile's list: repeat lsf_queue etc.) "
                   "or under default-resources: in profiles/lsf/config.yaml")


def guess_lsf_project(bhist_output):
    """The project the LSF plugin would guess from ``bhist -l -a`` output, or None.

    As the plugin: the ``Project <name>`` entries of the lines containing 'Project',
    most common first (``bhist -l`` prints ``Job <id>, User <u>, Project <name>, ...``).
    """
    lines = "\n".join(l for l in (bhist_output or "").splitlines() if "Project" in l)
    projects = re.findall(r"Project <([^<>]+)>", lines)
    return Counter(projects).most_common(1)[0][0] if projects else None


def has_resource(name, default_resources, set_resources):
    """Whether ``name`` is given for every job: in the default resources, or per rule."""
    return bool((default_resources or {}).get(name)) or any(
        (res or {}).get(name) for res in (set_resources or {}).values())


def bsub_project_given(default_resources, set_resources):
    return has_resource(LSF_PROJECT, default_resources, set_resources)


def bsub_project_error(default_resources, set_resources, bhist_output):
    """One line telling the user to set lsf_project, or None when LSF will get one."""
    if bsub_project_given(default_resources, set_resources):
        return None
    if guess_lsf_project(bhist_output) is not None:
        return None
    return ("snakestream: no LSF project: the lsf_project resource is not set and your "
            f"LSF job history (bhist -l -a) names none to guess from; {LSF_PROJECT_FIX}.")
