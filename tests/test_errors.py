"""Every bad input ends in one clear line naming the file and the fix (the convention of
src/snakestream/errors.py: ``where: problem. Fix: what to do``)."""
import numpy as np
import pytest

from conftest import DEMO_SPACING, demo_config, fast_settings, snakemake, write_config
from snakestream.fields.blockfile import load_block
from snakestream.errors import BlockFileError, InputError
from snakestream.io.volumes import open_volume, write_volume

SHAPE = (24, 80, 80)


@pytest.fixture(scope="module")
def data(demo_data):
    return demo_data("errors", SHAPE, seed=2)


def _fails(root, name, cfg, *args):
    proc = snakemake(write_config(root / f"{name}.yaml", cfg), root, *args)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def _one_line_with(text, *needles):
    lines = [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    assert lines, f"no line contains {needles}:\n{text[-2000:]}"
    return lines[0]


def _only_error_line(text, *needles):
    """The one line of ours ('snakestream ... error: ...') in ``text``; it holds ``needles``."""
    ours = [ln for ln in text.splitlines() if ln.startswith("snakestream ") and " error: " in ln]
    assert len(ours) == 1, f"expected one snakestream error line, got {ours}:\n{text[-2000:]}"
    assert all(n in ours[0] for n in needles), f"{needles} not all in: {ours[0]}"
    return ours[0]


def _existing_output(root, name):
    """An output folder holding results of an earlier run: {path: (bytes, mtime)}."""
    out = root / name
    (out / "global").mkdir(parents=True)
    (out / "global" / "affine.mat").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    (out / "report.html").write_text("<html>an earlier run</html>")
    return out, _snapshot(out)


def _snapshot(folder):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_missing_file(data):
    cfg = demo_config(data / "data", data / "out")
    cfg["moving"]["path"] = str(data / "data" / "nope.h5")
    line = _one_line_with(_fails(data, "missing", cfg, "-n"), "nope.h5", "Fix:")
    assert "not found" in line or "does not exist" in line or "missing" in line


def test_wrong_dataset_lists_the_real_ones(data):
    cfg = demo_config(data / "data", data / "out")
    cfg["fixed"]["dataset"] = "s9"
    _one_line_with(_fails(data, "dataset", cfg, "-n"), "fix.zarr", "s9", "s0")


def test_unknown_config_key_is_named(data):
    cfg = demo_config(data / "data", data / "out")
    cfg["blocks"]["steps"][0][1]["learning_rate"] = 0.1
    _one_line_with(_fails(data, "key", cfg, "-n"), "learning_rate", "unknown key")


def _with_fixed_mask(data, out, name, mask):
    """The demo config writing to ``out`` with ``mask`` (written to ``name``) as the
    fixed mask."""
    write_volume(str(data / name), mask, DEMO_SPACING, dataset="s0")
    cfg = demo_config(data / "data", data / out)
    cfg["fixed"]["mask"] = {"path": str(data / name), "dataset": "s0"}
    return cfg


def test_mismatched_mask_dimensions(data):
    cfg = _with_fixed_mask(data, "out", "small_mask.zarr", np.ones((12, 40, 41), np.uint8))
    _one_line_with(_fails(data, "mask_dims", cfg), "small_mask.zarr", "mask covers", "Fix:")


def test_2d_image(data):
    import zarr

    flat = data / "flat2d.zarr"
    zarr.open_array(str(flat), mode="w", shape=(80, 80), dtype="uint16")
    cfg = demo_config(data / "data", data / "out")
    cfg["moving"] = {"path": str(flat), "dataset": None,
                     "spacing": [0.8, 0.4, 0.4], "mask": None}
    line = _one_line_with(_fails(data, "flat", cfg, "-n"), "flat2d.zarr", "3")
    # the file, what is wrong with it, and the fix
    assert (f"{flat}: data has shape (80, 80) (2-D); a 3-D (z, y, x) volume is needed. "
            "Fix: point `dataset` at a 3-D array or save one channel as a 3-D volume") in line


def _nan_moving(data, name, nan_voxels):
    """The demo's moving image with NaN at ``nan_voxels`` (index arrays), as ``name``."""
    import h5py

    with h5py.File(data / "data" / "mov.h5", "r") as fh:
        mov = fh["ch0"][...].astype(np.float32)
    mov[nan_voxels] = np.nan
    write_volume(str(data / name), mov, DEMO_SPACING, dataset="ch0")
    return mov


def test_nan_in_moving_image_stops_the_dry_run(data):
    """A NaN voxel is found at parse time (-n fails): one line naming the file, the count
    and nan_fill; an existing output folder is untouched."""
    _nan_moving(data, "nan.h5", (np.array([3]), np.array([4]), np.array([5])))
    out, before = _existing_output(data, "nan_out")
    cfg = demo_config(data / "data", out)
    cfg["moving"] = {"path": str(data / "nan.h5"), "dataset": "ch0", "spacing": None,
                     "mask": None}
    line = _only_error_line(_fails(data, "nan", cfg, "-n"), "nan.h5", "1 of ",
                            "NaN", "Fix:", "nan_fill: 0", "moving")
    assert "before any job runs" in line
    assert _snapshot(out) == before


def test_nan_beyond_the_parse_time_sample_is_counted_at_full_resolution(data, monkeypatch):
    """NaN outside the centre box read at parse time: the global stage, reading a block
    mean, reports the file's own NaN count (not the mean's) and the fix."""
    from snakestream.io import pyramids
    from snakestream.register.global_stage import downsample_volume

    _nan_moving(data, "nan_corner.h5", np.s_[:2, :3, :5])  # 30 voxels in a corner
    vol = open_volume(str(data / "nan_corner.h5"), "ch0")
    pyramids.require_finite_preview(vol, key="moving", budget=1000)  # the centre is clean
    with pytest.raises(InputError) as err:
        downsample_volume(vol, 1.6)
    msg = str(err.value)
    assert f"30 of {int(np.prod(vol.shape))} voxels (full resolution) are NaN" in msg
    assert "nan_fill: 0" in msg and "\n" not in msg


def test_nan_fill_reads_nan_as_the_value_and_says_how_many(data):
    """Volume.read with nan_fill: NaN voxels read as the value, every other voxel as stored,
    one log line per read counting the replaced voxels of that read."""
    mov = _nan_moving(data, "nan_fill.h5", (np.array([3, 3, 20]), np.array([4, 5, 70]),
                                            np.array([5, 5, 1])))
    lines = []
    vol = open_volume(str(data / "nan_fill.h5"), "ch0", nan_fill=0)
    vol.log = lines.append
    whole = vol.read()
    assert np.isfinite(whole).all() and np.count_nonzero(whole[np.isnan(mov)]) == 0
    np.testing.assert_array_equal(whole[~np.isnan(mov)], mov[~np.isnan(mov)])
    assert len(lines) == 1 and f"3 of {mov.size} voxels read" in lines[0]
    assert "replaced by nan_fill 0" in lines[0] and "nan_fill.h5" in lines[0]
    vol.read((slice(0, 10), slice(None), slice(None)))
    assert len(lines) == 2 and "2 of " in lines[1]
    vol.read((slice(10, 20), slice(None), slice(None)))
    assert len(lines) == 2  # no NaN in that slab: nothing said


def test_nan_fill_key_runs_the_global_stage_and_logs_the_count(data):
    """moving.nan_fill: 0 on a moving image with a NaN slab: the parse passes, the global
    job aligns (a finite affine) and its log counts the replaced voxels."""
    mov = _nan_moving(data, "nan_slab.h5", np.s_[10:12])
    n_nan = int(np.isnan(mov).sum())
    cfg = fast_settings(demo_config(data / "data", data / "nan_fill_out"))
    cfg["moving"] = {"path": str(data / "nan_slab.h5"), "dataset": "ch0", "nan_fill": 0}
    path = write_config(data / "nan_fill.yaml", cfg)
    affine = data / "nan_fill_out" / "global" / "affine.mat"
    proc = snakemake(path, data, str(affine))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.isfinite(np.loadtxt(affine)).all()
    log = (data / "nan_fill_out" / "logs" / "global_align.log").read_text()
    counts = [int(ln.split(": ")[1].split(" of ")[0]) for ln in log.splitlines()
              if "nan_slab.h5" in ln and "replaced by nan_fill 0" in ln]
    # the global stage reads the image once per alignment spacing, the overlay once more;
    # each whole read replaces exactly the file's NaN voxels
    assert counts and sum(counts) % n_nan == 0 and sum(counts) >= n_nan


def test_empty_mask(data):
    cfg = _with_fixed_mask(data, "empty_out", "empty_mask.zarr", np.zeros(SHAPE, np.uint8))
    _one_line_with(_fails(data, "empty", cfg), "empty_mask.zarr", "empty", "Fix:")


def test_corrupt_block_file_names_file_and_fix(tmp_path):
    bad = tmp_path / "z0000_y0000_x0000.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a finished zip file")
    with pytest.raises(BlockFileError) as err:
        load_block(str(bad))
    msg = str(err.value)
    assert str(bad) in msg and "delete this file" in msg and "\n" not in msg


def test_corrupt_block_file_in_a_finished_run_keeps_everything_else(data):
    cfg = demo_config(data / "data", data / "corrupt_out")
    cfg["blocks"]["steps"] = [cfg["blocks"]["steps"][0]]      # affine only: quick
    path = write_config(data / "corrupt.yaml", cfg)
    assert snakemake(path, data).returncode == 0
    out = data / "corrupt_out"
    blocks = sorted((out / "blocks").glob("z*/y*/*.npz"))
    before = {p: p.stat().st_mtime for p in blocks}
    victim = blocks[len(blocks) // 2]
    victim.write_bytes(b"garbage")
    # gather reads it first (it is newer than the field): one clear line, nothing else lost
    text = snakemake(path, data, "--rerun-triggers", "mtime").stderr
    line = _one_line_with(text, str(victim.name), "block file is corrupt")
    assert "delete this file" in line
    assert all(p.exists() for p in blocks)
    assert all(p.stat().st_mtime == t for p, t in before.items() if p != victim)
    assert (out / "global" / "affine.mat").exists()


def test_block_failure_policy_fallback_or_fail(data):
    """A block step that cannot work (no blobs at 50 µm) is a recorded fallback by default,
    and stops the job with one clear line under on_block_failure: fail."""
    from snakestream.grid.blocks import block_relpath, read_table

    cfg = demo_config(data / "data", data / "policy_out")
    cfg["blocks"]["steps"] = [["ransac", {"blob_radius": 50.0}]]
    path = write_config(data / "policy.yaml", cfg)
    table = data / "policy_out" / "blocks" / "table.tsv"
    assert snakemake(path, data, str(table)).returncode == 0
    t = read_table(table)
    bid = t[t.aligned].id.iloc[0]
    target = data / "policy_out" / "blocks" / block_relpath(bid)
    assert snakemake(path, data, str(target)).returncode == 0
    _, qc, _ = load_block(str(target))
    assert qc["status"] == "fallback" and "ransac" in qc["reason"]

    cfg["blocks"]["on_block_failure"] = "fail"
    cfg["output"] = str(data / "policy_fail")
    target = data / "policy_fail" / "blocks" / block_relpath(bid)
    text = _fails(data, "policy_fail", cfg, str(target))
    _one_line_with(text, bid, "fell back", "Fix:")
    assert not target.exists()


def test_schema_violation_names_key_value_meaning_and_fix(data):
    """blocks.overlap 1.5: one line with the key, the bound, what overlap is and what to set;
    an existing output folder is left as it was."""
    out, before = _existing_output(data, "overlap_out")
    cfg = demo_config(data / "data", out)
    cfg["blocks"]["overlap"] = 1.5
    line = _only_error_line(_fails(data, "overlap", cfg, "-n"),
                            "key blocks.overlap: 1.5 is above the maximum 1",
                            "Fix: set blocks.overlap to a value below 1")
    assert "fraction of the block core" in line  # the schema's description of the key
    assert "greater than or equal" not in line
    assert _snapshot(out) == before


def test_type_and_enum_violations_say_what_to_give(data):
    cfg = demo_config(data / "data", data / "enum_out")
    cfg["blocks"]["on_block_failure"] = "retry"
    _only_error_line(_fails(data, "enum", cfg, "-n"), "key blocks.on_block_failure",
                     "'retry' is not one of fallback, fail",
                     "Fix: set blocks.on_block_failure to one of fallback, fail")
    cfg = demo_config(data / "data", data / "type_out", pyramid_levels="three")
    _only_error_line(_fails(data, "type", cfg, "-n"), "key pyramid_levels",
                     "'three' is not a whole number", "Fix: give pyramid_levels as a whole number")


def test_mapping_on_the_command_line_merges_into_the_config_files(data):
    """--config 'blocks={overlap: 0.25}' changes the overlap only: the block table has the
    file's blocksize with a quarter of it added on each side."""
    from snakestream.grid.blocks import read_table

    cfg = demo_config(data / "data", data / "cli_out")
    path = write_config(data / "cli.yaml", cfg)
    table = data / "cli_out" / "blocks" / "table.tsv"
    proc = snakemake(path, data, str(table), "--config", "blocks={overlap: 0.25}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    t = read_table(table)
    size = np.array(cfg["blocks"]["blocksize"])
    assert cfg["blocks"]["overlap"] == 0.5  # the file's value, which the command line replaces
    for k, ax in enumerate("zyx"):
        cores = t[f"c{ax}1"] - t[f"c{ax}0"]
        assert (cores[t[f"c{ax}1"] < t[f"c{ax}1"].max()] == size[k]).all()  # file's blocksize
        inner = t[t[f"c{ax}0"] > 0]  # regions that reach below their core unclipped
        assert len(inner)
        assert ((inner[f"c{ax}0"] - inner[f"{ax}0"]) == round(size[k] * 0.25)).all()


def test_mapping_on_the_command_line_that_is_not_yaml(data):
    path = write_config(data / "cli_bad.yaml", demo_config(data / "data", data / "cli_bad"))
    proc = snakemake(path, data, "-n", "--config", "blocks={overlap: [0.25")
    assert proc.returncode != 0
    _only_error_line(proc.stdout + proc.stderr, "--config blocks", "not valid YAML", "Fix:")


def test_dry_run_writes_nothing(data):
    """-n with a fixed mask (whose block foreground is cached on a real run) leaves no
    output folder; the real parse then writes the cache."""
    out = data / "dry_out"
    path = write_config(data / "dry.yaml", demo_config(data / "data", out))
    for flags in (["-n"], ["-np"], ["--dry-run"]):
        proc = snakemake(path, data, *flags)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "This was a dry-run" in proc.stdout + proc.stderr
        assert not out.exists(), sorted(map(str, out.rglob("*")))
    table = out / "blocks" / "table.tsv"
    assert snakemake(path, data, str(table)).returncode == 0
    assert list((out / ".cache").glob("foreground-*.npy"))


@pytest.mark.parametrize("flags", [["-n"], []], ids=["dry-run", "run"])
def test_output_folder_that_cannot_be_written(data, flags):
    """An output below a file: one line naming the folder and the fix, before any job
    runs; the file and an existing output folder are untouched."""
    blocker = data / f"a_file_{len(flags)}"
    blocker.write_text("not a folder")
    out, before = _existing_output(data, f"kept_{len(flags)}")
    cfg = demo_config(data / "data", blocker / "results")
    line = _only_error_line(_fails(data, f"unwritable_{len(flags)}", cfg, *flags),
                            f"output {blocker / 'results'}", "Fix:")
    assert "is a file" in line and "Traceback" not in line
    assert blocker.read_text() == "not a folder"
    assert _snapshot(out) == before
