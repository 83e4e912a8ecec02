"""Feature-cache bytes per image at G = 60, from the tensor shapes and from a written entry.

An SD entry holds paper layers 2, 5, 8 (1280×15×15, 1280×30×30, 640×60×60); a DINOv2 entry the
tokens of the cached blocks (the paper profile caches blocks 9 and 11, 768×60×60 each). The cache
stores float32 (what the extractors return); float16 is what halving the storage would give.
Each entry is written once with :func:`sdfuse.features.cache.atomic_save` and its file size read
back (safetensors adds a small JSON header).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sdfuse.features.cache import atomic_save

SD_SHAPES = {2: (1280, 15, 15), 5: (1280, 30, 30), 8: (640, 60, 60)}
DINO_SHAPES = {9: (768, 60, 60), 11: (768, 60, 60)}
MB = 1e6


def run() -> dict:
    out = {"unit_note": "bytes, and MB = 10^6 bytes"}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, shapes in (("sd", SD_SHAPES), ("dino_blocks_9_11", DINO_SHAPES), ("dino_block_11", {11: DINO_SHAPES[11]})):
            elements = sum(torch.Size(s).numel() for s in shapes.values())
            row = {"shapes": {str(k): list(v) for k, v in shapes.items()}, "elements": elements}
            for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
                tensors = {str(k): torch.zeros(v, dtype=dtype) for k, v in shapes.items()}
                path = Path(tmp) / f"{kind}-{name}.safetensors"
                atomic_save(tensors, path, metadata={"kind": kind, "source": "benchmark"})
                row[f"{name}_bytes_from_shapes"] = elements * torch.tensor([], dtype=dtype).element_size()
                row[f"{name}_bytes_written"] = path.stat().st_size
                row[f"{name}_mb_written"] = round(path.stat().st_size / MB, 3)
            out[kind] = row
    for name in ("fp32", "fp16"):
        total = out["sd"][f"{name}_bytes_written"] + out["dino_blocks_9_11"][f"{name}_bytes_written"]
        out[f"per_image_{name}_mb"] = round(total / MB, 3)
        out[f"per_image_{name}_bytes"] = total
    out["note"] = ("per image = SD layers 2/5/8 + DINOv2 blocks 9 and 11 (the paper profile's default; block 9 "
                   "is only needed for Table 5's Ensemble-ViT row). The cache currently stores float32.")
    return out
