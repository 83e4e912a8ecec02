"""Middlebury ``.flo`` optical-flow files, the format of TSS ground truth (PROTOCOL §8, §11).

Layout (little-endian): float32 magic 202021.25, int32 width W, int32 height H, then H·W·2
float32 values, row by row, with (u, v) interleaved per pixel. The reader checks every part of
it and rejects a file that is not exactly that long, so a wrong size is never read as a flow.
NaN and infinite values are rejected too (Middlebury marks unknown flow with finite values above
1e9), unless the caller asks for them, as :func:`sdfuse.data.datasets.tss.read_sample` does to allow
them where the validity mask excludes the pixel.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError, DatasetError

FLO_MAGIC = np.float32(202021.25)
"""The Middlebury tag: the bytes 'PIEH' read as a little-endian float32."""
_HEADER_BYTES = 12


UNKNOWN_FLOW_THRESH = 1e9
"""Middlebury's convention: a flow component above this in magnitude means 'unknown'."""


def read_flo(path: str | Path, allow_nonfinite: bool = False) -> np.ndarray:
    """Read a ``.flo`` file as an (H, W, 2) float32 array of (u, v) (PROTOCOL §8).

    Raises :class:`DatasetError` naming the file for a bad magic number, non-positive sizes,
    a payload that is shorter or longer than 2·W·H floats, or (unless ``allow_nonfinite``) a
    NaN or infinite value.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read flow file ({error})") from error
    if len(raw) < _HEADER_BYTES:
        raise DatasetError(f"{path}: truncated .flo file ({len(raw)} bytes, the header alone is 12)")
    magic = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise DatasetError(f"{path}: not a Middlebury .flo file (magic {magic!r}, expected 202021.25)")
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    if width <= 0 or height <= 0:
        raise DatasetError(f"{path}: non-positive flow size {width}×{height}")
    expected = _HEADER_BYTES + 4 * 2 * width * height
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "over-long"
        raise DatasetError(f"{path}: {kind} .flo file: {len(raw)} bytes, {width}×{height}×2 floats need {expected}")
    data = np.frombuffer(raw, dtype="<f4", offset=_HEADER_BYTES).reshape(height, width, 2).astype(np.float32)
    if not allow_nonfinite:
        bad = ~np.isfinite(data).all(axis=2)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise DatasetError(f"{path}: {int(bad.sum())} pixel(s) hold NaN or infinite flow, first at row {row}, "
                               f"column {col}; Middlebury marks unknown flow with values above 1e9, never NaN")
    return data


def write_flo(path: str | Path, flow: np.ndarray) -> Path:  # pragma: no mutate block  (fixture writer)
    """Write an (H, W, 2) flow as a little-endian Middlebury ``.flo`` file and return its path."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or 0 in flow.shape:
        raise ConfigError(f"a flow must be a non-empty (H, W, 2) array, got shape {flow.shape}")
    height, width = flow.shape[:2]
    path = Path(path)
    header = np.array([FLO_MAGIC], dtype="<f4").tobytes() + np.array([width, height], dtype="<i4").tobytes()
    path.write_bytes(header + flow.astype("<f4").tobytes())
    return path
