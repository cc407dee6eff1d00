"""Gather: linear blending of per-block transforms into one field."""
import numpy as np
import pytest
import zarr

from snakestream.register.align import StepResult
from snakestream.fields.blockfile import save_block
from snakestream.grid.blocks import block_relpath, n_slabs, ramp
from snakestream.grid.layout import BlockGrid, Layout, build_table, overlap_voxels
from snakestream.fields.stitch import block_loader, write_field_slab


def _translation(t):
    m = np.eye(4)
    m[:3, 3] = t
    return StepResult("affine", "affine", m.ravel())


def _write_blocks(tmp_path, table, make_result, skipped_at_runtime=()):
    for _, row in table[table.aligned].iterrows():
        path = tmp_path / "blocks" / block_relpath(row["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        status = "skipped" if row["id"] in skipped_at_runtime else "ok"
        results = [] if status == "skipped" else [make_result(row)]
        save_block(path, row["id"], [0] * 6, results, {"status": status, "id": row["id"]})
    return lambda bid: tmp_path / "blocks" / block_relpath(bid)


def _gather(tmp_path, table, shape, spacing, blocksize, overlap, path_of, chunks=(7, 20, 16)):
    out = zarr.open_array(str(tmp_path / "field.zarr"), mode="w", shape=shape + (3,),
                          chunks=tuple(chunks) + (3,), dtype="float32")
    loader = block_loader(path_of)
    for slab in range(n_slabs(shape, chunks)):
        n, jac = write_field_slab(out, table[table.aligned], slab, spacing,
                                  overlap_voxels(blocksize, overlap), loader)
        assert n > 0 and (jac is None or jac["folded"] == 0)
    return out[...]


def test_ramp_is_positive_and_flat_in_core():
    w = ramp(-4, 16, np.arange(0, 12), 4)
    assert np.all(w > 0) and np.all(w <= 1)
    assert np.allclose(w[4:8], 1.0)
    assert w[0] == pytest.approx(1.0)  # voxel 0 lies one overlap inside the unclipped region


def test_uniform_translation_stitches_to_itself_everywhere(tmp_path):
    shape, spacing, blocksize, overlap = (30, 50, 44), (0.8, 0.4, 0.4), (10, 16, 16), 0.5
    table = build_table(shape, blocksize, overlap)
    # interior blocks skipped by the table and one skipped at run time (no signal)
    interior = table[(table.iz == 1) & (table.iy == 1) & (table.ix == 1)].index
    table.loc[interior, "aligned"] = False
    runtime_skip = table[(table.iz == 2) & (table.iy == 2) & (table.ix == 1)].id.iloc[0]
    t = np.array([0.37, -1.25, 2.5])
    path_of = _write_blocks(tmp_path, table, lambda row: _translation(t), {runtime_skip})
    field = _gather(tmp_path, table, shape, spacing, blocksize, overlap, path_of)
    assert field.shape == shape + (3,)
    assert np.abs(field - t).max() < 1e-3


def test_blend_is_continuous_across_block_faces(tmp_path):
    shape, spacing, blocksize, overlap = (12, 40, 40), (1.0, 1.0, 1.0), (12, 20, 20), 0.5
    table = build_table(shape, blocksize, overlap)
    # each block translates by its own amount: the blend must ramp, not jump
    path_of = _write_blocks(tmp_path, table,
                            lambda row: _translation([0, 0, float(row["ix"]) * 2.0]))
    field = _gather(tmp_path, table, shape, spacing, blocksize, overlap, path_of)
    step = np.abs(np.diff(field[..., 2], axis=2)).max()
    assert step < 2.0 / 10 + 1e-4   # 2 µm change spread over the 20-voxel overlap zone
    assert field[..., 2].min() == pytest.approx(0.0, abs=1e-6)
    assert field[..., 2].max() == pytest.approx(2.0, abs=1e-6)


def test_no_aligned_block_means_zero_displacement(tmp_path):
    shape, spacing, blocksize, overlap = (10, 20, 20), (1.0, 1.0, 1.0), (10, 10, 10), 0.5
    table = build_table(shape, blocksize, overlap)
    table["aligned"] = False
    field = _gather(tmp_path, table, shape, spacing, blocksize, overlap, lambda b: None)
    assert np.all(field == 0)


def test_coarse_field_grid_samples_the_same_blend(tmp_path):
    """A field on every 2nd/3rd voxel equals the full-resolution blend at those voxels."""
    shape, spacing, blocksize, overlap = (12, 40, 42), (1.0, 0.5, 0.5), (6, 20, 21), 0.5
    table = build_table(shape, blocksize, overlap)
    def varying(row):  # a different small affine per block: the field varies in space
        m = np.eye(4) + 0.01 * np.array([[row["iz"], 0, 0, 0], [0, row["iy"], 1, 0],
                                         [0, 0, row["ix"], 0], [0, 0, 0, 0]])
        m[:3, 3] = [0.1 * row["iz"], 0.2, float(row["ix"])]
        return StepResult("affine", "affine", m.ravel())

    path_of = _write_blocks(tmp_path, table, varying)
    full = _gather(tmp_path, table, shape, spacing, blocksize, overlap, path_of)
    step = (2, 2, 3)
    coarse_shape = tuple(-(-n // s) for n, s in zip(shape, step))
    out = zarr.open_array(str(tmp_path / "coarse.zarr"), mode="w", shape=coarse_shape + (3,),
                          chunks=(3, 7, 5, 3), dtype="float32")
    loader = block_loader(path_of)
    for slab in range(n_slabs(coarse_shape, (3, 7, 5))):
        write_field_slab(out, table, slab, spacing, overlap_voxels(blocksize, overlap), loader,
                         step=step)
    assert np.abs(out[...] - full[::2, ::2, ::3]).max() < 1e-5


def test_a_gather_slab_reads_only_its_inputs_and_every_block_is_one(tmp_path):
    """The layout's blocks of a gather slab (its DAG inputs) cover what the slab blends."""
    shape, blocksize, chunks, step = (30, 50, 44), (10, 16, 16), (7, 20, 16), (2, 2, 3)
    layout = Layout(shape, np.ones(3), chunks, "uint8", field_step=step)
    layout.blocks = BlockGrid.build(shape, blocksize, 0.5)
    table = layout.blocks.table()
    path_of = _write_blocks(tmp_path, table, lambda row: _translation([0.5, 0, 0]))
    out = zarr.open_array(str(tmp_path / "field.zarr"), mode="w", dtype="float32",
                          shape=layout.field_shape + (3,), chunks=layout.field_chunks + (3,))
    loader, read, inputs = block_loader(path_of), [], set()
    for slab in range(layout.n_field_slabs):
        read.clear()
        write_field_slab(out, table, slab, np.ones(3), layout.blocks.overlap,
                         lambda bid: read.append(bid) or loader(bid), step=step)
        assert read and set(read) <= set(layout.blocks_in_field_slab(slab))
        inputs |= set(layout.blocks_in_field_slab(slab))
    assert inputs == set(table.id)


class _ArrayVolume:
    """A mask in memory with the volume interface (shape, spacing, read)."""

    def __init__(self, array, spacing):
        self.array, self.shape, self.spacing = array, array.shape, np.asarray(spacing, float)
        self.path, self.dataset, self.reads = "mem", None, 0

    def read(self, region):
        self.reads += 1
        return self.array[region]


@pytest.mark.parametrize("mask_shape", [(30, 50, 70), (15, 13, 18)])
def test_foreground_fractions_count_mask_voxels_per_block_core(mask_shape):
    """Per core: the share of fixed voxels whose nearest mask voxel is set, read in slabs."""
    from snakestream.grid.blocks import foreground_fractions, region_slices

    shape, spacing, blocksize = (30, 50, 70), np.array([1.0, 0.5, 0.5]), (7, 16, 9)
    mask_spacing = np.array(shape) * spacing / np.array(mask_shape)
    mask = (np.random.default_rng(0).random(mask_shape) > 0.6).astype(np.uint8)
    vol = _ArrayVolume(mask, mask_spacing)
    fractions = foreground_fractions(vol, shape, spacing, blocksize, slab_voxels=1500)
    assert vol.reads > 1                                 # streamed, not read whole
    for _, row in build_table(shape, blocksize, 0.5).iterrows():
        core = region_slices(row, core=True)
        idx = np.meshgrid(*[np.arange(s.start, s.stop) for s in core], indexing="ij")
        near = [np.clip(np.floor(i * spacing[a] / mask_spacing[a] + 0.5).astype(int), 0,
                        mask_shape[a] - 1) for a, i in enumerate(idx)]
        brute = np.mean(mask[tuple(near)] > 0)
        assert fractions[row["iz"], row["iy"], row["ix"]] == pytest.approx(brute, abs=1e-6)


@pytest.mark.parametrize("mask_shape", [(30, 50, 70), (9, 11, 23), (60, 90, 150)])
def test_read_on_grid_takes_the_nearest_mask_voxel(mask_shape):
    """A block's mask crop: nearest mask voxel per fixed voxel, edges extended."""
    from snakestream.grid.crops import read_on_grid

    shape, spacing = (30, 50, 70), np.array([1.0, 0.5, 0.5])
    mask_spacing = np.array(shape) * spacing / np.array(mask_shape)
    mask = np.random.default_rng(1).integers(0, 7, mask_shape).astype(np.uint8)
    start, size = (4, 13, 40), (12, 30, 30)
    got = read_on_grid(_ArrayVolume(mask, mask_spacing), start, size, spacing)
    idx = np.meshgrid(*[np.arange(a, a + n) for a, n in zip(start, size)], indexing="ij")
    near = [np.clip(np.floor(i * spacing[a] / mask_spacing[a] + 0.5).astype(int), 0,
                    mask_shape[a] - 1) for a, i in enumerate(idx)]
    assert got.shape == size
    np.testing.assert_array_equal(got, mask[tuple(near)])


def test_read_row_matches_the_table(tmp_path):
    from snakestream.grid.blocks import read_row, read_table, write_table

    table = build_table((20, 40, 40), (8, 16, 16), 0.5, np.linspace(0, 1, 27), 0.5)
    write_table(table, tmp_path / "t.tsv")
    for _, expect in read_table(tmp_path / "t.tsv").iterrows():
        row = read_row(tmp_path / "t.tsv", expect["id"])
        assert row == {k: (bool(v) if k == "aligned" else v) for k, v in expect.items()}
    with pytest.raises(KeyError):
        read_row(tmp_path / "t.tsv", "z0099_y0000_x0000")
