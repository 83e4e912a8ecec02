"""The per-image feature cache: keyed by content and setting, atomic, resumable (DESIGN "Feature cache")."""
import os

import pytest
import torch
from safetensors.torch import load_file

import sdfuse.features.cache as cache_module
from sdfuse.features.cache import CachedExtractor
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor


@pytest.fixture
def image_path(smoke_root):
    return smoke_root / "SPair-71k" / "JPEGImages" / "present" / "present_00.jpg"


def _cached(smoke_root, root, **config):
    config = {"model": str(smoke_root / "models" / "dino"), "grid": 12, **config}
    return CachedExtractor(DinoFeatureExtractor(DinoConfig(**config)), root, "dino")


def test_second_run_does_no_forward_pass_and_loads_no_model(smoke_root, image_path, tmp_path):
    first = _cached(smoke_root, tmp_path)
    features = first.get(image_path)
    assert first.forward_passes == 1
    assert first.get(image_path) is features and first.forward_passes == 1      # memory hit
    second = _cached(smoke_root, tmp_path)
    again = second.get(image_path)
    assert second.forward_passes == 0 and second.extractor._model is None
    assert torch.equal(again[11], features[11])
    assert second.prefill([image_path, image_path]) == 0


def test_changed_setting_misses(smoke_root, image_path, tmp_path):
    base = _cached(smoke_root, tmp_path)
    base.get(image_path)
    other = _cached(smoke_root, tmp_path, blocks=(9,))
    assert other.folder != base.folder
    assert set(other.get(image_path)) == {9} and other.forward_passes == 1
    edge = _cached(smoke_root, tmp_path, edge_pad=True)
    assert edge.folder not in (base.folder, other.folder)


def test_entry_is_keyed_by_image_content(smoke_root, image_path, tmp_path):
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(image_path.read_bytes())
    cached = _cached(smoke_root, tmp_path / "cache")
    assert cached.entry_path(copy) == cached.entry_path(image_path)
    cached.get(image_path)
    cached.get(copy)
    assert cached.forward_passes == 1
    stored = load_file(str(cached.entry_path(image_path)))
    assert set(stored) == {"11"} and tuple(stored["11"].shape) == (48, 12, 12)


def test_interrupted_write_leaves_no_readable_partial_file(smoke_root, image_path, tmp_path, monkeypatch):
    cached = _cached(smoke_root, tmp_path)

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 100)          # half a file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        cached.get(image_path)
    entry = cached.entry_path(image_path)
    assert not entry.exists()
    assert [p.name for p in entry.parent.iterdir()] == []
    monkeypatch.undo()
    resumed = _cached(smoke_root, tmp_path)
    assert resumed.get(image_path)[11].shape == (48, 12, 12) and resumed.forward_passes == 1


def test_corrupt_entry_is_recomputed(smoke_root, image_path, tmp_path):
    cached = _cached(smoke_root, tmp_path)
    good = cached.get(image_path)[11]
    entry = cached.entry_path(image_path)
    entry.write_bytes(entry.read_bytes()[:50])
    fresh = _cached(smoke_root, tmp_path)
    assert torch.equal(fresh.get(image_path)[11], good) and fresh.forward_passes == 1
    assert load_file(str(entry))["11"].shape == (48, 12, 12)
    assert os.path.getsize(entry) > 50
