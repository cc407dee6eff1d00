"""Volume origins (issue 18): read from every format, carried through every transform,
written into every output, so ITK applied to the user's ORIGINAL files gives our result.

The end-to-end pair is written with the ecosystem's own writers: the fixed image as
NRRD by pynrrd (non-zero 'space origin'), the moving image as OME-Zarr by ngff-zarr
(another non-zero translation, anisotropic spacing). Its voxels are the demo pair's,
so the known truth holds with the landmarks moved by the origins.
"""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import CLUSTER_SHAPE, demo_config, fast_settings, snakemake, write_config
from snakestream.demo.scene import load_truth
from snakestream.errors import InputError
from snakestream.fields.transform import transform_points
from snakestream.grid.geometry import to_frames
from snakestream.io.volumes import open_volume, write_volume
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.qc.metrics import tre

FIX_ORIGIN = np.array([12.5, -30.0, 7.2])   # µm, z, y, x
MOV_ORIGIN = np.array([-5.0, 20.0, 41.3])
SPACING = np.array([0.8, 0.4, 0.4])


# ---------------------------------------------------------------- writers of the ecosystem

def write_nrrd_pynrrd(path, data, spacing, origin):
    """An NRRD as pynrrd writes it: x, y, z header (fastest first), LPS space."""
    import nrrd

    header = {"space": "left-posterior-superior",
              "space directions": np.diag(np.asarray(spacing, float)[::-1]),
              "space origin": np.asarray(origin, float)[::-1], "kinds": ["domain"] * 3}
    nrrd.write(str(path), np.asarray(data), header, index_order="C")
    return str(path)


def write_ome_ngff_zarr(path, data, spacing, origin, *, version="0.4", levels=1):
    """An OME-Zarr image written by ngff-zarr: ``scale<k>/image`` with scale and translation."""
    import ngff_zarr as nz

    image = nz.to_ngff_image(np.asarray(data), dims=["z", "y", "x"],
                             scale=dict(zip("zyx", map(float, spacing))),
                             translation=dict(zip("zyx", map(float, origin))),
                             axes_units={a: "micrometer" for a in "zyx"})
    factors = [{"z": 1, "y": 2 ** k, "x": 2 ** k} for k in range(1, levels)]
    nz.to_ngff_zarr(str(path), nz.to_multiscales(image, scale_factors=factors), version=version)
    return str(path)


def _ngff_level0(path):
    """(scale, translation) (z, y, x) of level 0 as written in the file's own JSON."""
    import zarr

    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    ms = attrs.get("ome", attrs)["multiscales"][0]
    found = {t["type"]: np.asarray(t[t["type"]], float)
             for t in ms["datasets"][0]["coordinateTransformations"]}
    return found["scale"], found["translation"]


# ---------------------------------------------------------------- reading (unit)

@pytest.fixture
def small():
    return np.random.default_rng(3).random((6, 10, 14)).astype(np.float32)


def test_nrrd_space_origin_is_read_in_z_y_x(tmp_path, small):
    vol = open_volume(write_nrrd_pynrrd(tmp_path / "a.nrrd", small, SPACING, FIX_ORIGIN))
    assert vol.origin.dtype == np.float64 and vol.origin.shape == (3,)
    np.testing.assert_allclose(vol.origin, FIX_ORIGIN)
    np.testing.assert_allclose(vol.spacing, SPACING)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_translation_of_the_chosen_level(tmp_path, small, version):
    path = write_ome_ngff_zarr(tmp_path / "a.zarr", small, SPACING, MOV_ORIGIN,
                               version=version, levels=2)
    level0 = open_volume(path, "scale0/image")
    np.testing.assert_allclose(level0.origin, MOV_ORIGIN)
    level1 = open_volume(path, "scale1/image")     # block means: centres half a voxel on
    np.testing.assert_allclose(level1.spacing, SPACING * [1, 2, 2])
    np.testing.assert_allclose(level1.origin, MOV_ORIGIN + [0, 0.2, 0.2])


def test_multiscale_transformations_apply_after_the_dataset_ones(tmp_path, small):
    import zarr

    root = zarr.open_group(str(tmp_path / "m.zarr"), mode="w", zarr_format=2)
    root.create_array("0", data=small)
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [800.0, 400.0, 400.0]},
            {"type": "translation", "translation": [10.0, 20.0, 30.0]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]},
                                      {"type": "translation", "translation": [1000.0, 0, 0]}]}]
    vol = open_volume(str(tmp_path / "m.zarr"), "0")
    np.testing.assert_allclose(vol.spacing, [1.6, 0.4, 0.4])
    np.testing.assert_allclose(vol.origin, [(10.0 * 2 + 1000.0) / 1000, 0.02, 0.03])


@pytest.mark.parametrize("kind, key", [("zarr", "origin"), ("zarr", "offset"),
                                       ("n5", "origin"), ("n5", "offset"),
                                       ("hdf5", "origin"), ("hdf5", "offset")])
def test_origin_or_offset_attribute(tmp_path, small, kind, key):
    ext = {"zarr": ".zarr", "n5": ".n5", "hdf5": ".h5"}[kind]
    path = str(tmp_path / f"a{ext}")
    write_volume(path, small, SPACING, dataset="s0")
    _set_attr(kind, path, "s0", key, FIX_ORIGIN.tolist())
    np.testing.assert_allclose(open_volume(path, "s0").origin, FIX_ORIGIN)


def _set_attr(kind, path, dataset, key, value):
    """Replace the dataset's origin attribute by `key` (as another tool would write it)."""
    if kind == "zarr":
        import zarr

        attrs = zarr.open_group(path, mode="r+")[dataset].attrs
        attrs.pop("origin", None)
        attrs[key] = value
    elif kind == "n5":
        file = f"{path}/{dataset}/attributes.json"
        with open(file) as fh:
            attrs = json.load(fh)
        attrs.pop("origin", None)
        with open(file, "w") as fh:
            json.dump({**attrs, key: value}, fh)
    else:
        import h5py

        with h5py.File(path, "r+") as fh:
            del fh[dataset].attrs["origin"]
            fh[dataset].attrs[key] = value


@pytest.mark.parametrize("ext", [".zarr", ".n5", ".h5", ".nrrd", ".nhdr"])
def test_written_origins_read_back(tmp_path, small, ext):
    path = str(tmp_path / f"a{ext}")
    write_volume(path, small, SPACING, origin=FIX_ORIGIN)
    vol = open_volume(path)
    np.testing.assert_allclose(vol.origin, FIX_ORIGIN)
    np.testing.assert_array_equal(vol.read(), small)


def test_tiff_has_no_origin_and_the_config_sets_one(tmp_path, small):
    path = str(tmp_path / "a.tif")
    write_volume(path, small, SPACING)
    np.testing.assert_array_equal(open_volume(path).origin, np.zeros(3))
    np.testing.assert_allclose(open_volume(path, origin=[1, 2, 3]).origin, [1, 2, 3])
    with pytest.raises(InputError, match="TIFF cannot store the origin"):
        write_volume(str(tmp_path / "b.tif"), small, SPACING, origin=[1, 0, 0])


def test_config_origin_overrides_the_file_and_bad_values_are_one_line(tmp_path, small):
    path = write_nrrd_pynrrd(tmp_path / "a.nrrd", small, SPACING, FIX_ORIGIN)
    np.testing.assert_array_equal(open_volume(path, origin=[0, 0, 0]).origin, np.zeros(3))
    with pytest.raises(InputError) as err:
        open_volume(path, origin=[0, float("nan"), 0])
    assert "a.nrrd" in str(err.value) and "origin: [z, y, x]" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pyramid_level_opens_at_the_origin_its_metadata_gives(tmp_path, small):
    from snakestream.io.ngff import build_pyramid, create_image
    from snakestream.io.pyramids import open_level, pyramid_levels

    path = str(tmp_path / "img.zarr")
    data = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    create_image(path, data.shape, data.dtype, (8, 16, 16), SPACING, origin=FIX_ORIGIN,
                 levels=3)[...] = data
    build_pyramid(path)
    full = open_volume(path, "0")
    levels, _ = pyramid_levels(full)
    assert len(levels) == 3
    for level in levels[1:]:
        np.testing.assert_allclose(open_level(full, level).origin,
                                   open_volume(path, level.dataset).origin)
        assert np.any(open_level(full, level).origin != FIX_ORIGIN)


def test_a_mask_lies_on_its_image(tmp_path, small):
    from snakestream.grid.inputs import open_image, open_mask

    image = write_nrrd_pynrrd(tmp_path / "a.nrrd", small, SPACING, FIX_ORIGIN)
    write_volume(str(tmp_path / "m.tif"), small > 0.5, SPACING)
    spec = {"path": image, "mask": str(tmp_path / "m.tif")}
    np.testing.assert_allclose(open_mask(spec, open_image(spec)).origin, FIX_ORIGIN)


def test_voxel_points_use_the_origin(tmp_path):
    from snakestream.fields.points import read_points, write_points

    pd.DataFrame({"z": [1.0], "y": [2.0], "x": [3.0]}).to_csv(tmp_path / "p.csv", index=False)
    pts, table = read_points(tmp_path / "p.csv", "voxel", SPACING, origin=FIX_ORIGIN)
    np.testing.assert_allclose(pts[0], FIX_ORIGIN + [0.8, 0.8, 1.2])
    write_points(tmp_path / "q.csv", table, pts, "voxel", SPACING, origin=FIX_ORIGIN)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "q.csv")[list("zyx")].to_numpy(),
                               [[1.0, 2.0, 3.0]])


# ---------------------------------------------------------------- bigstream's origins

def test_step_origins_null_means_the_volumes_own_frame():
    from snakestream.register.steps import in_local_frames, normalize_steps

    given = np.eye(4)
    given[:3, 3] = [1.0, -2.0, 3.0]
    given[0, 1] = 0.1
    steps = normalize_steps([["affine", {"initial_condition": given.tolist()}],
                             ["affine", {"initial_condition": given.tolist(),
                                         "fix_origin": [0, 0, 0], "mov_origin": [0, 0, 0]}]],
                            "s")
    null, zero = in_local_frames(steps, FIX_ORIGIN, MOV_ORIGIN)  # the frames registered in
    # null: written in the volumes' physical frames, the frames of global/affine.mat
    np.testing.assert_allclose(to_frames(null[1]["initial_condition"], FIX_ORIGIN, MOV_ORIGIN),
                               given)
    # given as 0: bigstream's voxel 0 at 0 µm, which is the local frame already
    np.testing.assert_allclose(zero[1]["initial_condition"], given)
    assert zero[1]["fix_origin"] is None and steps[1][1]["fix_origin"] == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def runs(demo_data):
    """The demo pair as NRRD (fixed) + OME-Zarr (moving) with origins; the pipeline run on
    it with the files' origins, and again with `origin: [0, 0, 0]` set in the config."""
    root = demo_data("origins", CLUSTER_SHAPE, seed=2)
    data = root / "data"
    fix = open_volume(str(data / "fix.zarr"), "s0", [0.8, 0.4, 0.4])
    mov = open_volume(str(data / "mov.h5"), "/ch0")
    fixed = write_nrrd_pynrrd(data / "fix.nrrd", fix.read(), fix.spacing, FIX_ORIGIN)
    moving = write_ome_ngff_zarr(data / "mov.ome.zarr", mov.read(), mov.spacing, MOV_ORIGIN)
    truth = load_truth(str(data / "truth.npz"))
    np.savez(data / "truth_shifted.npz", landmarks_fixed=truth.landmarks_fixed + FIX_ORIGIN,
             landmarks_moving=truth.landmarks_moving + MOV_ORIGIN)
    pd.DataFrame(truth.landmarks_moving / mov.spacing, columns=list("zyx")).to_csv(
        data / "moving_vox.csv", index=False)
    out = {}
    for name, origins in (("files", None), ("zero", [0.0, 0.0, 0.0])):
        cfg = fast_settings(demo_config(data, root / name))
        cfg["fixed"].update(path=fixed, dataset=None, spacing=None, origin=origins)
        cfg["moving"].update(path=moving, dataset="scale0/image", origin=origins)
        cfg.update(landmarks=str(data / "truth_shifted.npz") if origins is None else None,
                   exports={"itk": True, "itk_total_field": True, "itk_field_step": [1, 1, 1]})
        if origins is None:
            cfg.update(inverse=True, points=[
                {"name": "to_fixed", "path": str(data / "moving_vox.csv"), "units": "voxel",
                 "direction": "moving_to_fixed"}])
        proc = snakemake(write_config(root / f"{name}.yaml", cfg), root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = root / name
    return {"out": out, "fixed": fixed, "moving": moving, "truth": truth,
            "mov_spacing": mov.spacing}


def _aligned(out):
    return open_volume(str(out / "aligned.zarr"), "0").read().astype(np.float64)


def _mean_relative_difference(a, b):
    return float(np.abs(a - b).mean() / np.abs(b).mean())


def test_itk_on_the_original_files_gives_our_aligned_image(runs):
    """The acceptance point: SimpleITK resamples the ORIGINAL moving file onto the ORIGINAL
    fixed file's grid through our ITK exports, and gets our aligned image."""
    import SimpleITK as sitk
    import zarr

    out = runs["out"]["files"]
    reference = sitk.ReadImage(runs["fixed"])          # the NRRD as ITK reads it
    np.testing.assert_allclose(reference.GetOrigin(), FIX_ORIGIN[::-1])
    scale, shift = _ngff_level0(runs["moving"])        # the OME-Zarr's own metadata
    moving = sitk.GetImageFromArray(
        np.asarray(zarr.open_group(runs["moving"], mode="r")["scale0/image"], np.float32))
    moving.SetSpacing(scale[::-1].tolist())
    moving.SetOrigin(shift[::-1].tolist())
    composite = sitk.CompositeTransform([
        sitk.ReadTransform(str(out / "itk" / "affine.tfm")),
        sitk.DisplacementFieldTransform(
            sitk.ReadImage(str(out / "itk" / "deform_field.nrrd"), sitk.sitkVectorFloat64))])
    total = sitk.DisplacementFieldTransform(
        sitk.ReadImage(str(out / "itk" / "total_field.nrrd"), sitk.sitkVectorFloat64))
    ours = _aligned(out)
    for name, transform in (("affine + deform_field", composite), ("total_field", total)):
        itk = sitk.GetArrayFromImage(sitk.Resample(moving, reference, transform,
                                                   sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        diff = _mean_relative_difference(itk.astype(np.float64), ours)
        print(f"ITK ({name}) on the original files vs aligned.zarr: "
              f"mean relative difference {100 * diff:.3f} %")
        assert diff < 0.01


def test_outputs_carry_the_fixed_origin(runs):
    import nrrd
    import zarr

    out = runs["out"]["files"]
    for image, origin in (("aligned.zarr", FIX_ORIGIN), ("fixed_on_moving.zarr", MOV_ORIGIN)):
        ms = dict(zarr.open_group(str(out / image), mode="r").attrs)["multiscales"][0]
        np.testing.assert_allclose(ms["datasets"][0]["coordinateTransformations"][1]
                                   ["translation"], origin)
        np.testing.assert_allclose(open_volume(str(out / image), "0").origin, origin)
    for store in ("deform.zarr", "inverse.zarr"):
        np.testing.assert_allclose(grid_origin(open_zarr_array(str(out / store)).attrs),
                                   FIX_ORIGIN)
    header = nrrd.read_header(str(out / "itk" / "deform_field.nrrd"))
    np.testing.assert_allclose(header["space origin"], FIX_ORIGIN[::-1])


def test_transforms_map_the_shifted_landmarks(runs):
    """Affine and field map fixed physical points (fixed origin) to moving ones (moving
    origin): the demo's truth holds with the landmarks moved by the origins."""
    out, truth = runs["out"]["files"], runs["truth"]
    affine = np.loadtxt(out / "global" / "affine.mat")
    field = open_zarr_array(str(out / "deform.zarr"))
    moved = transform_points(truth.landmarks_fixed + FIX_ORIGIN, affine, field[...],
                             field.attrs["spacing"], field_origin=grid_origin(field.attrs))
    result = tre(moved, truth.landmarks_moving + MOV_ORIGIN)
    before = tre(truth.landmarks_fixed + FIX_ORIGIN, truth.landmarks_moving + MOV_ORIGIN)
    print(f"TRE with origins: median {result['median']:.3f} µm "
          f"(before {before['median']:.3f} µm)")
    assert result["median"] < 1.0 < before["median"]
    back = pd.read_csv(out / "points" / "to_fixed.csv")[list("zyx")].to_numpy()
    back_tre = tre(back * SPACING + FIX_ORIGIN, truth.landmarks_fixed + FIX_ORIGIN)["median"]
    print(f"moving -> fixed points (voxels): median TRE {back_tre:.3f} µm")
    assert back_tre < 1.0
    table = pd.read_csv(out / "qc" / "landmarks.tsv", sep="\t").set_index("stage")
    assert table.loc["blocks", "median_um"] == pytest.approx(result["median"], abs=1e-4)
    html = (out / "report.html").read_text()             # the report shows that table
    assert f"<td>blocks</td><td>{len(truth.landmarks_fixed)}</td><td>{result['median']:.3f}</td>" in html


def test_origins_only_shift_the_frame(runs):
    """With `origin: [0, 0, 0]` in the config the same files align to the same image, and
    the affine is the same alignment written in frames without the origins (registration
    runs in the volumes' local frames, so only round-off may differ)."""
    files, zero = runs["out"]["files"], runs["out"]["zero"]
    diff = _mean_relative_difference(_aligned(files), _aligned(zero))
    print(f"aligned.zarr with origins vs with origin 0: mean relative difference "
          f"{100 * diff:.2e} %")
    assert diff < 1e-5
    fields = [open_zarr_array(str(out / "deform.zarr"))[...] for out in (files, zero)]
    print(f"deform.zarr, largest difference: {np.abs(fields[0] - fields[1]).max():.2e} µm")
    assert np.abs(fields[0] - fields[1]).max() < 1e-3
    with_origins = np.loadtxt(files / "global" / "affine.mat")
    without = np.loadtxt(zero / "global" / "affine.mat")
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T \
        * (np.array(CLUSTER_SHAPE) - 1) * SPACING
    a = transform_points(corners + FIX_ORIGIN, with_origins) - MOV_ORIGIN
    b = transform_points(corners, without)
    print(f"global affines, corner mismatch: {np.abs(a - b).max():.2e} µm")
    assert np.abs(a - b).max() < 1e-3
    assert not np.allclose(with_origins[:3, 3], without[:3, 3], atol=1.0)
