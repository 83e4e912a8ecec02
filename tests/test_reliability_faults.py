"""Resource faults: out of memory during SD extraction falls back to smaller chunks; a full disk while
writing the cache leaves nothing partial and says where."""
from __future__ import annotations

import errno
import logging

import pytest
import torch

import sdfuse.features.cache as cache_module
from sdfuse.cli import main
from sdfuse.data.images import open_rgb
from sdfuse.errors import ResourceError, StorageError
from sdfuse.features.cache import CachedExtractor
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor
from sdfuse.features.sd import SDConfig, SDFeatureExtractor, load_sd_models


@pytest.fixture(scope="module")
def smoke_sd(smoke_root):
    config = SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128)
    return config, load_sd_models(config)


@pytest.fixture
def image(smoke_root):
    return open_rgb(smoke_root / "SPair-71k" / "JPEGImages" / "portrait" / "portrait_00.jpg")


def _record_batches(models, monkeypatch, fail):
    """Wrap the UNet forward: record each batch size and raise OOM when ``fail(batch, call)`` says so
    (``call`` counts the forwards so far, this one included)."""
    real = models.unet.forward
    batches = []

    def forward(sample, *args, **kwargs):
        batches.append(sample.shape[0])
        if fail(sample.shape[0], len(batches)):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(models.unet, "forward", forward)
    return batches


def test_out_of_memory_halves_the_crop_batch_and_keeps_the_features(smoke_sd, image, monkeypatch, caplog):
    config, models = smoke_sd
    expected = SDFeatureExtractor(config, models).extract(image)
    extractor = SDFeatureExtractor(config, models)
    batches = _record_batches(models, monkeypatch, lambda batch, call: batch > 1 and not batches[:-1])
    with caplog.at_level(logging.WARNING, logger="sdfuse.features.sd"):
        features = extractor.extract(image)
    assert batches == [4, 2, 2]                                    # 4 crops failed (first call), then 2 + 2
    assert "out of memory running 4 SD crops at once" in caplog.text and "retrying with 2" in caplog.text
    assert features.keys() == expected.keys()
    for layer in expected:
        assert features[layer].shape == expected[layer].shape
        torch.testing.assert_close(features[layer], expected[layer], rtol=1e-4, atol=1e-5)
    extractor.extract(image)                                       # the smaller chunk is kept for later images
    assert batches == [4, 2, 2, 2, 2]


def test_out_of_memory_for_one_crop_on_the_cpu_is_a_clear_error(smoke_sd, image, monkeypatch):
    config, models = smoke_sd
    batches = _record_batches(models, monkeypatch, lambda batch, call: True)
    with pytest.raises(ResourceError, match="out of memory running the SD UNet on one 128-px crop on the CPU"):
        SDFeatureExtractor(config, models).extract(image)
    assert batches == [4, 2, 1]


def _half_then_disk_full(tensors, filename, metadata=None):
    with open(filename, "wb") as handle:
        handle.write(b"\x00" * 64)                                 # some bytes landed, then the disk filled up
    raise OSError(errno.ENOSPC, "No space left on device")


def _half_then_safetensors_disk_full(tensors, filename, metadata=None):
    """What safetensors really raises on a full file system (seen on a 512 KiB tmpfs)."""
    from safetensors import SafetensorError

    with open(filename, "wb") as handle:
        handle.write(b"\x00" * 64)
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("fault", [_half_then_disk_full, _half_then_safetensors_disk_full])
def test_disk_full_while_writing_an_entry_leaves_nothing_partial(smoke_root, tmp_path, monkeypatch, fault):
    image = smoke_root / "SPair-71k" / "JPEGImages" / "present" / "present_00.jpg"
    cached = CachedExtractor(DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12)),
                             tmp_path, "dino")
    monkeypatch.setattr(cache_module, "save_file", fault)
    entry = cached.entry_path(image)
    with pytest.raises(StorageError) as raised:
        cached.get(image)
    message = str(raised.value)
    assert message.startswith(f"the disk is full: could not write the feature-cache entry {entry}")
    assert f"on the file system of {entry.parent}" in message and "-p cache_dir=" in message
    assert sorted(p.name for p in entry.parent.iterdir()) == []       # no entry, no temporary file
    monkeypatch.undo()
    assert cached.get(image)[11].shape == (48, 12, 12)              # space back: the same call works


def test_cli_reports_a_full_disk_and_exits_2(smoke_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cache_module, "save_file", _half_then_disk_full)
    assert main(["extract", "-p", f"cache_dir='{tmp_path}'"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: the disk is full: could not write the feature-cache entry " in err
    assert str(tmp_path) in err
    assert list(tmp_path.glob("*/??/*")) == []                      # nothing partial anywhere in the cache


def test_ctrl_c_exits_130_and_says_how_to_resume(monkeypatch, capsys):
    import sdfuse.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_extract", interrupted)
    assert cli.main(["extract"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: finished feature-cache entries, results files and pages are complete")
    assert "run the same command again to resume" in err
