"""Red/green overlay images of two volumes on one grid, and a dependency-free PNG writer.

The fixed image is red and the moving image (already resampled onto the
fixed grid) is green, so structures that agree look yellow, and anything
left red or green is misaligned. Each volume is shown as three orthogonal
views (max projections or centre slices) laid out as::

    +------+----+
    |  YX  | YZ |      YX: looking down z (rows y, columns x)
    +------+----+      YZ: looking along x (rows y, columns z)
    |  ZX  |           ZX: looking along y (rows z, columns x)
    +------+

Typical use::

    rgb = side_by_side([overlay_rgb(fix, before, spacing),
                        overlay_rgb(fix, after, spacing)], ["BEFORE", "AFTER"])
    write_png("overlay.png", rgb)

Arrays are (z, y, x); spacing is in µm, z, y, x.
"""

import struct
import zlib

import numpy as np

__all__ = ["orthoviews", "overlay_rgb", "side_by_side", "affine_overlay", "write_png"]

GAP = 2          # pixels between the three views
BACKGROUND = 40  # grey level of gaps and empty corners (uint8)

# 3x5 bitmap font (rows top to bottom, '1' = ink) for labels
_FONT = {
    "A": "010 101 111 101 101", "B": "110 101 110 101 110", "C": "011 100 100 100 011",
    "D": "110 101 101 101 110", "E": "111 100 110 100 111", "F": "111 100 110 100 100",
    "G": "011 100 101 101 011", "H": "101 101 111 101 101", "I": "111 010 010 010 111",
    "J": "001 001 001 101 010", "K": "101 101 110 101 101", "L": "100 100 100 100 111",
    "M": "101 111 111 101 101", "N": "110 101 101 101 101", "O": "010 101 101 101 010",
    "P": "110 101 110 100 100", "Q": "010 101 101 110 011", "R": "110 101 110 101 101",
    "S": "011 100 010 001 110", "T": "111 010 010 010 010", "U": "101 101 101 101 111",
    "V": "101 101 101 101 010", "W": "101 101 111 111 101", "X": "101 101 010 101 101",
    "Y": "101 101 010 010 010", "Z": "111 001 010 100 111",
    "0": "111 101 101 101 111", "1": "010 110 010 010 111", "2": "110 001 010 100 111",
    "3": "110 001 010 001 110", "4": "101 101 111 001 001", "5": "111 100 110 001 110",
    "6": "011 100 111 101 111", "7": "111 001 010 010 010", "8": "111 101 111 101 111",
    "9": "111 101 111 001 110", " ": "000 000 000 000 000", "-": "000 000 111 000 000",
    ".": "000 000 000 000 010", ":": "000 010 000 010 000", "/": "001 001 010 100 100",
    "(": "010 100 100 100 010", ")": "010 001 001 001 010", "+": "000 010 111 010 000",
    "=": "000 111 000 111 000", "_": "000 000 000 000 111",
}


def _stretch_factors(spacing):
    """Integer repeats per axis so displayed pixels are roughly square in µm."""
    if spacing is None:
        return np.ones(3, dtype=int)
    spacing = np.asarray(spacing, dtype=float)
    return np.maximum(np.round(spacing / spacing.min()), 1).astype(int)


def _views(volume, mode):
    """The three 2-D views (YX, YZ, ZX) of a (Z, Y, X) volume."""
    v = np.asarray(volume, dtype=np.float32)
    if mode == "max":
        return v.max(axis=0), v.max(axis=2).T, v.max(axis=1)
    if mode == "slice":
        z, y, x = (n // 2 for n in v.shape)
        return v[z], v[:, :, x].T, v[:, y, :]
    raise ValueError(f"mode must be 'max' or 'slice', got {mode!r}")


def orthoviews(volume, spacing=None, mode="max", fill=np.nan):
    """Three orthogonal views of a volume assembled into one 2-D image.

    Parameters
    ----------
    volume : (Z, Y, X) array
    spacing : (3,) float, optional
        Voxel size in µm, z, y, x. Coarse axes are repeated (nearest
        neighbour, integer factors) so that views are not squashed.
    mode : {'max', 'slice'}, default 'max'
        Maximum-intensity projections or the central slices.
    fill : float, default NaN
        Value of the gaps and of the empty bottom-right corner.

    Returns
    -------
    (Y' + GAP + Z', X' + GAP + Z') float32 array, where Y', X', Z' are the
    stretched sizes of the axes.
    """
    fz, fy, fx = _stretch_factors(spacing)
    yx, yz, zx = _views(volume, mode)
    yx = np.repeat(np.repeat(yx, fy, axis=0), fx, axis=1)
    yz = np.repeat(np.repeat(yz, fy, axis=0), fz, axis=1)
    zx = np.repeat(np.repeat(zx, fz, axis=0), fx, axis=1)
    (ny, nx), nz = yx.shape, yz.shape[1]
    out = np.full((ny + GAP + nz, nx + GAP + nz), fill, dtype=np.float32)
    out[:ny, :nx] = yx
    out[:ny, nx + GAP:] = yz
    out[ny + GAP:, :nx] = zx
    return out


def _unit(image, low, high):
    """Scale finite values to [0, 1] between the ``low``/``high`` percentiles."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def overlay_rgb(fix, moved, spacing=None, mode="max", percentiles=(1.0, 99.5)):
    """RGB overlay of two volumes on the same grid: fixed red, moving green.

    Parameters
    ----------
    fix, moved : (Z, Y, X) arrays of the same shape
        The fixed image and the moving image resampled onto the fixed grid.
    spacing : (3,) float, optional
        Voxel size of that grid in µm, z, y, x (for undistorted views).
    mode : {'max', 'slice'}, default 'max'
        Maximum-intensity projections or central slices (see :func:`orthoviews`).
    percentiles : (float, float), default (1, 99.5)
        Each channel is scaled independently between these percentiles of its
        own views, so different intensity ranges (rounds, stains) compare.

    Returns
    -------
    (H, W, 3) uint8: red = fixed, green = moving, yellow where both are bright;
    gaps between views are grey.
    """
    if np.shape(fix) != np.shape(moved):
        raise ValueError(f"overlay needs one grid: fixed {np.shape(fix)} vs moved {np.shape(moved)}")
    red = orthoviews(fix, spacing, mode)
    green = orthoviews(moved, spacing, mode)
    gap = ~np.isfinite(red)
    rgb = np.zeros(red.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = np.round(255 * _unit(red, *percentiles))
    rgb[..., 1] = np.round(255 * _unit(green, *percentiles))
    rgb[gap] = BACKGROUND
    return rgb


def _text(label, scale=2, colour=255):
    """Label rendered with the 3x5 font as a (5*scale, ...) uint8 image (unknown chars blank)."""
    glyphs = []
    for ch in str(label).upper():
        rows = _FONT.get(ch, _FONT[" "]).split()
        g = np.array([[c == "1" for c in r] for r in rows], dtype=np.uint8)
        glyphs += [g, np.zeros((5, 1), np.uint8)]
    bitmap = np.hstack(glyphs) if glyphs else np.zeros((5, 1), np.uint8)
    return np.kron(bitmap, np.ones((scale, scale), np.uint8)) * np.uint8(colour)


def _pad_to(rgb, height, width):
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    out[:rgb.shape[0], :rgb.shape[1]] = rgb
    return out


def side_by_side(panels, labels=None, gap=6, scale=2):
    """Place RGB panels left to right, each under an optional text label.

    Parameters
    ----------
    panels : list of (H, W, 3) uint8
    labels : list of str, optional
        One per panel; letters, digits and ``-.:/()+=_`` (others print blank).
    gap : int, default 6
        Pixels between panels and around labels.
    scale : int, default 2
        Label font scale (glyphs are 3x5 pixels times ``scale``).

    Returns
    -------
    (H', W', 3) uint8.
    """
    if labels is not None:
        if len(labels) != len(panels):
            raise ValueError("side_by_side needs one label per panel")
        labelled = []
        for panel, label in zip(panels, labels):
            text = _text(label, scale)
            m = gap // 2
            head = np.full((text.shape[0] + gap, max(panel.shape[1], text.shape[1] + m), 3),
                           BACKGROUND, dtype=np.uint8)
            head[m:m + text.shape[0], m:m + text.shape[1]] = np.maximum(text[..., None], BACKGROUND)
            labelled.append(np.vstack([head, _pad_to(panel, panel.shape[0], head.shape[1])]))
        panels = labelled
    height = max(p.shape[0] for p in panels)
    spacer = np.full((height, gap, 3), BACKGROUND, dtype=np.uint8)
    row = []
    for i, panel in enumerate(panels):
        row += ([spacer] if i else []) + [_pad_to(panel, height, panel.shape[1])]
    return np.hstack(row)


def affine_overlay(fix, mov, affines, labels=None, mode="max"):
    """Overlays of ``mov`` pulled onto ``fix`` through each affine, side by side.

    Parameters
    ----------
    fix, mov : snakestream.register.align.Image
        Fixed and moving images (µm spacing/origin, z,y,x), any resolutions.
    affines : list of (4, 4) arrays
        Fixed -> moving physical affines (µm), e.g. ``[identity, global]``.
    labels : list of str, optional
        One per affine, e.g. ``['BEFORE', 'AFTER GLOBAL AFFINE']``.
    mode : {'max', 'slice'}

    Returns
    -------
    (H, W, 3) uint8.
    """
    from snakestream.register.similarity import resample_affine

    panels = [overlay_rgb(fix.data, resample_affine(fix, mov, a), fix.spacing, mode)
              for a in affines]
    return side_by_side(panels, labels)


def _chunk(tag, data):
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def _paeth_filtered(rows, bpp):
    """PNG filter type 4 (Paeth) of every row of (H, W*bpp) uint8 bytes, as uint8.

    The predictor uses the unfiltered neighbours (left, up, up-left), so the whole image
    filters at once; smooth maps and images compress several times better than unfiltered.
    """
    x = rows.astype(np.int16)
    a, b, c = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    a[:, bpp:], b[1:] = x[:, :-bpp], x[:-1]
    c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return ((x - pred) % 256).astype(np.uint8)


def png_bytes(rgb):
    """Encode an (H, W, 3) uint8 (or (H, W) grey) array as PNG bytes (8-bit, Paeth filter)."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"PNG needs (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}")
    height, width = img.shape[:2]
    colour_type = 2 if img.ndim == 3 else 0
    rows = _paeth_filtered(np.ascontiguousarray(img).reshape(height, -1), 3 if img.ndim == 3 else 1)
    raw = np.hstack([np.full((height, 1), 4, np.uint8), rows]).tobytes()  # filter 4 per row
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def write_png(path, rgb):
    """Write ``rgb`` ((H, W, 3) or (H, W) uint8) to ``path`` as a PNG, atomically."""
    from snakestream.io.atomic import atomic_path

    data = png_bytes(rgb)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
