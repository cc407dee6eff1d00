"""Zarr v3 sharded outputs: each job writes whole shards, so concurrent slab jobs never
rewrite each other's shards (the sub-shard write race bigstream hit)."""
import multiprocessing as mp

import numpy as np
import pytest
import zarr

from snakestream.config import validate
from snakestream.errors import ConfigError
from snakestream.io.chunks import for_each_chunk, slab_bounds, write_units
from snakestream.io.ngff import create_image
from snakestream.io.zarr_store import create_zarr, open_zarr_array

from conftest import demo_config


def test_write_units_are_whole_inner_chunks_and_fit_the_grid():
    assert write_units((100, 300, 300), (64, 128, 128)) == ((64, 128, 128), None)
    assert write_units((40, 300, 90), (64, 128, 128), (16, 64, 64)) == \
        ((48, 128, 128), (16, 64, 64))                # z rounded up to whole inner chunks
    assert write_units((10, 300, 300), (64, 128, 128), (16, 64, 64)) == \
        ((10, 128, 128), (10, 64, 64))                # a grid smaller than one inner chunk


def _value(start, stop):
    z, y, x = np.meshgrid(*(np.arange(a, b) for a, b in zip(start, stop)), indexing="ij")
    return (z * 1_000_000 + y * 1000 + x).astype(np.int64)


def _fill_slab(path, slab, barrier):
    out = open_zarr_array(path, mode="r+")
    barrier.wait()                                    # both jobs write at the same time
    for_each_chunk(out, slab, _value)


def test_neighbouring_slab_jobs_write_concurrently_without_losing_a_voxel(tmp_path):
    path = str(tmp_path / "field.zarr")
    shape = (32, 96, 80)
    create_zarr(path, shape, "int64", (16, 48, 80), (1, 1, 1), zarr_format=3,
                shard_chunks=(4, 16, 16))
    out = open_zarr_array(path)
    assert out.shards == (16, 48, 80) and out.chunks == (4, 16, 16)
    ctx = mp.get_context("spawn")
    for _ in range(3):                                # a race would show within a few runs
        barrier = ctx.Barrier(2)
        jobs = [ctx.Process(target=_fill_slab, args=(path, s, barrier)) for s in (0, 1)]
        [j.start() for j in jobs]
        [j.join(60) for j in jobs]
        assert [j.exitcode for j in jobs] == [0, 0]
        got = open_zarr_array(path)[...]
        assert np.array_equal(got, _value((0, 0, 0), shape)), "a shard lost a job's writes"
        open_zarr_array(path, mode="r+")[...] = 0


def _fill_half_shard_rows(path, z0, barrier):
    out = open_zarr_array(path, mode="r+")
    barrier.wait()
    for z in range(z0, z0 + 8, 4):                    # inner-chunk rows: sub-shard writes
        out[z:z + 4] = _value((z, 0, 0), (z + 4,) + out.shape[1:])


def test_the_check_catches_two_jobs_writing_parts_of_one_shard(tmp_path):
    """The control: the race the whole-shard rule prevents is real and this check sees it."""
    path, shape = str(tmp_path / "race.zarr"), (16, 96, 80)
    ctx, lost = mp.get_context("spawn"), 0
    for _ in range(3):
        create_zarr(path, shape, "int64", (16, 48, 80), (1, 1, 1), zarr_format=3,
                    shard_chunks=(4, 16, 16))
        barrier = ctx.Barrier(2)
        jobs = [ctx.Process(target=_fill_half_shard_rows, args=(path, z0, barrier))
                for z0 in (0, 8)]
        [j.start() for j in jobs]
        [j.join(60) for j in jobs]
        lost += not np.array_equal(open_zarr_array(path)[...], _value((0, 0, 0), shape))
    assert lost > 0


def test_a_slab_is_whole_shards():
    cfg = validate(demo_config("/d", "/o", output_chunks=[16, 64, 64],
                               output_zarr={"format": 3, "shard_chunks": [8, 32, 32]}))
    assert cfg["output_zarr"] == {"format": 3, "shard_chunks": [8, 32, 32]}
    assert slab_bounds((40, 100, 100), (16, 64, 64), 1) == (16, 32)


def test_shard_settings_are_checked_in_one_line():
    with pytest.raises(ConfigError, match=r"output_zarr.shard_chunks.*needs Zarr v3"):
        validate(demo_config("/d", "/o", output_zarr={"shard_chunks": [8, 32, 32]}))
    with pytest.raises(ConfigError, match=r"does not divide .* output_chunks \[16, 64, 64\]"):
        validate(demo_config("/d", "/o", output_chunks=[16, 64, 64],
                             output_zarr={"format": 3, "shard_chunks": [6, 32, 32]}))


def test_sharded_ome_zarr_image_is_ngff_05_read_by_ome_zarr_py(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "aligned.zarr"
    level0 = create_image(path, (20, 70, 60), "uint16", (8, 32, 32), (2.0, 0.5, 0.5),
                          levels=2, zarr_format=3, shard_chunks=(4, 16, 16))
    level0[...] = np.arange(20 * 70 * 60, dtype=np.uint16).reshape(20, 70, 60)
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["ome"]["version"] == "0.5" and group.metadata.zarr_format == 3
    assert group["0"].shards == (8, 32, 32)
    node = next(iter(Reader(parse_url(str(path)))()))
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [2.0, 0.5, 0.5]
    assert np.array_equal(np.asarray(node.data[0]), level0[...])
