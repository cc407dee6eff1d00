# Cluster resources of every rule (mem_mb in MB, runtime in minutes), derived from the
# config and the image metadata by snakestream.smk.resources, and scaled by Snakemake's
# retry `attempt`. Override per rule: --set-resources align_block:mem_mb=2000.
from snakestream.smk import resources as _res


def block_mem_mb(wildcards, attempt):
    """One block job: from the block size (core + overlap) and the moving margin."""
    return _res.block_mem_mb(CFG, attempt)


def block_runtime(wildcards, attempt):
    """One block job: from the block size and the block steps' iterations and sampling."""
    return _res.block_runtime_min(CFG, attempt, spacing=LAYOUT.spacing)


def global_mem_mb(wildcards, attempt):
    """The global alignment: both images at the finest global alignment spacing."""
    return _res.global_mem_mb(CFG, LAYOUT.shape, LAYOUT.spacing, attempt)


def global_runtime(wildcards, attempt):
    """The global alignment: from the image size and the global steps."""
    return _res.global_runtime_min(CFG, LAYOUT.shape, LAYOUT.spacing, attempt)


def _role_grid(role):
    """Shape (z,y,x) and spacing (µm) of the fixed or moving image."""
    if role == "fixed":
        return LAYOUT.shape, LAYOUT.spacing
    return LAYOUT.moving_shape, LAYOUT.moving_spacing


def auto_mask_mem_mb(wildcards, attempt):
    """An auto mask job: its image at auto_mask.spacing."""
    shape, spacing = _role_grid(wildcards.role)
    return _res.auto_mask_mem_mb(shape, spacing, CFG["auto_mask"]["spacing"], attempt)


def auto_mask_runtime(wildcards, attempt):
    """An auto mask job: reading its image's level (the full one at worst)."""
    return _res.auto_mask_runtime_min(_role_grid(wildcards.role)[0], attempt)


def slab_mem_mb(wildcards, attempt):
    """A gather or warp job on the fixed grid: one output chunk at a time."""
    return _res.slab_mem_mb(LAYOUT.chunks, attempt)


def slab_runtime(wildcards, attempt):
    """A gather or warp job on the fixed grid: one z slab of the output chunks."""
    return _res.slab_runtime_min(LAYOUT.shape, LAYOUT.chunks, attempt)


def field_slab_mem_mb(wildcards, attempt):
    """An inverse-field job: one chunk of the field grid at a time."""
    return _res.slab_mem_mb(LAYOUT.field_chunks, attempt)


def field_slab_runtime(wildcards, attempt):
    """An inverse-field job: one z slab of the field grid."""
    return _res.slab_runtime_min(LAYOUT.field_shape, LAYOUT.field_chunks, attempt)


def moving_slab_mem_mb(wildcards, attempt):
    """A job writing the fixed image onto the moving grid: one chunk at a time."""
    return _res.slab_mem_mb(LAYOUT.moving_chunks, attempt)


def moving_slab_runtime(wildcards, attempt):
    """A job writing the fixed image onto the moving grid: one z slab."""
    return _res.slab_runtime_min(LAYOUT.moving_shape, LAYOUT.moving_chunks, attempt)


def pyramid_mem_mb(wildcards, attempt):
    """A pyramid job: one chunk of a level at a time."""
    return _res.pyramid_mem_mb(LAYOUT.chunks, attempt)


def report_mem_mb(wildcards, attempt):
    """The report: its slice tiles and what they sample."""
    return _res.report_mem_mb(attempt)
