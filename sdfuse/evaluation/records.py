"""The records a results table is computed from, carried by the table and written next to its CSV.

Every table function of :mod:`sdfuse.tables` attaches its records to the DataFrame it returns
(:func:`attach`, in ``table.attrs``); :func:`sdfuse.book.pages.save_results` writes each kind beside
``results/<profile>/<table>.csv`` as ``<table>.<kind>.csv.gz`` (gzip CSV; Parquet would need
pyarrow, which is not a dependency). Read one back with :func:`read_records`.

``keypoints`` — one row per evaluated keypoint (mutually visible, PROTOCOL §1.2) of every pair
and every row of a keypoint table (Tables 1, 2, 3, 5, 8, the α sweep):

========== ============================================================================
dataset    "SPair-71k", "PF-Pascal" or "CUB-200"
setting    the table row's label, as in the CSV; with ``method`` and ``dataset`` it names the row
method     "SD", "DINO" or "Fuse"
category   the category (SPair-71k, PF-Pascal) or class (CUB-200)
pair       position of the pair in the evaluated list (a pair drawn twice appears twice)
pair_id    the dataset's name of the pair
kp         position of the keypoint among the pair's mutually visible keypoints
kp_id      the keypoint's id (SPair-71k ``kps_ids``; position in the annotation otherwise)
error      distance from prediction to ground truth, pixels of the DINO frame (14·G px)
threshold  the pair's PCK reference length in that frame (target bbox side for SPair-71k,
           image side for PF-Pascal and CUB-200)
pred_index matched target token, G·row + col
pred_x/y   predicted point (cell centre 14·p + 6.5) in the frame
gt_x/y     ground-truth target point in the frame
========== ============================================================================

A keypoint is correct at α when ``error < α · threshold``. The four aggregates of a row are
recomputed by :func:`sdfuse.protocol.metrics.aggregates` on its records (all rows at once:
:func:`sdfuse.protocol.metrics.table_aggregates`), per-category PCK by :func:`sdfuse.protocol.metrics.per_category`.

``tss_samples`` (Table 5) — one row per TSS sample (pair folder and direction), method, form and
α: subset, pair_dir, direction ("12" or "21"), method, form, alpha, value (the sample's PCK in %);
the per-subset means are means of ``value``.

``keypoints`` of the outcome analysis (written next to ``table6.csv``; Table 7 and Fig. 2 come from
the same records) — :func:`sdfuse.evaluation.outcomes.outcome_records`' columns: category, pair_id, pair, kp,
threshold, gt_index, pred_/error_<M> and rel_<M>_gt, rel_<M>_at_<N> for M, N in SD, DINO, Fuse.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

SUFFIX = ".csv.gz"
TEXT_COLUMNS = ("dataset", "setting", "method", "category", "pair_id", "subset", "pair_dir", "direction", "form")


class Records:
    """Named record frames attached to a results table; shared between the table and the frames
    derived from it (pandas deep-copies ``attrs`` on every operation, these are never copied)."""

    def __init__(self, **frames: pd.DataFrame) -> None:
        self.frames = frames

    def __deepcopy__(self, memo) -> "Records":
        return self


def attach(table: pd.DataFrame, **frames: pd.DataFrame) -> pd.DataFrame:
    """``table`` carrying ``frames`` (e.g. ``keypoints=records``) as its records; returns ``table``."""
    table.attrs["records"] = Records(**frames)
    return table


def attached(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The record frames a table carries ({} if none)."""
    holder = table.attrs.get("records")
    return dict(holder.frames) if isinstance(holder, Records) else {}


def records_path(csv_path: Path, kind: str) -> Path:
    """Where the ``kind`` records of ``results/<profile>/<table>.csv`` are written."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.{kind}{SUFFIX}")


def write_records(frame: pd.DataFrame, path: str | Path) -> None:
    """``frame`` as gzip CSV at ``path``; the bytes depend only on the data (no name or time in the header)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        zipped.write(frame.to_csv(index=False, lineterminator="\n").encode())


def read_records(path: str | Path) -> pd.DataFrame:
    """A records file written by :func:`sdfuse.book.pages.save_results` (gzip CSV); names stay strings."""
    return pd.read_csv(path, dtype={name: str for name in TEXT_COLUMNS})
