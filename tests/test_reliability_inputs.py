"""Bad inputs: each is rejected with a message naming the file and what to do (or converted, for image
modes), the CLI exits non-zero, and nothing partial is written; bad parameters fail before any model loads."""
from __future__ import annotations

import io
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdfuse.cli import main
from sdfuse.data.datasets.cub import load_cub
from sdfuse.data.datasets.pfpascal import load_pfpascal
from sdfuse.data.datasets.spair import load_spair, read_pair
from sdfuse.data.datasets.tss import load_tss, read_sample
from sdfuse.data.images import MIN_SIDE, image_size, open_rgb
from sdfuse.errors import ConfigError, DatasetError


# --- image files: converted, not rejected ---------------------------------------------------------------

def _png_rgb48(path: Path, pixels: np.ndarray) -> Path:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_grayscale_palette_and_cmyk_are_converted_as_pillow_does(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(gray)
    out = np.asarray(open_rgb(gray))
    assert out.shape == (6, 8, 3) and (out[..., 0] == np.arange(48).reshape(6, 8)).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 6), (10, 200, 30, 40)).save(cmyk, quality=100)
    with Image.open(cmyk) as raw:
        assert raw.mode == "CMYK"
        expected = np.asarray(raw.convert("RGB"))
    assert open_rgb(cmyk).mode == "RGB" and (np.asarray(open_rgb(cmyk)) == expected).all()
    palette = tmp_path / "palette.gif"
    Image.new("P", (5, 4), 3).save(palette)
    assert open_rgb(palette).size == (5, 4) and open_rgb(palette).mode == "RGB"


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, 0, 3] = 255                                            # one opaque pixel, the rest transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(open_rgb(tmp_path / "rgba.png"))
    assert (out == (10, 20, 30)).all()                             # transparent pixels keep their stored colour
    Image.fromarray(np.dstack([np.full((3, 3), 77, np.uint8), np.zeros((3, 3), np.uint8)]), mode="LA").save(
        tmp_path / "la.png")
    assert (np.asarray(open_rgb(tmp_path / "la.png")) == 77).all()
    transparent = Image.new("P", (3, 3), 1)
    transparent.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    transparent.info["transparency"] = 1
    transparent.save(tmp_path / "trns.png")
    assert (np.asarray(open_rgb(tmp_path / "trns.png")) == (200, 100, 50)).all()


def test_16_bit_images_are_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(2, axis=0)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as raw:
        assert raw.mode.startswith("I")
    out = np.asarray(open_rgb(tmp_path / "gray16.png"))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]              # round(v·255/65535), not clipped to white
    rgb16 = np.zeros((2, 3, 3), dtype=np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 32896, 0
    colour = np.asarray(open_rgb(_png_rgb48(tmp_path / "rgb48.png", rgb16)))
    assert colour.shape == (2, 3, 3) and colour[0, 0].tolist() == [255, 128, 0]


def test_exif_orientation_is_not_applied(tmp_path, smoke_root):
    """Annotations refer to the stored pixel grid, as in the reference (Image.open ignores EXIF)."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:10, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6                                               # "rotate 90° clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    with Image.open(tmp_path / "rotated.jpg") as raw:
        assert raw.getexif()[0x0112] == 6
    stored = open_rgb(tmp_path / "rotated.jpg")
    assert stored.size == (40, 20)                                 # W × H as stored, not 20 × 40
    assert np.asarray(stored)[2, 2, 0] > 200                       # red stays at the stored top-left
    assert (np.asarray(stored) == np.asarray(open_rgb(tmp_path / "plain.jpg"))).all()


# --- image files: rejected with the file's name -------------------------------------------------------

def _tiny_png_header(path: Path, width: int, height: int) -> Path:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                     + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(_jpeg()[: len(_jpeg()) // 2]), "truncated, damaged or not an image"),
    (lambda p: p.write_text("this is not a picture"), "truncated, damaged or not an image"),
    (lambda p: p.write_bytes(b""), "truncated, damaged or not an image"),
    (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "is 1×1 pixels: images need at least 2"),
    (lambda p: Image.new("RGB", (1, 30)).save(p, format="PNG"), "is 1×30 pixels"),
    (lambda p: _tiny_png_header(p, 0, 5), "image.jpg"),
])
def test_bad_image_files_are_rejected_naming_the_file(tmp_path, make, message):
    path = tmp_path / "image.jpg"
    make(path)
    with pytest.raises(DatasetError, match=message) as raised:
        open_rgb(path, hint="sdfuse data verify spair71k")
    assert str(path) in str(raised.value) and "sdfuse data verify spair71k" in str(raised.value)
    if "pixels" in message:                                        # the header alone tells the size
        with pytest.raises(DatasetError, match=message):
            image_size(path)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_too_elongated_image_is_rejected_by_the_extractor(smoke_root, tmp_path):
    from sdfuse.features.cache import CachedExtractor
    from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor

    Image.new("RGB", (5000, MIN_SIDE), (9, 9, 9)).save(tmp_path / "line.png")
    cached = CachedExtractor(DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12)),
                             tmp_path / "cache", "dino")
    with pytest.raises(DatasetError, match=r"line.png: a 5000×2 image becomes 168×0 px in the 168-px frame"):
        cached.get(tmp_path / "line.png")
    assert list((tmp_path / "cache").rglob("*.safetensors")) == [] and cached.extractor._model is None


def _spair_copy(smoke_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "SPair-71k"
    shutil.copytree(smoke_root / "SPair-71k", root)
    return root


def test_cli_truncated_dataset_image_names_it_and_writes_no_entry_for_it(smoke_root, tmp_path, capsys):
    root = _spair_copy(smoke_root, tmp_path)
    victim = root / "JPEGImages" / "terrain" / "terrain_02.jpg"
    victim.write_bytes(victim.read_bytes()[:700])
    cache = tmp_path / "cache"
    assert main(["extract", "-p", f"data_root='{root}'", "-p", f"cache_dir='{cache}'"]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot read image {victim}" in err and "truncated, damaged or not an image" in err
    entries = list(cache.rglob("*.safetensors"))
    assert len(entries) == 10                                      # the SD entries of the 10 images sorted before it
    assert all(load_file_ok(e) for e in entries) and not list(cache.rglob(".tmp-*"))
    from sdfuse.features.cache import file_digest

    assert file_digest(victim) not in {e.stem for e in entries}    # nothing was stored for the bad image


def load_file_ok(path: Path) -> bool:
    from safetensors.torch import load_file

    return bool(load_file(str(path)))


# --- datasets: missing, wrong root, incomplete ---------------------------------------------------------

@pytest.mark.parametrize("load, name, folder", [
    (lambda root: load_spair(root), "spair71k", "SPair-71k"),
    (lambda root: load_pfpascal(root), "pfpascal", "PF-dataset-PASCAL"),
    (lambda root: load_tss(root), "tss", "TSS_CVPR2016"),
    (lambda root: load_cub(root, cache_dir=root / "cache"), "cub200", "CUB_200_2011"),
])
def test_every_loader_names_the_manifest_and_the_fetch_command(tmp_path, load, name, folder):
    root = tmp_path / folder
    with pytest.raises(DatasetError) as raised:
        load(root)
    message = str(raised.value)
    assert f"data_manifests/{name}.yaml" in message
    assert f"sdfuse data fetch {name} --root {tmp_path}" in message
    assert str(root) in message


def test_wrong_root_says_which_folder_was_meant(smoke_root, capsys):
    assert main(["extract", "-p", f"data_root='{smoke_root}'", "-p", "cache_dir='/nonexistent/never-created'"]) == 2
    err = capsys.readouterr().err
    assert f"SPair-71k not found at {smoke_root}" in err and "data_manifests/spair71k.yaml" in err
    assert f"{smoke_root / 'SPair-71k'} exists: did you pass the data root instead of the dataset folder?" in err
    assert not Path("/nonexistent/never-created").exists()


def test_missing_image_of_a_pair_is_named_with_the_pair_file(smoke_root, tmp_path):
    root = _spair_copy(smoke_root, tmp_path)
    (root / "JPEGImages" / "present" / "present_03.jpg").unlink()
    with pytest.raises(DatasetError) as raised:
        load_spair(root, pairs_per_category=0)
    message = str(raised.value)
    assert "present_03.jpg, which does not exist" in message and ":present.json refers to" in message
    assert f"sdfuse data verify spair71k --root {tmp_path}" in message


def test_category_without_pairs_is_reported(smoke_root, tmp_path):
    root = _spair_copy(smoke_root, tmp_path)
    (root / "ImageAnnotation" / "zebra").mkdir()
    with pytest.raises(DatasetError, match=r"no test pairs for category 'zebra'.*PCK is undefined"):
        load_spair(root)
    with pytest.raises(DatasetError, match=r"unknown SPair-71k categories \['cow'\]"):
        load_spair(root, categories=["cow"])


def test_tss_damaged_image_and_unknown_flow_at_valid_pixels(smoke_root, tmp_path):
    from sdfuse.data.datasets.flo import read_flo, write_flo

    root = tmp_path / "TSS_CVPR2016"
    shutil.copytree(smoke_root / "TSS_CVPR2016", root)
    sample = load_tss(root)[0]
    flow = read_flo(sample.flow)
    mask = read_sample(sample).mask[: flow.shape[0], : flow.shape[1]]
    invalid, valid = np.argwhere(~mask)[0], np.argwhere(mask)[0]
    flow[tuple(invalid)] = np.nan                                  # unknown where the mask says invalid: fine
    write_flo(sample.flow, flow)
    data = read_sample(sample)
    assert np.isfinite(data.flow).all() and data.flow[tuple(invalid)].tolist() == [0.0, 0.0]
    flow[tuple(valid)] = 2e9                                       # unknown where the mask says valid: an error
    write_flo(sample.flow, flow)
    with pytest.raises(DatasetError, match=rf"{re.escape(sample.flow.name)}: unknown .* flow at 1 pixel\(s\) that"):
        read_sample(sample)
    sample.trg_image.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DatasetError, match=rf"cannot read image {re.escape(str(sample.trg_image))}.*"
                                           rf"sdfuse data verify tss"):
        read_sample(sample)


# --- SPair pair JSON: values are checked ----------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda d: d["src_kps"][0].__setitem__(0, float("nan")), r"src_kps\[0\] x is nan, not a finite number"),
    (lambda d: d["trg_kps"][1].__setitem__(1, 10_000), r"trg_kps\[1\] = \[.*\] lies outside the"),
    (lambda d: d["src_kps"][0].__setitem__(0, -4), r"src_kps\[0\] = \[-4.0, .*\] lies outside"),
    (lambda d: d["src_kps"].__setitem__(0, [1, 2, 1]), r"src_kps\[0\] is \[1, 2, 1\], not a list of 2"),
    (lambda d: d["src_kps"].pop(), "source, .* target keypoints and .* ids"),
    (lambda d: d.__setitem__("kps_ids", []), "one or more distinct integers"),
    (lambda d: d["kps_ids"].__setitem__(1, d["kps_ids"][0]), "one or more distinct integers"),
    (lambda d: d.__setitem__("trg_bndbox", [5, 5, 5, 5]), r"trg_bndbox: box \[5.0, 5.0, 5.0, 5.0\] is degenerate"),
    (lambda d: d.__setitem__("trg_imsize", [0, 10, 3]), "not a plausible image size"),
    (lambda d: d.__setitem__("src_imname", "../../etc/passwd"), "not a plain file name"),
    (lambda d: d.__setitem__("category", "portrait"), "differs from the file name's 'terrain'"),
    (lambda d: d.__setitem__("mirror", 1), "mirrored pairs are not part of the protocol"),
    (lambda d: d.pop("trg_kps"), r"lacks the key\(s\) \['trg_kps'\]"),
])
def test_invalid_pair_json_values_are_rejected_naming_file_and_field(smoke_root, tmp_path, edit, message):
    source = sorted((smoke_root / "SPair-71k" / "PairAnnotation" / "test").glob("*:terrain.json"))[0]
    data = json.loads(source.read_text())
    edit(data)
    path = tmp_path / source.name
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message) as raised:
        read_pair(path, smoke_root / "SPair-71k")
    assert str(raised.value).startswith(f"{path}: malformed SPair-71k pair annotation")
    assert "sdfuse data verify spair71k" in str(raised.value)


def test_cli_bad_pair_json_exits_2_before_any_cache_write(smoke_root, tmp_path, capsys):
    root = _spair_copy(smoke_root, tmp_path)
    bad = sorted((root / "PairAnnotation" / "test").glob("*:portrait.json"))[2]
    data = json.loads(bad.read_text())
    data["trg_kps"][0] = [float("nan"), 3]
    bad.write_text(json.dumps(data))
    cache = tmp_path / "cache"
    assert main(["extract", "-p", f"data_root='{root}'", "-p", f"cache_dir='{cache}'"]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: malformed SPair-71k pair annotation: trg_kps[0] x is nan" in err
    assert not cache.exists()


# --- parameters: rejected before any model loads ---------------------------------------------------------

@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if any backbone loader is reached."""
    import sdfuse.features.dino as dino
    import sdfuse.features.sd as sd

    calls = []

    def forbidden(name):
        def load(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was loaded")
        return load

    monkeypatch.setattr(sd, "load_sd_models", forbidden("sd"))
    monkeypatch.setattr(dino, "load_dino_model", forbidden("dino"))
    return calls


@pytest.mark.parametrize("params, message", [
    (["grid=0"], "grid must be >= 4, got 0"),
    (["grid=-8"], "grid must be >= 4, got -8"),
    (["dino_blocks=(12,)"], "DINOv2 block 12 requested but .* has 12 blocks"),
    (["dino_blocks=(-1,)"], "each of dino_blocks must be >= 0, got -1"),
    (["dtype='float8'"], "dtype must be one of"),
    (["device='tpu'"], "device must be cpu, cuda, cuda:N, mps or auto, got 'tpu'"),
    (["device='cuda:99'"], r"device='cuda:99' but torch sees \d+ CUDA GPU"),
    (["sd_conditioning='weird'"], r"sd_conditioning must be one of \['empty', 'implicit'\], got 'weird'"),
    (["sd_conditioning='implicit'"], "needs captioner_checkpoint"),
    (["pairs_per_category=-1"], "pairs_per_category must be >= 0"),
])
def test_invalid_parameters_fail_before_any_model_loads(no_model_loads, tmp_path, params, message, capsys):
    argv = ["extract", "-p", f"cache_dir='{tmp_path}'"] + [arg for p in params for arg in ("-p", p)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and re.search(message, err), err
    assert no_model_loads == []
    assert list(tmp_path.rglob("*.safetensors")) == []


def test_unknown_profile_layer_and_alpha_fail_before_any_model_loads(no_model_loads, tmp_path):
    from sdfuse import tables
    from sdfuse.evaluation.pair_features import Method
    from sdfuse.features.sd import SDConfig
    from sdfuse.profiles.runs import resolve

    with pytest.raises(ConfigError, match=r"profile must be one of \['smoke', 'rehearsal', 'paper'\], got 'huge'"):
        resolve("huge")
    with pytest.raises(ConfigError, match=r"unknown SD layers \[3\]"):
        SDConfig(layers=(2, 3))
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got 1.5"):
        Method("Fuse", alpha=1.5)
    run = resolve("smoke", cache_dir=tmp_path, results_dir=tmp_path / "results")
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got 1.5"):
        tables.alpha_sweep(run, alphas=(0.5, 1.5))
    assert no_model_loads == []
