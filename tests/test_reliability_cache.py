"""Reliability of the feature cache under real interruptions: SIGKILL mid-run, and concurrent writers.

Subprocesses run ``sdfuse extract`` on the smoke profile (12 SPair-format images) into a cache
folder; the test kills them with SIGKILL while they write, checks that every entry on disk is
complete, reruns, and compares with an uninterrupted extraction made in-process.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdfuse.cli import main
from sdfuse.data.storage import TMP_PREFIX, TMP_SUFFIX

SDFUSE = str(Path(sys.executable).parent / "sdfuse")
IMAGES = 12
"""Unique images of the smoke SPair-71k fixture (3 categories × 4)."""
SD_KEYS = {"2", "5", "8"}

SLOW_WRITER = """
import sys, time
import sdfuse.features.cache as cache
real = cache.save_file
def slow(tensors, filename, metadata=None):
    real(tensors, filename, metadata=metadata)
    time.sleep(float(sys.argv[1]))   # the finished bytes wait under their temporary name
cache.save_file = slow
from sdfuse.cli import main
sys.exit(main(sys.argv[2:]))
"""
"""``sdfuse extract`` with a pause between writing an entry's temporary file and renaming it,
so that a kill reliably lands mid-write (the code under test is unchanged)."""


def _env(sdfuse_home: Path) -> dict:
    return {**os.environ, "SDFUSE_HOME": str(sdfuse_home), "HF_HUB_OFFLINE": "1"}


def _entries(cache: Path, kind: str = "*") -> list[Path]:
    return sorted(cache.glob(f"{kind}-*/??/*.safetensors"))


def _tmp_files(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"*/??/{TMP_PREFIX}*"))


def _all_load(cache: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every entry, loaded: a partial file would raise here."""
    loaded = {}
    for entry in _entries(cache):
        tensors = load_file(str(entry))
        if entry.parent.parent.name.startswith("sd-"):
            assert set(tensors) == SD_KEYS, entry
        loaded[str(entry.relative_to(cache))] = tensors
    return loaded


def _extracted(output: str) -> tuple[int, int]:
    found = re.search(r"extracted SD (\d+), DINOv2 (\d+)", output)
    assert found, output
    return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def reference_cache(smoke_root, tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """An uninterrupted extraction of the smoke images (in-process, same code path as the CLI)."""
    cache = tmp_path_factory.mktemp("reference_cache")
    assert main(["extract", "-p", f"cache_dir='{cache}'"]) == 0
    loaded = _all_load(cache)
    assert len(loaded) == 2 * IMAGES
    return loaded


def _kill_when(proc: subprocess.Popen, cache: Path, entries: int, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once ``entries`` SD entries exist and a write is in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"extract finished before the kill point: {proc.stderr.read()[-2000:]}")
        if len(_entries(cache, "sd")) >= entries and _tmp_files(cache):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no kill point with {entries} entries within {timeout} s")


def test_sigkilled_extract_leaves_only_complete_entries_and_resumes(smoke_root, sdfuse_home, tmp_path,
                                                                   reference_cache):
    cache = tmp_path / "cache"
    for kill_at in (1, 3, 6):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, "0.25", "extract", "-p", f"cache_dir='{cache}'"],
                                env=_env(sdfuse_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _kill_when(proc, cache, kill_at)
        assert proc.returncode == -signal.SIGKILL
        loaded = _all_load(cache)                                   # every entry on disk is complete
        assert kill_at <= len(loaded) < IMAGES
        strays = _tmp_files(cache)
        assert strays, "the kill should have caught a write in flight"
        assert all(p.name.endswith(TMP_SUFFIX) and not p.name.endswith(".safetensors") for p in strays)
        for name, tensors in loaded.items():                        # and equal to an uninterrupted run
            assert all(torch.equal(tensors[k], reference_cache[name][k]) for k in tensors), name

    done_sd, done_dino = len(_entries(cache, "sd")), len(_entries(cache, "dino"))
    rerun = subprocess.run([SDFUSE, "extract", "-p", f"cache_dir='{cache}'"], env=_env(sdfuse_home),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _extracted(rerun.stdout) == (IMAGES - done_sd, IMAGES - done_dino)   # only the missing work
    assert _tmp_files(cache) == []                                  # strays of the dead writers cleaned up
    final = _all_load(cache)
    assert final.keys() == reference_cache.keys()
    for name, tensors in final.items():
        assert all(torch.equal(tensors[k], reference_cache[name][k]) for k in tensors), name


WRITER = """
import sys, glob
from sdfuse.features.cache import CachedExtractor
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor
smoke, cache, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
images = sorted(glob.glob(smoke + "/SPair-71k/JPEGImages/*/*.jpg"))
cached = CachedExtractor(DinoFeatureExtractor(DinoConfig(model=smoke + "/models/dino", grid=12)), cache, "dino")
print("extracted", cached.prefill(images, progress=False))      # both writers race on the same misses
for _ in range(rounds):                                          # then keep replacing the same entries
    for image in images:
        cached._write(cached.entry_path(image), cached.get(image), image)
"""
"""One concurrent writer: fills a DINO cache, then rewrites every entry ``rounds`` times."""


def test_concurrent_writers_never_expose_a_partial_entry(smoke_root, tmp_path):
    from sdfuse.features.cache import CachedExtractor
    from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor

    cache = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(smoke_root), str(cache), "5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reads = 0
    while any(p.poll() is None for p in procs):                   # a third process reads while both write
        for entry in _entries(cache):
            tensors = load_file(str(entry))                         # complete or not there: never partial
            assert set(tensors) == {"11"} and tensors["11"].shape == (48, 12, 12), entry
            reads += 1
        time.sleep(0.005)
    outputs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(int(out.split()[-1]) for out, _ in outputs) >= IMAGES       # every image extracted at least once
    assert reads > 0
    assert _tmp_files(cache) == []                                  # every writer renamed or removed its own

    reference = CachedExtractor(DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12)),
                                tmp_path / "reference", "dino")
    images = sorted((smoke_root / "SPair-71k" / "JPEGImages").glob("*/*.jpg"))
    assert len(images) == IMAGES and len(_entries(cache)) == IMAGES
    for image in images:
        shared = load_file(str(CachedExtractor(reference.extractor, cache, "dino").entry_path(image)))
        assert torch.equal(shared["11"], reference.get(image)[11]), image


def test_stray_tmp_of_a_live_writer_is_kept_and_of_a_dead_one_removed(tmp_path):
    from sdfuse.data.storage import _host_tag, remove_stray_tmp

    shard = tmp_path / "sd-0123" / "ab"
    shard.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_tmp = shard / f"{TMP_PREFIX}{int(dead.stdout)}-{_host_tag()}-x1{TMP_SUFFIX}"
    live_tmp = shard / f"{TMP_PREFIX}{os.getpid()}-{_host_tag()}-x2{TMP_SUFFIX}"
    other_host = shard / f"{TMP_PREFIX}1-00000000-x3{TMP_SUFFIX}"
    stale = shard / f"{TMP_PREFIX}1-00000000-x4{TMP_SUFFIX}"
    for path in (dead_tmp, live_tmp, other_host, stale):
        path.write_bytes(b"half")
    os.utime(stale, (time.time() - 2 * 24 * 3600,) * 2)
    assert remove_stray_tmp(tmp_path / "sd-0123") == 2
    assert sorted(p.name for p in shard.iterdir()) == sorted([live_tmp.name, other_host.name])
