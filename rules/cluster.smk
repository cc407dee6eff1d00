# Cluster set-up checks, run by the main Snakemake process when the run starts, before
# any job is submitted (the Snakefile's onstart; not in dry runs, not inside cluster
# jobs: only then is the executor known). Logic: src/snakestream/smk/cluster_checks.py.
import subprocess as _subprocess

from snakestream.smk import cluster_checks as _checks


def _resource_dict(resources):
    """{name: resource} of a Snakemake Resources mapping (None: empty)."""
    return dict(resources.items()) if resources is not None else {}


def check_cluster_setup():
    """Stop with one line before the first job when the cluster set-up cannot work."""
    plugin = workflow.executor_plugin
    if getattr(plugin, "name", None) != "lsf":
        return
    settings = workflow.resource_settings
    defaults = _resource_dict(getattr(settings, "default_resources", None))
    per_rule = {rule: _resource_dict(res)
                for rule, res in (getattr(settings, "overwrite_resources", None) or {}).items()}
    bhist = ""  # the job history the LSF plugin guesses a project from, only when needed
    if not _checks.bsub_project_given(defaults, per_rule):
        bhist = _subprocess.run("bhist -l -a", shell=True, capture_output=True, text=True).stdout
    problem = _checks.bsub_project_error(defaults, per_rule, bhist)
    if problem:
        raise WorkflowError(problem)
