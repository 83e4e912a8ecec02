"""Cache entries are verified on read: a damaged, swapped, foreign or non-finite entry is logged and
recomputed, never used, never a raw error (sdfuse.features.cache module docstring).

Every case damages a real entry on disk, then reads it through a fresh ``CachedExtractor`` and
compares with features computed straight from the extractor (no cache involved).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass

import pytest
import torch
import xxhash
from safetensors import safe_open
from safetensors.torch import save_file

from sdfuse.data.images import open_rgb
from sdfuse.errors import FeatureError
from sdfuse.features.cache import CachedExtractor
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor
from tests.fixture_scope import per_module


@pytest.fixture(scope=per_module)
def images(smoke_root):
    folder = smoke_root / "SPair-71k" / "JPEGImages" / "present"
    return folder / "present_00.jpg", folder / "present_01.jpg"


@pytest.fixture(scope=per_module)
def extractor(smoke_root):
    return DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12))


@pytest.fixture(scope=per_module)
def expected(extractor, images):
    """Block-11 tokens of each image straight from the extractor."""
    return [extractor.extract(open_rgb(path))[11] for path in images]


def _entry(path):
    with safe_open(str(path), framework="pt") as entry:
        return {key: entry.get_tensor(key) for key in entry.keys()}, entry.metadata()


def _record(tensors):
    """The tensor record as the test computes it: numpy bytes, not the library's helper."""
    return json.dumps({key: {"shape": list(t.shape), "dtype": str(t.dtype).split(".")[1],
                             "xxh3_128": xxhash.xxh3_128_hexdigest(t.numpy().tobytes())}
                       for key, t in tensors.items()}, sort_keys=True)


def _flip_a_bit(entry, other):
    data = bytearray(entry.read_bytes())
    data[-7] ^= 0x10                                          # inside the last tensor's bytes
    entry.write_bytes(bytes(data))


def _truncate(entry, other):
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _swap(entry, other):
    shutil.copyfile(other["entry"], entry)                    # another image's entry renamed into place


def _other_setting(entry, other):
    shutil.copyfile(other["edge_entry"], entry)               # the same image, extracted with edge padding


def _rewrite(change_tensor=None, change_metadata=None, valid_record=True):
    def damage(entry, other):
        tensors, metadata = _entry(entry)
        if change_tensor:
            tensors["11"] = change_tensor(tensors["11"])
            if valid_record:                                  # as a buggy writer would have recorded it
                metadata["tensors"] = _record(tensors)
        if change_metadata:
            change_metadata(metadata)
        save_file(tensors, str(entry), metadata=metadata)
    return damage


def _nan(t):
    t = t.clone()
    t[3, 4, 5] = float("nan")
    return t


def _inf(t):
    t = t.clone()
    t[0, 0, 0] = float("-inf")
    return t


CASES = {
    "bit flip in tensor data": (_flip_a_bit, "tensor 11: its digest differs from the recorded one"),
    "truncated file": (_truncate, "unreadable cache entry"),
    "another image's entry swapped in": (_swap, "belongs to another image"),
    "an entry of another setting": (_other_setting, "another extractor setting"),
    "NaN with a matching record": (_rewrite(_nan), "NaN or infinite values in tensor(s) ['11']"),
    "inf with a matching record": (_rewrite(_inf), "NaN or infinite values in tensor(s) ['11']"),
    "NaN, record not updated": (_rewrite(_nan, valid_record=False), "its digest differs"),
    "shape differs from the record": (_rewrite(lambda t: t.reshape(t.shape[0], -1).contiguous(), valid_record=False),
                                      "shape [48, 144], dtype float32 differ from the recorded [48, 12, 12], float32"),
    "dtype differs from the record": (_rewrite(lambda t: t.half(), valid_record=False),
                                      "shape [48, 12, 12], dtype float16 differ from the recorded [48, 12, 12], float32"),
    "consistent record of another shape": (_rewrite(lambda t: t[:, :6].contiguous()), None),
    "an extra tensor": (_rewrite(change_metadata=lambda m: m.update(tensors=json.dumps(
        {**json.loads(m["tensors"]), "9": json.loads(m["tensors"])["11"]}))), "its record lists ['11', '9']"),
    "garbage record": (_rewrite(change_metadata=lambda m: m.update(tensors="{not json")), "no readable tensor record"),
    "format 1 entry (no metadata)": (_rewrite(change_metadata=lambda m: m.clear()), "has format None"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_damaged_entry_is_logged_and_recomputed(case, smoke_root, extractor, images, expected, tmp_path, caplog):
    damage, message = CASES[case]
    cache = CachedExtractor(extractor, tmp_path, "dino")
    for image in images:
        cache.get(image)
    edge = CachedExtractor(DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12,
                                                           edge_pad=True)), tmp_path, "dino")
    edge.get(images[0])
    entry = cache.entry_path(images[0])
    damage(entry, {"entry": cache.entry_path(images[1]), "edge_entry": edge.entry_path(images[0])})

    fresh = CachedExtractor(extractor, tmp_path, "dino")
    with caplog.at_level(logging.WARNING, logger="sdfuse.features.cache"):
        features = fresh.get(images[0])
    assert torch.equal(features[11], expected[0]) and set(features) == {11}
    assert fresh.forward_passes == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "recomputing it" in warnings[0]
    if message is None:                                       # the shape against the setting's other entries
        assert "shape [48, 6, 12], dtype float32 differ from the setting's" in warnings[0]
        assert "setting.json) [48, 12, 12], float32" in warnings[0]
    else:
        assert message in warnings[0], warnings
    again = CachedExtractor(extractor, tmp_path, "dino")      # the rewritten entry verifies
    caplog.clear()
    assert torch.equal(again.get(images[0])[11], expected[0]) and again.forward_passes == 0 and not caplog.records


def test_a_sound_entry_is_read_without_warning_and_records_what_it_holds(extractor, images, expected, tmp_path,
                                                                         caplog):
    cache = CachedExtractor(extractor, tmp_path, "dino")
    cache.get(images[0])
    tensors, metadata = _entry(cache.entry_path(images[0]))
    assert metadata["format"] == "sdfuse-cache/2" and metadata["kind"] == "dino"
    assert metadata["image_sha256"] == __import__("hashlib").sha256(images[0].read_bytes()).hexdigest()
    assert json.loads(metadata["tensors"]) == json.loads(_record(tensors))
    assert len(metadata["setting"]) == 64 and cache.folder.name == f"dino-{metadata['setting'][:16]}"
    with caplog.at_level(logging.WARNING):
        again = CachedExtractor(extractor, tmp_path, "dino").get(images[0])
    assert torch.equal(again[11], expected[0]) and not caplog.records


@dataclass(frozen=True)
class _Config:
    def fingerprint(self) -> dict:
        return {"model": "test-nan-extractor"}


class _NanExtractor:
    """An extractor whose output overflowed: one NaN."""

    config = _Config()

    def extract(self, image):
        out = torch.zeros(4, 2, 2)
        out[1, 1, 1] = float("nan")
        return {11: out}


def test_non_finite_features_from_the_backbone_are_an_error_and_never_cached(images, tmp_path):
    cache = CachedExtractor(_NanExtractor(), tmp_path, "dino")
    with pytest.raises(FeatureError, match=r"hold NaN or infinite values \(layer\(s\) \[11\]\).*dtype=float32"):
        cache.get(images[0])
    assert not cache.entry_path(images[0]).exists()
