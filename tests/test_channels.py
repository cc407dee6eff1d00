"""Volumes with channel and time axes, as microscopy tools write them; and runs in which
no block passes the foreground test.

Inputs are written with the ecosystem's writers, not ours: ome-zarr-py
(``ome_zarr.writer.write_image``) for NGFF 0.4 (Zarr v2) and 0.5 (Zarr v3), ngff-zarr
for its nested layout, h5py for a (c, z, y, x) HDF5 and tensorstore for a
(c, z, y, x) N5. Every (t, c) position holds different data, so reading the wrong one
fails a content check.
"""
import json
import os

import h5py
import numpy as np
import pytest

from conftest import DEMO_SPACING, demo_config, fast_settings, snakemake, write_config
from snakestream.config import validate
from snakestream.errors import ConfigError, InputError
from snakestream.grid.inputs import open_image, open_mask
from snakestream.grid.layout import cached_foreground, fixed_block_grid
from snakestream.io.volumes import open_volume
from snakestream.io.zarr_store import open_zarr_array
from snakestream.qc.metrics import tre
from snakestream.demo.scene import load_truth
from snakestream.fields.transform import transform_points

SPACING = (0.8, 0.4, 0.4)
LABELS = ("DAPI", "GFP")


def tc_stack(shape=(2, 2, 6, 10, 12), seed=0):
    """uint16 (t, c, z, y, x) whose every (t, c) volume differs (and says which it is)."""
    data = np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.uint16)
    for t in range(shape[0]):
        for c in range(shape[1]):
            data[t, c, 0, 0, 0] = 10000 + 10 * t + c
    return data


def write_ome(path, data, version, *, labels=LABELS, spacing=SPACING):
    """``data`` (t, c, z, y, x) as an OME-Zarr image (one level, "s0") by ome-zarr-py."""
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import add_metadata, write_image

    fmt = {"0.4": FormatV04(), "0.5": FormatV05()}[version]
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, root, scale_factors=[], fmt=fmt, axes="tczyx"[-data.ndim:],
                scale=dict(zip("zyx", spacing)),
                axes_units=dict.fromkeys("zyx", "micrometer"))
    if labels:
        add_metadata(root, {"omero": {"channels": [{"label": lb} for lb in labels]}}, fmt=fmt)
    return str(path)


def assert_one_line(excinfo, *parts):
    text = str(excinfo.value)
    assert "\n" not in text and "Fix:" in text, text
    for part in parts:
        assert str(part) in text, text


# --------------------------------------------------------------------------- NGFF


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_selection_by_index_and_label_reads_that_volume(tmp_path, version):
    data = tc_stack()
    path = write_ome(tmp_path / "img.ome.zarr", data, version)
    for t in range(2):
        for c, label in enumerate(LABELS):
            for channel in (c, label):
                vol = open_volume(path, "s0", channel=channel, timepoint=t)
                assert vol.shape == data.shape[2:] and vol.chunks is not None
                assert len(vol.chunks) == 3
                np.testing.assert_allclose(vol.spacing, SPACING)
                np.testing.assert_array_equal(vol.read(), data[t, c])
                region = (slice(1, 4), slice(2, 9), slice(3, 12))
                np.testing.assert_array_equal(vol.read(region), data[t, c][region])


def test_ngff_zarr_nested_layout_is_selected(tmp_path):
    import ngff_zarr as nz

    data = tc_stack(seed=1)
    image = nz.to_ngff_image(data, dims=list("tczyx"), scale=dict(zip("zyx", SPACING)))
    nz.to_ngff_zarr(str(tmp_path / "nz.ome.zarr"), nz.to_multiscales(image, scale_factors=[]),
                    version="0.5")
    vol = open_volume(str(tmp_path / "nz.ome.zarr"), channel=0, timepoint=1)
    np.testing.assert_allclose(vol.spacing, SPACING)
    np.testing.assert_array_equal(vol.read(), data[1, 0])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_singleton_time_and_channel_axes_are_squeezed(tmp_path, version):
    data = tc_stack(shape=(1, 1, 5, 8, 9))
    vol = open_volume(write_ome(tmp_path / "one.ome.zarr", data, version, labels=None), "s0")
    assert vol.shape == (5, 8, 9)
    np.testing.assert_array_equal(vol.read(), data[0, 0])


def test_no_selection_names_the_axes_and_the_keys(tmp_path):
    path = write_ome(tmp_path / "img.ome.zarr", tc_stack(), "0.4")
    with pytest.raises(InputError) as excinfo:
        open_volume(path, "s0")
    assert_one_line(excinfo, "img.ome.zarr [s0]", "(t, c, z, y, x)", "(2, 2, 6, 10, 12)",
                    "`timepoint` (0-1)", "`channel` (0-1 or a label: DAPI, GFP)")
    with pytest.raises(InputError) as excinfo:  # the channel alone leaves the time open
        open_volume(path, "s0", channel="GFP")
    assert_one_line(excinfo, "2 time points", "`timepoint`")
    assert "`channel`" not in str(excinfo.value)


@pytest.mark.parametrize("keys, parts", [
    ({"channel": 2, "timepoint": 0}, ["`channel: 2`", "2 channels (0-1)"]),
    ({"channel": 0, "timepoint": 5}, ["`timepoint: 5`", "2 time points (0-1)"]),
    ({"channel": "RFP", "timepoint": 0}, ["'RFP' not found", "DAPI, GFP"]),
])
def test_bad_selection_is_one_line(tmp_path, keys, parts):
    path = write_ome(tmp_path / "img.ome.zarr", tc_stack(), "0.5")
    with pytest.raises(InputError) as excinfo:
        open_volume(path, "s0", **keys)
    assert_one_line(excinfo, "img.ome.zarr", *parts)


def test_zarr_v3_dimension_names_place_the_channel_axis(tmp_path):
    import zarr

    data = np.moveaxis(tc_stack()[1], 0, -1)   # (z, y, x, c): channel last
    arr = zarr.create_array(str(tmp_path / "zyxc.zarr"), shape=data.shape, dtype=data.dtype,
                            chunks=(3, 5, 6, 1), zarr_format=3,
                            dimension_names=["z", "y", "x", "c"],
                            attributes={"spacing": list(SPACING)})
    arr[...] = data
    vol = open_volume(str(tmp_path / "zyxc.zarr"), channel=1)
    assert vol.shape == data.shape[:3] and vol.chunks == (3, 5, 6)
    np.testing.assert_array_equal(vol.read((slice(1, 5), slice(0, 7), slice(2, 12))),
                                  data[1:5, :7, 2:12, 1])
    with pytest.raises(InputError) as excinfo:
        open_volume(str(tmp_path / "zyxc.zarr"))
    assert_one_line(excinfo, "(z, y, x, c)", "`channel` (0-1)")


# --------------------------------------------------------------------------- N5, HDF5


def write_h5_czyx(path, data, spacing=SPACING):
    """(c, z, y, x) HDF5 dataset "raw" with 'element_size_um' (z, y, x), by h5py."""
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("raw", data=data, chunks=(1,) + data.shape[1:])
        ds.attrs["element_size_um"] = np.asarray(spacing)
    return str(path)


def test_hdf5_channel_axis_is_the_first_of_four(tmp_path):
    data = tc_stack()[0]
    path = write_h5_czyx(tmp_path / "czyx.h5", data)
    for c in range(2):
        vol = open_volume(path, channel=c)
        np.testing.assert_allclose(vol.spacing, SPACING)
        np.testing.assert_array_equal(vol.read((slice(2, 5), slice(0, 10), slice(1, 7))),
                                      data[c, 2:5, :, 1:7])
    with pytest.raises(InputError) as excinfo:
        open_volume(path)
    assert_one_line(excinfo, "czyx.h5", "(c, z, y, x)", "`channel` (0-1)")
    with pytest.raises(InputError) as excinfo:  # no OME labels in an HDF5 file
        open_volume(path, channel="GFP")
    assert_one_line(excinfo, "no OME channel labels", "index (0-1)")
    with pytest.raises(InputError) as excinfo:
        open_volume(path, channel=0, timepoint=0)
    assert_one_line(excinfo, "`timepoint: 0`", "no time axis", "remove `timepoint`")


def test_n5_tczyx_follows_the_bigstream_convention(tmp_path):
    import tensorstore as ts

    data = tc_stack(seed=3)
    path = str(tmp_path / "vol.n5")
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path + "/raw"},
                     "metadata": {"dimensions": list(data.shape[::-1]),
                                  "blockSize": [6, 5, 3, 1, 1], "dataType": "uint16",
                                  "compression": {"type": "gzip"}}}, create=True).result()
    store.T.write(data).result()  # N5 lists axes fastest first: (x, y, z, c, t)
    with open(os.path.join(path, "attributes.json"), "w") as fh:
        json.dump({"n5": "4.0.0"}, fh)
    attrs_file = os.path.join(path, "raw", "attributes.json")
    with open(attrs_file) as fh:
        attrs = json.load(fh)
    attrs["pixelResolution"] = {"dimensions": list(SPACING[::-1]), "unit": "um"}
    with open(attrs_file, "w") as fh:
        json.dump(attrs, fh)
    vol = open_volume(path, "raw", channel=1, timepoint=0)
    np.testing.assert_allclose(vol.spacing, SPACING)
    assert vol.chunks == (3, 5, 6)
    np.testing.assert_array_equal(vol.read(), data[0, 1])


def test_three_d_volume_refuses_a_channel(tmp_path):
    path = write_h5_czyx(tmp_path / "zyx.h5", tc_stack()[0, 0])
    assert open_volume(path).shape == (6, 10, 12)
    with pytest.raises(InputError) as excinfo:
        open_volume(path, channel=1)
    assert_one_line(excinfo, "zyx.h5", "no channel axis", "remove `channel`")


# --------------------------------------------------------------------------- config entries


def _entries(tmp_path):
    """A config whose fixed, moving, fixed mask and extra volume each pick a (t, c)."""
    data = tc_stack()
    image = write_ome(tmp_path / "img.ome.zarr", data, "0.5")
    masks = np.zeros((2,) + data.shape[2:], np.uint8)
    masks[1, :3] = 1  # channel 1: the top half; channel 0: nothing
    mask = write_h5_czyx(tmp_path / "masks.h5", masks)
    cfg = validate({
        "fixed": {"path": image, "dataset": "s0", "channel": "DAPI", "timepoint": 1,
                  "mask": {"path": mask, "channel": 1}},
        "moving": {"path": image, "dataset": "s0", "channel": 1, "timepoint": 0},
        "extra_volumes": [{"name": "other", "path": image, "dataset": "s0",
                           "channel": "GFP", "timepoint": 1}],
        "output": str(tmp_path / "out"),
        "global_steps": [["affine", {}]],
        "blocks": {"blocksize": [3, 10, 12], "steps": [["affine", {}]]},
    })
    return cfg, data, masks


def test_config_keys_reach_images_masks_and_extra_volumes(tmp_path):
    cfg, data, masks = _entries(tmp_path)
    fix, mov = open_image(cfg["fixed"]), open_image(cfg["moving"])
    np.testing.assert_array_equal(fix.read(), data[1, 0])
    np.testing.assert_array_equal(mov.read(), data[0, 1])
    np.testing.assert_array_equal(open_image(cfg["extra_volumes"][0]).read(), data[1, 1])
    np.testing.assert_array_equal(open_mask(cfg["fixed"], fix).read(), masks[1])
    grid = fixed_block_grid(fix, cfg["fixed"], blocksize=[3, 10, 12], overlap=0.5,
                            threshold=0.5, cache_dir=str(tmp_path / "cache"))
    assert grid.aligned.tolist() == [True, False]   # the mask's channel 1 covers the top


def test_foreground_cache_tells_mask_channels_apart(tmp_path):
    cfg, _, masks = _entries(tmp_path)
    fix = open_image(cfg["fixed"])
    cache = str(tmp_path / "cache")
    fractions = {}
    for c in range(2):
        mask = open_mask({"mask": {"path": cfg["fixed"]["mask"]["path"], "channel": c}}, fix)
        fractions[c] = cached_foreground(mask, fix.shape, fix.spacing, [3, 10, 12], cache)
    np.testing.assert_allclose(fractions[1].ravel(), [masks[1, :3].mean(), masks[1, 3:].mean()])
    np.testing.assert_allclose(fractions[0].ravel(), [0, 0])


@pytest.mark.parametrize("where, value", [
    ("fixed", {"channel": -1}), ("fixed", {"timepoint": "one"}),
    ("mask", {"channel": 1.5}), ("extra", {"timepoint": -2}),
])
def test_schema_refuses_bad_channel_and_timepoint(tmp_path, where, value):
    cfg = {"fixed": {"path": "f.zarr"}, "moving": {"path": "m.zarr"}, "output": "out",
           "global_steps": [["affine", {}]],
           "extra_volumes": [{"name": "e", "path": "e.zarr"}]}
    target = {"fixed": cfg["fixed"], "extra": cfg["extra_volumes"][0]}.get(where)
    if where == "mask":
        cfg["fixed"]["mask"] = target = {"path": "mask.h5"}
    target.update(value)
    with pytest.raises(ConfigError) as excinfo:
        validate(cfg)
    key = next(iter(value))
    assert key in str(excinfo.value)


# --------------------------------------------------------------------------- no block passes


def test_mask_that_excludes_everything_stops_with_the_counts(tmp_path):
    cfg, _, _ = _entries(tmp_path)
    cfg["fixed"]["mask"]["channel"] = 0  # the empty channel
    fix = open_image(cfg["fixed"])
    with pytest.raises(ConfigError) as excinfo:
        fixed_block_grid(fix, cfg["fixed"], blocksize=[3, 5, 6], overlap=0.5, threshold=0.5,
                         cache_dir=str(tmp_path / "cache"))
    assert_one_line(excinfo, "masks.h5", "0 of 8 blocks pass", "empty", "fixed.mask")


def test_blocksize_larger_than_the_image_stops_with_the_setting_to_change(tmp_path):
    cfg, _, masks = _entries(tmp_path)
    fix = open_image(cfg["fixed"])
    with pytest.raises(ConfigError) as excinfo:
        fixed_block_grid(fix, cfg["fixed"], blocksize=[64, 64, 64], overlap=0.5, threshold=0.6,
                         cache_dir=str(tmp_path / "cache"))
    best = masks[1].mean()  # the one block is the whole image, half of it in the mask
    assert_one_line(excinfo, "0 of 1 blocks pass", f"{best:.3f}",
                    "lower blocks.foreground_fraction to 0.5 or less",
                    "make blocks.blocksize (now [64, 64, 64]; the image is [6, 10, 12] voxels)")


# --------------------------------------------------------------------------- end to end

SHAPE = (24, 96, 96)


@pytest.fixture(scope="module")
def five_d(demo_data):
    """The demo pair as 5-D OME-Zarr (fixed NGFF 0.4, moving 0.5) and its mask as a
    (c, z, y, x) HDF5; the real volumes sit at one (t, c), flipped copies elsewhere."""
    root = demo_data("channels", SHAPE, seed=4)
    data = root / "data"
    fix = open_volume(str(data / "fix.zarr"), "s0").read()
    mov = open_volume(str(data / "mov.h5"), "/ch0").read()
    mask = open_volume(str(data / "fix_mask.zarr"), "s0").read()
    flips = [lambda a: a[:, ::-1], lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, ::-1]]
    fix5 = np.stack([np.stack([flips[0](fix), flips[1](fix)]),
                     np.stack([fix, flips[2](fix)])])                 # fixed: t=1, c=0
    mov5 = np.stack([np.stack([flips[0](mov), mov]),                  # extra: t=0, c=1
                     np.stack([flips[1](mov), mov])])                 # moving: t=1, c=1
    write_ome(data / "fix5.ome.zarr", fix5, "0.4", spacing=DEMO_SPACING)
    write_ome(data / "mov5.ome.zarr", mov5, "0.5", spacing=DEMO_SPACING)
    write_h5_czyx(data / "masks.h5", np.stack([np.zeros_like(mask), mask]), DEMO_SPACING)
    return root


def _five_d_config(root, out):
    data = root / "data"
    cfg = fast_settings(demo_config(data, root / out))
    cfg["fixed"] = {"path": str(data / "fix5.ome.zarr"), "dataset": "s0", "timepoint": 1,
                    "channel": "DAPI", "mask": {"path": str(data / "masks.h5"), "channel": 1}}
    cfg["moving"] = {"path": str(data / "mov5.ome.zarr"), "dataset": "s0", "timepoint": 1,
                     "channel": "GFP"}
    cfg["extra_volumes"] = [{"name": "same", "path": str(data / "mov5.ome.zarr"),
                             "dataset": "s0", "timepoint": 0, "channel": 1}]
    return cfg


def test_pipeline_registers_the_selected_channel_and_time_point(five_d):
    root = five_d
    cfg = _five_d_config(root, "out")
    proc = snakemake(write_config(root / "five_d.yaml", cfg), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, truth = root / "out", load_truth(str(root / "data" / "truth.npz"))
    affine = np.loadtxt(out / "global" / "affine.mat")
    field = open_zarr_array(str(out / "deform.zarr"))
    pts, target = truth.landmarks_fixed, truth.landmarks_moving
    global_tre = tre(transform_points(pts, affine), target)["median"]
    block_tre = tre(transform_points(pts, affine, field[...], field.attrs["spacing"]),
                    target)["median"]
    print(f"5-D run: global TRE {global_tre:.3f} µm, with blocks {block_tre:.3f} µm")
    # measured 1.0 and 0.29 µm; a flipped copy (a wrong selection) is off by many µm
    assert global_tre < 2.0 and block_tre < 0.5 and block_tre < global_tre
    aligned = open_volume(str(out / "aligned.zarr"), "0").read()
    assert aligned.shape == SHAPE
    # the extra volume at (t=0, c=1) holds the same moving data: warped the same
    np.testing.assert_array_equal(open_volume(str(out / "extra" / "same.zarr"), "0").read(),
                                  aligned)


def test_bad_selections_and_an_empty_mask_stop_at_parse_time(five_d):
    root = five_d
    cfg = _five_d_config(root, "out_dry")
    del cfg["moving"]["timepoint"]
    proc = snakemake(write_config(root / "no_t.yaml", cfg), root, "-n")
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "mov5.ome.zarr" in ln]
    assert lines and "`timepoint` (0-1)" in lines[0] and "Fix:" in lines[0], proc.stderr[-2000:]
    for key, needle in [("mask", "`channel` (0-1)"), ("extra", "'RFP' not found")]:
        cfg = _five_d_config(root, "out_dry")   # entries no parse-time grid needs, too
        if key == "mask":
            cfg["moving"]["mask"] = {"path": str(root / "data" / "masks.h5")}
        else:
            cfg["extra_volumes"][0]["channel"] = "RFP"
        proc = snakemake(write_config(root / f"bad_{key}.yaml", cfg), root, "-n")
        assert proc.returncode != 0
        text = proc.stdout + proc.stderr
        assert any(needle in ln and "Fix:" in ln for ln in text.splitlines()), text[-2000:]
    cfg = _five_d_config(root, "out_dry")
    cfg["fixed"]["mask"]["channel"] = 0   # the empty channel: no block passes
    proc = snakemake(write_config(root / "empty.yaml", cfg), root, "-n")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    lines = [ln for ln in text.splitlines() if "blocks pass the foreground test" in ln]
    assert lines and "masks.h5" in lines[0] and "Fix:" in lines[0], text[-2000:]
