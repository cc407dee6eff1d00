"""The Snakemake layer: what rule scripts and rules/*.smk need, and nothing else.

Owns the rule context of a script (threads, log, one-line errors), cluster resources
derived from the config, the block job and the warm worker that runs block jobs
locally, and the workaround for Snakemake's scheduler timers. It is the only package
that knows Snakemake.

May import: every other package of snakestream, and snakemake.
"""
