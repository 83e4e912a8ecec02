"""``sdfuse extract`` sharded over ranks (torchrun's environment, gloo on the CPU) into one shared cache."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdfuse.errors import ConfigError
from sdfuse.features.shard import rank_and_world, shard_images

RANK_LINE = re.compile(r"rank (\d+)/(\d+): (\d+) of (\d+) images: extracted SD (\d+), DINOv2 (\d+);")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_slices_are_disjoint_cover_the_list_and_ignore_input_order():
    images = [Path(f"/data/img{i:02d}.jpg") for i in range(11)]
    for world in (1, 2, 3, 4):
        slices = [shard_images(images, rank, world) for rank in range(world)]
        flat = [image for part in slices for image in part]
        assert sorted(flat) == images and len(flat) == len(set(flat))
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert shard_images(list(reversed(images)) + images[:3], 1, 3) == images[1::3]
    with pytest.raises(ConfigError):
        shard_images(images, 2, 2)


def test_rank_and_world_come_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_and_world() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert rank_and_world() == (2, 3)
    assert shard_images(["a", "b", "c", "d", "e"]) == ["c"]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ConfigError):
        rank_and_world()


def _entries(cache: Path, kind: str) -> list[Path]:
    return sorted(cache.glob(f"{kind}-*/*/*.safetensors"))


def _extract(cache: Path, rank: int | None, port: int) -> subprocess.Popen:
    """``sdfuse extract`` on the smoke profile in a fresh process; with a rank, under torchrun's variables.
    Every process gets one intra-op thread, so all of them compute in the same order."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    if rank is not None:
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SDFUSE_SHARD_TIMEOUT_S="120")
    return subprocess.Popen([sys.executable, "-m", "sdfuse.cli", "extract", "--profile", "smoke",
                             "-p", f"cache_dir={cache}"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_gloo_ranks_fill_one_shared_cache_like_a_single_process(smoke_root, tmp_path):
    from sdfuse.profiles.runs import resolve

    shared, single = tmp_path / "shared", tmp_path / "single"
    port = _free_port()
    procs = [_extract(shared, 0, port), _extract(shared, 1, port), _extract(single, None, port)]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, out + err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    run = resolve("smoke", cache_dir=single, progress=False)
    pairs = run.spair_pairs()
    images = sorted({p.src_image for p in pairs} | {p.trg_image for p in pairs})
    slices = [shard_images(images, rank, 2) for rank in range(2)]
    assert not set(slices[0]) & set(slices[1]) and sorted(slices[0] + slices[1]) == images

    reported = {}
    for out in outputs[:2]:
        match = RANK_LINE.search(out)
        assert match, out
        rank, world, mine, total, sd_done, dino_done = map(int, match.groups())
        assert (world, total) == (2, len(images))
        assert mine == len(slices[rank]) == sd_done == dino_done     # a fresh cache: every image of the slice ran
        reported[rank] = sd_done
    assert sorted(reported) == [0, 1]
    assert sum(reported.values()) == len(images)                     # one forward pass per unique image
    assert f"{len(images)} images: extracted SD {len(images)}, DINOv2 {len(images)};" in outputs[2]
    assert not RANK_LINE.search(outputs[2])

    for kind in ("sd", "dino"):
        assert len(_entries(shared, kind)) == len(_entries(single, kind)) == len(images)   # one entry per image
    assert not list(shared.rglob(".tmp-*"))
    for extractor in (run.sd_features, run.dino_features):
        for image in images:
            mine = extractor.entry_path(image)
            theirs = shared / mine.relative_to(single)
            a, b = load_file(str(mine)), load_file(str(theirs))
            assert sorted(a) == sorted(b) and a
            assert all(torch.equal(a[key], b[key]) for key in a)
