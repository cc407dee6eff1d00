"""Tests for snakestream.io: round trips per format, metadata spacing, errors."""

import contextlib
import os
import time
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from snakestream.io import atomic, downsample, zarr_store  # noqa: E402
from snakestream.io import volumes as sio  # noqa: E402
from snakestream.errors import InputError  # noqa: E402

SPACING = np.array([0.4, 0.1625, 0.2])
SHAPE = (7, 10, 13)
CHUNKS = (3, 4, 5)
CROP = (slice(1, 6), slice(2, 9), slice(3, 12))


def make_array(dtype, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        hi = min(np.iinfo(dtype).max, 60000)
        return rng.integers(0, hi, size=shape).astype(dtype)
    return rng.normal(100, 30, size=shape).astype(dtype)


def zarr_attrs_array(path, attrs, group_attrs=None, name=None, zarr_format=2):
    """A Zarr array with hand-written attributes (optionally inside a group)."""
    import zarr

    data = make_array(np.uint16)
    if name is None:
        arr = zarr.create_array(str(path), shape=SHAPE, chunks=CHUNKS, dtype="uint16",
                                zarr_format=zarr_format)
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
        group.attrs.update(group_attrs or {})
        arr = group.create_array(name, shape=SHAPE, chunks=CHUNKS, dtype="uint16")
    arr[...] = data
    arr.attrs.update(attrs)
    return data


def assert_reads_back(vol, data):
    """``vol`` has SPACING from its metadata and reads ``data`` back (a crop of it)."""
    np.testing.assert_allclose(vol.spacing, SPACING)
    np.testing.assert_array_equal(vol.read(CROP), data[CROP])


def assert_error(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text and "Fix:" in text
    for part in parts:
        assert str(part) in text, text


# --------------------------------------------------------------------------- round trips

ROUND_TRIPS = [
    ("v.zarr", None, {"zarr_format": 2}, np.uint16),
    ("v.zarr", "raw/s0", {"zarr_format": 2}, np.float32),
    ("v.ome.zarr", None, {"zarr_format": 3}, np.float32),
    ("v.zarr", "raw/s0", {"zarr_format": 3}, np.uint16),
    ("v.n5", "c0/s0", {}, np.uint16),
    ("v.n5", None, {}, np.float32),
    ("v.n5", "s0", {}, np.int64),
    ("v.h5", "volumes/raw", {}, np.uint16),
    ("v.hdf5", None, {}, np.float32),
    ("v.nrrd", None, {}, np.uint16),
    ("v.nhdr", None, {}, np.float32),
    ("v.tif", None, {}, np.uint16),
    ("v.tiff", None, {}, np.float32),
    ("v.tif", None, {}, np.float64),
    ("v.tif", None, {}, np.uint8),
]


@pytest.mark.parametrize("name,dataset,kwargs,dtype", ROUND_TRIPS)
def test_round_trip(tmp_path, name, dataset, kwargs, dtype):
    data = make_array(dtype)
    path = tmp_path / name
    sio.write_volume(path, data, SPACING, dataset=dataset, chunks=CHUNKS, **kwargs)
    vol = sio.open_volume(path, dataset)
    assert vol.shape == SHAPE and vol.dtype == np.dtype(dtype)
    assert vol.spacing.dtype == np.float64
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-9)
    full = vol.read()
    assert full.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(full, data)
    np.testing.assert_array_equal(vol.read(CROP), data[CROP])
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_overwrite_replaces_container(tmp_path):
    path = tmp_path / "v.zarr"
    sio.write_volume(path, make_array(np.uint16), SPACING, dataset="a")
    new = make_array(np.uint16, seed=1)
    sio.write_volume(path, new, SPACING * 2, dataset="b")
    vol = sio.open_volume(path)  # only "b" is left, so it is picked
    assert vol.dataset == "b"
    np.testing.assert_array_equal(vol.read(), new)
    np.testing.assert_allclose(vol.spacing, SPACING * 2)


def test_single_dataset_is_picked_and_volume_pickles(tmp_path):
    import pickle

    data = make_array(np.uint16)
    sio.write_volume(tmp_path / "one.h5", data, SPACING, dataset="grp/vol")
    vol = pickle.loads(pickle.dumps(sio.open_volume(tmp_path / "one.h5")))
    assert vol.dataset == "grp/vol"
    np.testing.assert_array_equal(vol.read(CROP), data[CROP])


def test_config_spacing_overrides_metadata(tmp_path):
    path = tmp_path / "v.h5"
    sio.write_volume(path, make_array(np.uint8), SPACING, dataset="d")
    vol = sio.open_volume(path, "d", spacing=[1, 2, 3])
    np.testing.assert_array_equal(vol.spacing, [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- N5 details

def test_n5_layout_is_xyz_big_endian_and_crop_reads_only_its_blocks(tmp_path):
    import json
    import struct

    data = make_array(np.uint16)
    path = tmp_path / "v.n5"
    sio.write_volume(path, data, SPACING, dataset="s0", chunks=CHUNKS)
    attrs = json.loads((path / "s0" / "attributes.json").read_text())
    assert attrs["dimensions"] == [13, 10, 7] and attrs["blockSize"] == [5, 4, 3]
    assert attrs["pixelResolution"] == {"dimensions": [0.2, 0.1625, 0.4], "unit": "um"}
    # last block in x (index 2), first in y and z: 3 of 5 x voxels are in the volume.
    # tensorstore stores edge blocks at full block size (valid N5: the header gives the
    # stored size), the voxels past the edge hold the fill value 0.
    import gzip
    raw = (path / "s0" / "2" / "0" / "0").read_bytes()
    assert struct.unpack(">HH3I", raw[:16]) == (0, 3, 5, 4, 3)
    body = np.frombuffer(gzip.decompress(raw[16:]), ">u2").reshape(3, 4, 5)
    np.testing.assert_array_equal(body[:, :, :3], data[0:3, 0:4, 10:13])
    assert not body[:, :, 3:].any()
    # a corrupt block outside the crop is never opened
    (path / "s0" / "0" / "2" / "2").write_bytes(b"garbage")
    vol = sio.open_volume(path, "s0")
    crop = (slice(0, 3), slice(0, 4), slice(0, 10))
    np.testing.assert_array_equal(vol.read(crop), data[crop])
    with pytest.raises(InputError) as excinfo:
        vol.read()
    assert_error(excinfo, os.path.join("s0", "0", "2", "2"), "N5 block")


def test_n5_raw_missing_blocks_and_full_edge_blocks(tmp_path):
    """Hand-written N5: raw blocks, one block absent (zeros), edge block stored full size."""
    import json
    import struct

    root = tmp_path / "h.n5"
    ds = root / "vol"
    ds.mkdir(parents=True)
    (root / "attributes.json").write_text('{"n5": "2.0.0"}')
    (ds / "attributes.json").write_text(json.dumps({
        "dimensions": [3, 2, 2], "blockSize": [2, 2, 2], "dataType": "int16",
        "compression": {"type": "raw"}, "resolution": [0.2, 0.1625, 0.4]}))
    expected = np.zeros((2, 2, 3), np.int16)
    block = np.arange(8, dtype=np.int16).reshape(2, 2, 2) - 4
    (ds / "0" / "0").mkdir(parents=True)
    (ds / "0" / "0" / "0").write_bytes(struct.pack(">HH3I", 0, 3, 2, 2, 2) + block.astype(">i2").tobytes())
    expected[:, :, 0:2] = block  # block x=1 is absent: zeros
    vol = sio.open_volume(root, "vol")
    np.testing.assert_array_equal(vol.read(), expected)
    np.testing.assert_allclose(vol.spacing, SPACING)
    # an edge block stored at full block size is cropped to the volume
    (ds / "1" / "0").mkdir(parents=True)
    (ds / "1" / "0" / "0").write_bytes(struct.pack(">HH3I", 0, 3, 2, 2, 2) + block.astype(">i2").tobytes())
    expected[:, :, 2] = block[:, :, 0]
    np.testing.assert_array_equal(vol.read(), expected)


def test_n5_corrupt_gzip_body_names_the_block(tmp_path):
    import struct

    path = tmp_path / "c.n5"
    sio.write_volume(path, make_array(np.uint8), SPACING, dataset="s0", chunks=CHUNKS)
    (path / "s0" / "0" / "0" / "0").write_bytes(struct.pack(">HH3I", 0, 3, 5, 4, 3) + b"not gzip")
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(path, "s0").read()
    assert_error(excinfo, "corrupt N5 block", os.path.join("s0", "0", "0", "0"))


N5_COMPRESSIONS = [{"type": "raw"}, {"type": "gzip", "useZlib": True}, {"type": "bzip2"},
                    {"type": "xz"}, {"type": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1},
                    {"type": "zstd"}]


@pytest.mark.parametrize("compression", N5_COMPRESSIONS, ids=lambda c: c["type"])
def test_n5_written_by_tensorstore_reads_as_zyx(tmp_path, compression):
    """An N5 written by tensorstore itself (x, y, z dims) reads back (z, y, x), by content."""
    import json

    import tensorstore as ts

    data = make_array(np.int32)
    root = tmp_path / "ts.n5"
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(root / "g" / "s0")},
                     "metadata": {"dimensions": list(SHAPE[::-1]), "blockSize": list(CHUNKS[::-1]),
                                  "dataType": "int32", "compression": compression},
                     "create": True}).result()
    store.write(data.transpose()).result()  # tensorstore indexes N5 as stored: x, y, z
    root_attrs = {"n5": "4.0.0", "resolution": [0.2, 0.1625, 0.4]}
    (root / "attributes.json").write_text(json.dumps(root_attrs))
    vol = sio.open_volume(root)  # the only dataset, g/s0, found by walking the container
    assert vol.dataset == "g/s0" and vol.shape == SHAPE and vol.chunks == CHUNKS
    np.testing.assert_allclose(vol.spacing, SPACING)
    np.testing.assert_array_equal(vol.read(), data)
    np.testing.assert_array_equal(vol.read(CROP), data[CROP])


def test_n5_we_write_reads_in_tensorstore_as_xyz(tmp_path):
    import tensorstore as ts

    data = make_array(np.float32)
    sio.write_volume(tmp_path / "v.n5", data, SPACING, dataset="a/b/s0", chunks=CHUNKS)
    for node in ("", "a", "a/b"):
        assert (tmp_path / "v.n5" / node / "attributes.json").is_file()
    folder = str(tmp_path / "v.n5" / "a" / "b" / "s0")
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": folder}}).result()
    assert tuple(store.shape) == SHAPE[::-1]
    np.testing.assert_array_equal(store.read().result(), data.transpose())


def test_n5_old_compression_type_and_varlength_blocks(tmp_path):
    import json
    import struct

    root = tmp_path / "old.n5"
    root.mkdir()
    attrs = {"dimensions": [2, 2, 2], "blockSize": [2, 2, 2], "dataType": "int16",
             "compressionType": "gzip", "resolution": [1, 1, 1]}
    (root / "attributes.json").write_text(json.dumps(attrs))
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(root)
    assert_error(excinfo, "old.n5", "no 'compression'", '"compression": {"type": "gzip"}')
    attrs["compression"] = {"type": "raw"}
    (root / "attributes.json").write_text(json.dumps(attrs))
    (root / "0" / "0").mkdir(parents=True)
    body = np.arange(8, dtype=">i2").tobytes()
    (root / "0" / "0" / "0").write_bytes(struct.pack(">HH4I", 1, 3, 2, 2, 2, 8) + body)
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(root).read()
    assert_error(excinfo, "unsupported N5 block", os.path.join("old.n5", "0", "0", "0"))


def test_n5_viewer_root_resolution_times_downsampling(tmp_path):
    import json

    path = tmp_path / "v.n5"
    sio.write_volume(path, make_array(np.uint8), SPACING, dataset="setup0/s1", chunks=CHUNKS)
    ds_attrs = path / "setup0" / "s1" / "attributes.json"
    attrs = json.loads(ds_attrs.read_text())
    del attrs["pixelResolution"]
    attrs["downsamplingFactors"] = [2, 2, 1]  # x, y, z
    ds_attrs.write_text(json.dumps(attrs))
    (path / "attributes.json").write_text(json.dumps({"n5": "4.0.0", "pixelResolution": {
        "dimensions": [0.1, 0.08125, 0.4], "unit": "um"}}))
    np.testing.assert_allclose(sio.open_volume(path, "setup0/s1").spacing, SPACING)


# --------------------------------------------------------------------------- Zarr readers

def _zarr_written(path, zarr_format=2, dtype="uint16", **kwargs):
    import zarr

    data = make_array(np.uint16)
    arr = zarr.create_array(str(path), shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=zarr_format,
                            attributes={"spacing": list(SPACING)}, **kwargs)
    arr[...] = data
    return data


ZARR_LAYOUTS = [  # (id, zarr_format, create_array kwargs, read by tensorstore)
    ("v2-slash-keys", 2, {"chunk_key_encoding": {"name": "v2", "separator": "/"}}, "zarr"),
    ("v2-big-endian", 2, {"dtype": ">u2"}, "zarr"),
    ("v3-sharded", 3, {"shards": (6, 8, 10)}, "zarr3"),
    ("v2-delta-filter", 2, {"filters": "delta"}, None),
    ("v2-lz4", 2, {"compressors": "lz4"}, None),
]


@pytest.mark.parametrize("zarr_format,kwargs,driver", [c[1:] for c in ZARR_LAYOUTS],
                         ids=[c[0] for c in ZARR_LAYOUTS])
def test_zarr_layouts_read_by_tensorstore_or_zarr_python(tmp_path, zarr_format, kwargs, driver):
    """tensorstore reads what it can; filters and codecs it lacks fall back to zarr-python."""
    import numcodecs

    codecs = {"delta": [numcodecs.Delta(dtype="<u2")], "lz4": numcodecs.LZ4()}
    kwargs = {k: codecs.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    path = tmp_path / "l.zarr"
    data = _zarr_written(path, zarr_format, **kwargs)
    assert zarr_store.open_dataset(str(path), None).reader.args[-1] == driver
    vol = sio.open_volume(path)
    np.testing.assert_array_equal(vol.read(), data)
    np.testing.assert_array_equal(vol.read(CROP), data[CROP])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("name,dataset", [("o.n5", "s0"), ("o.zarr", None), ("o.zarr", "g/a")])
def test_chunked_reads_leave_no_file_open(tmp_path, name, dataset):
    """Files are opened per read: many processes read the same input at once."""
    data = make_array(np.uint16)
    sio.write_volume(tmp_path / name, data, SPACING, dataset=dataset, chunks=CHUNKS)
    vol = sio.open_volume(tmp_path / name, dataset)
    vol.read(CROP)  # first read builds tensorstore's context and threads
    before = set(os.listdir("/proc/self/fd"))
    np.testing.assert_array_equal(vol.read(), data)

    def still_open():
        fds = set(os.listdir("/proc/self/fd")) - before
        with contextlib.suppress(OSError):
            return [p for p in (os.readlink(f"/proc/self/fd/{fd}") for fd in fds)
                    if str(tmp_path) in p]
        return still_open()

    # tensorstore closes a file on one of its I/O threads just after the read returns;
    # on a loaded machine that can take a moment (a kept-open file would stay open)
    deadline = time.monotonic() + 5
    while still_open() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not still_open(), still_open()


def test_zarr_corrupt_chunk_names_the_file(tmp_path):
    path = tmp_path / "c.zarr"
    _zarr_written(path)
    (path / "0.0.0").write_bytes(b"junk")
    vol = sio.open_volume(path)
    assert vol.read((slice(3, 6), slice(4, 8), slice(5, 10))).shape == (3, 4, 5)  # chunk not read
    with pytest.raises(InputError) as excinfo:
        vol.read()
    assert_error(excinfo, "corrupt Zarr chunk", os.path.join("c.zarr", "0.0.0"))


# --------------------------------------------------------------------------- metadata spacing

@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_multiscales_spacing(tmp_path, zarr_format):
    multiscales = [{
        "version": "0.4",
        "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.2, 0.08125, 0.1]}]},
            {"path": "1", "coordinateTransformations": [
                {"type": "scale", "scale": list(SPACING)}, {"type": "translation", "translation": [0, 0, 0]}]},
        ],
    }]
    group_attrs = ({"multiscales": multiscales} if zarr_format == 2
                   else {"ome": {"version": "0.5", "multiscales": multiscales}})
    path = tmp_path / "img.ome.zarr"
    zarr_attrs_array(path, {}, group_attrs, name="1", zarr_format=zarr_format)
    np.testing.assert_allclose(sio.open_volume(path, "1").spacing, SPACING)


@pytest.mark.parametrize("attrs,expected", [
    ({"pixelResolution": [0.2, 0.1625, 0.4]}, SPACING),
    ({"pixelResolution": {"dimensions": [200, 162.5, 400], "unit": "nm"}}, SPACING),
    ({"resolution": [0.2, 0.1625, 0.4]}, SPACING),
    ({"spacing": [0.4, 0.1625, 0.2]}, SPACING),
])
def test_attribute_spacing_conventions(tmp_path, attrs, expected):
    path = tmp_path / "a.zarr"
    zarr_attrs_array(path, attrs)
    np.testing.assert_allclose(sio.open_volume(path).spacing, expected)


def test_nrrd_space_directions_gzip_written_by_pynrrd(tmp_path):
    import nrrd

    data = make_array(np.int16)
    header = {"space dimension": 3, "space directions": np.diag([0.2, 0.1625, 0.4])}
    path = tmp_path / "g.nrrd"
    nrrd.write(str(path), data, header, index_order="C")  # gzip by default
    vol = sio.open_volume(path)
    assert vol.shape == SHAPE
    assert_reads_back(vol, data)


def test_ome_tiff_physical_size(tmp_path):
    import tifffile

    data = make_array(np.uint16)
    path = tmp_path / "o.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 400, "PhysicalSizeZUnit": "nm",
        "PhysicalSizeY": 0.1625, "PhysicalSizeX": 0.2})
    assert_reads_back(sio.open_volume(path), data)


def test_hdf5_element_size_um_by_hand(tmp_path):
    import h5py

    data = make_array(np.float32)
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("exported_data", data=data, chunks=CHUNKS).attrs["element_size_um"] = SPACING
        fh.create_dataset("other/thing", data=np.zeros(4))
    vol = sio.open_volume(path, "/exported_data")
    assert vol.chunks == CHUNKS
    assert_reads_back(vol, data)


# --------------------------------------------------------------------------- downsampling

def reference_block_mean(data, factors):
    out_shape = [-(-n // f) for n, f in zip(data.shape, factors)]
    out = np.empty(out_shape, np.float64)
    for index in np.ndindex(*out_shape):
        block = data[tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors))]
        out[index] = block.astype(np.float64).mean()
    return out


@pytest.mark.parametrize("name,factors", [
    ("d.zarr", (2, 3, 4)), ("d.zarr", (1, 1, 1)), ("d.nrrd", (3, 2, 5)), ("d.n5", (7, 10, 13)),
    ("d.tif", (2, 4, 3)),
])
def test_read_downsampled_matches_block_mean(tmp_path, name, factors):
    data = make_array(np.uint16)
    sio.write_volume(tmp_path / name, data, SPACING, chunks=CHUNKS)
    vol = sio.open_volume(tmp_path / name)
    small = downsample.read_downsampled(vol, factors)
    assert small.dtype == np.float32
    np.testing.assert_allclose(small, reference_block_mean(data, factors), rtol=1e-6)


def test_read_downsampled_streams_z_slabs(tmp_path):
    data = make_array(np.uint16)
    sio.write_volume(tmp_path / "s.zarr", data, SPACING, chunks=CHUNKS)
    vol = sio.open_volume(tmp_path / "s.zarr")
    depths, inner = [], vol._reader
    vol._reader = lambda s: (depths.append(s[0].stop - s[0].start), inner(s))[1]
    downsample.read_downsampled(vol, (2, 2, 2))
    assert depths == [4, 3]  # z chunk 3 rounded up to a multiple of 2; never the whole volume


def test_read_downsampled_bad_factors(tmp_path):
    sio.write_volume(tmp_path / "d.zarr", make_array(np.uint8), SPACING)
    with pytest.raises(InputError) as excinfo:
        downsample.read_downsampled(sio.open_volume(tmp_path / "d.zarr"), (0, 2, 2))
    assert_error(excinfo, "d.zarr", "factors")


# --------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "nope.zarr")
    assert_error(excinfo, "nope.zarr", "not found")


@pytest.mark.parametrize("name", ["w.zarr", "w.n5", "w.h5"])
def test_wrong_dataset_lists_available(tmp_path, name):
    sio.write_volume(tmp_path / name, make_array(np.uint8), SPACING, dataset="raw/s0")
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / name, "raw/s9")
    assert_error(excinfo, name, "raw/s9", "raw/s0")


def test_no_dataset_with_several_lists_them(tmp_path):
    import h5py

    with h5py.File(tmp_path / "two.h5", "w") as fh:
        fh["a"] = np.zeros((2, 2, 2))
        fh["b"] = np.zeros((2, 2, 2))
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "two.h5")
    assert_error(excinfo, "two.h5", "a, b", "dataset")


def test_two_d_data(tmp_path):
    import h5py
    import tifffile

    with h5py.File(tmp_path / "flat.h5", "w") as fh:
        fh["img"] = np.zeros((4, 5))
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "flat.h5", "img", spacing=SPACING)
    assert_error(excinfo, "flat.h5", "2-D", "3-D")
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "flat.tif", spacing=SPACING)
    assert_error(excinfo, "flat.tif", "2-D")
    with pytest.raises(InputError) as excinfo:
        sio.write_volume(tmp_path / "w.zarr", np.zeros((4, 5)), SPACING)
    assert_error(excinfo, "w.zarr", "2-D")


def test_unknown_extension(tmp_path):
    (tmp_path / "vol.mrc").write_bytes(b"x")
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "vol.mrc")
    assert_error(excinfo, "vol.mrc", "'.mrc'", ".zarr")


@pytest.mark.parametrize("name", ["bare.zarr", "bare.tif"])
def test_no_spacing_anywhere(tmp_path, name):
    import tifffile
    import zarr

    if name.endswith(".zarr"):
        zarr.create_array(str(tmp_path / name), shape=(2, 3, 4), dtype="u1")
    else:
        tifffile.imwrite(tmp_path / name, np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / name)
    assert_error(excinfo, name, "spacing", "spacing: [z, y, x]")
    assert sio.open_volume(tmp_path / name, spacing=(1, 1, 1)).shape == (2, 3, 4)


@pytest.mark.parametrize("bad", [[1, 2], [1, -2, 3], [0, 1, 1], [1, float("nan"), 1], "abc"])
def test_bad_config_spacing(tmp_path, bad):
    sio.write_volume(tmp_path / "s.zarr", make_array(np.uint8), SPACING)
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "s.zarr", spacing=bad)
    assert_error(excinfo, "s.zarr", "not 3 positive", "config")


def test_bad_metadata_spacing(tmp_path):
    zarr_attrs_array(tmp_path / "m.zarr", {"spacing": [0.4, 0.2]})
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(tmp_path / "m.zarr")
    assert_error(excinfo, "m.zarr", "attribute 'spacing'")


def test_region_out_of_bounds(tmp_path):
    sio.write_volume(tmp_path / "r.zarr", make_array(np.uint8), SPACING)
    vol = sio.open_volume(tmp_path / "r.zarr")
    with pytest.raises(InputError) as excinfo:
        vol.read((slice(0, 8), slice(0, 2), slice(0, 2)))
    assert_error(excinfo, "r.zarr", "outside")


def test_require_finite(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    sio.require_finite(data, "ok.zarr")
    sio.require_finite(np.ones((2, 2, 2), np.uint16), "int.zarr")
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    with pytest.raises(InputError) as excinfo:
        sio.require_finite(data, "fixed.zarr [raw/s0]")
    assert_error(excinfo, "fixed.zarr [raw/s0]", "2 of 27")


def test_corrupt_zarr(tmp_path):
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / ".zarray").write_text("{not json")
    with pytest.raises(InputError) as excinfo:
        sio.open_volume(bad, spacing=SPACING)
    assert_error(excinfo, "bad.zarr", "Zarr")


# --------------------------------------------------------------------------- atomic_path

def test_atomic_path_exception_leaves_nothing(tmp_path):
    target = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            assert Path(tmp).parent == tmp_path and tmp.endswith(".zarr")
            os.makedirs(os.path.join(tmp, "sub"))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_file_and_directory(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic.atomic_path(target) as tmp:
        assert not os.path.exists(tmp)
        Path(tmp).write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    folder = tmp_path / "out.zarr"
    (folder / "stale").mkdir(parents=True)
    with atomic.atomic_path(folder) as tmp:
        os.makedirs(os.path.join(tmp, "fresh"))
    assert sorted(p.name for p in folder.iterdir()) == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "out.zarr"]


# --------------------------------------------------------------------------- output Zarr

def test_create_and_open_zarr(tmp_path):
    path = tmp_path / "warped.zarr"
    arr = zarr_store.create_zarr(path, (7, 10, 13), "float32", (4, 5, 6), SPACING,
                                 attrs={"step": "x"}, origin=[-3.0, 0.5, 12.0])
    arr[0:4, 0:5, 0:6] = 1.5
    again = zarr_store.open_zarr_array(path)
    assert again.metadata.zarr_format == 2 and again.shape == (7, 10, 13)
    assert dict(again.attrs) == {"step": "x", "spacing": list(SPACING),
                                 "origin": [-3.0, 0.5, 12.0]}
    assert again[0, 0, 0] == 1.5 and again[6, 9, 12] == 0
    vol = sio.open_volume(path)
    np.testing.assert_allclose(vol.spacing, SPACING)
    np.testing.assert_allclose(vol.origin, [-3.0, 0.5, 12.0])
    zarr_store.create_zarr(path, (2, 2, 2), "uint8", (2, 2, 2), SPACING)  # overwrite
    assert zarr_store.open_zarr_array(path, mode="r+").shape == (2, 2, 2)


def test_open_zarr_array_errors(tmp_path):
    with pytest.raises(InputError) as excinfo:
        zarr_store.open_zarr_array(tmp_path / "missing.zarr")
    assert_error(excinfo, "missing.zarr", "not found")
    sio.write_volume(tmp_path / "g.zarr", make_array(np.uint8), SPACING, dataset="a")
    with pytest.raises(InputError) as excinfo:
        zarr_store.open_zarr_array(tmp_path / "g.zarr")
    assert_error(excinfo, "g.zarr", "group")
