"""Known answers for the feature extractors' plumbing and the feature cache's keys (PROTOCOL §2–§4,
DESIGN "Feature cache"): tiny hand-made inputs, stub models, answers by hand."""
from __future__ import annotations

import hashlib
import math
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import sdfuse.features.dino as dino_module
import sdfuse.features.sd as sd_module
from sdfuse.features.cache import CachedExtractor, setting_digest
from sdfuse.features.captioner import ImplicitCaptioner
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor, hub_position_embedding
from sdfuse.features.projection import BottleneckProjection, ProjectedSDExtractor, ProjectionConfig, projection_descriptor
from sdfuse.errors import WeightsNotFoundError
from sdfuse.features.sd import SDConfig, SDFeatureExtractor, SDModels
from tests.feature_stubs import ColourKeyedExtractor, solid_png


# --- the feature cache ---------------------------------------------------------------------------

def test_setting_digest_is_the_sha256_of_the_sorted_key_json():
    """The setting digest is canonical: sha256 of the JSON with sorted keys, whatever the dict's order."""
    by_hand = hashlib.sha256(b'{"a": 1, "b": [2, 3]}').hexdigest()
    assert setting_digest({"b": [2, 3], "a": 1}) == by_hand[:16]
    assert setting_digest({"a": 1, "b": [2, 3]}, length=64) == by_hand


def _colour_cache(tmp_path, count, **kwargs):
    colours = [(i, 255 - i, 7) for i in range(count)]
    images = [solid_png(tmp_path / "img" / f"{i}.png", (2, 2), c) for i, c in enumerate(colours)]
    features = {c: {0: torch.full((1, 1, 1), float(i))} for i, c in enumerate(colours)}
    return CachedExtractor(ColourKeyedExtractor("lru", features), tmp_path / "cache", "stub", **kwargs), images


def test_forward_passes_count_every_image_that_went_through_the_backbone(tmp_path):
    """Three distinct images and one repeat: three forward passes."""
    cached, images = _colour_cache(tmp_path, 3)
    for path in images + images[:1]:
        cached.get(path)
    assert cached.forward_passes == 3
    assert [cached.get(p)[0].item() for p in images] == [0.0, 1.0, 2.0]


def _drop_entries(cached, images):
    for path in images:
        cached.entry_path(path).unlink()


def test_memory_lru_evicts_the_least_recently_used_entry(tmp_path):
    """With room for 2: A, B, A again, then C evicts B (least recently used), keeps A and C."""
    cached, (a, b, c) = _colour_cache(tmp_path, 3, memory_items=2)
    cached.get(a), cached.get(b), cached.get(a), cached.get(c)
    assert cached.forward_passes == 3
    _drop_entries(cached, (a, b, c))                  # from now on, only memory hits avoid a forward pass
    cached.get(a), cached.get(c)
    assert cached.forward_passes == 3                 # A and C were still in memory
    cached.get(b)
    assert cached.forward_passes == 4                 # B had been evicted


def test_memory_lru_holds_64_images_by_default(tmp_path):
    """The default LRU keeps the 64 most recent images: after 65, the first one is gone from memory."""
    cached, images = _colour_cache(tmp_path, 65)
    for path in images:
        cached.get(path)
    _drop_entries(cached, images[:2])
    cached.get(images[1])
    assert cached.forward_passes == 65                # the second image is still in memory
    cached.get(images[0])
    assert cached.forward_passes == 66                # the first had been evicted


def test_entry_path_is_folder_digest_prefix_and_digest(tmp_path):
    """<folder>/<sha256[:2]>/<sha256>.safetensors, keyed by content even for files of equal size and mtime."""
    cached, _ = _colour_cache(tmp_path, 1)
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(b"first image")
    two.write_bytes(b"other image")
    for path in (one, two):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    for path in (one, two):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert cached.entry_path(path) == cached.folder / sha[:2] / f"{sha}.safetensors"


# --- fingerprints: what changes the features changes the key, and nothing else -----------------------

def _weights_folder(path, content: bytes):
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(content)
    return str(path)


def test_dino_fingerprint_keys_on_the_weights_content_not_their_path(tmp_path):
    """Two copies of the same weights share a key; other weights get another (DESIGN "Feature cache")."""
    first = _weights_folder(tmp_path / "a", b"weights one")
    copy = str(shutil.copytree(first, tmp_path / "b"))
    other = _weights_folder(tmp_path / "c", b"weights two")
    key = DinoConfig(model=first).fingerprint()
    assert DinoConfig(model=copy).fingerprint() == key
    assert DinoConfig(model=other).fingerprint() != key


def test_sd_fingerprint_keys_on_the_captioner_checkpoint_content_not_its_path(tmp_path):
    """The implicit captioner's checkpoint keys the SD cache by its content (DESIGN "Feature cache")."""
    model = _weights_folder(tmp_path / "sd", b"sd weights")
    (tmp_path / "ckpt").mkdir()
    first, copy, other = (tmp_path / "ckpt" / name for name in ("a.pth", "b.pth", "c.pth"))
    first.write_bytes(b"captioner one")
    copy.write_bytes(b"captioner one")
    other.write_bytes(b"captioner two")

    def key(path):
        return SDConfig(model=model, grid=12, crop=128, conditioning="implicit",
                        captioner_checkpoint=str(path)).fingerprint()

    assert key(copy) == key(first)
    assert key(other) != key(first)


@pytest.mark.parametrize("config_class", [DinoConfig, SDConfig])
def test_pinned_hub_revision_key_ignores_where_main_points(config_class, tmp_path, monkeypatch):
    """A hub id pinned to a revision keeps its key when the cached ``main`` ref moves; another revision
    changes it."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    pinned = config_class(model="org/tiny", revision="v2").fingerprint()
    refs = tmp_path / "models--org--tiny" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("abc123\n")
    assert config_class(model="org/tiny", revision="v2").fingerprint() == pinned
    assert config_class(model="org/tiny", revision="v3").fingerprint() != pinned


@pytest.mark.parametrize("module, config_class", [(dino_module, DinoConfig), (sd_module, SDConfig)], ids=["dino", "sd"])
def test_extractor_code_version_keys_the_cache(module, config_class, monkeypatch):
    """Bumping EXTRACTOR_VERSION (a code change that alters the features) changes the key."""
    before = config_class(model="org/tiny", revision="v1").fingerprint()
    monkeypatch.setattr(module, "EXTRACTOR_VERSION", "bumped")
    assert config_class(model="org/tiny", revision="v1").fingerprint() != before


# --- DINOv2 (PROTOCOL §4) ---------------------------------------------------------------------------

def _keys_cubic(x, a=-0.75):
    x = abs(x)
    if x <= 1:
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a if x < 2 else 0.0


def _bicubic_matrix(n_in, n_out, scale):
    """(n_out, n_in) weights: source (i + 0.5)/scale − 0.5, Keys a = −0.75, taps clamped to the border."""
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            weights[i, min(max(base + k, 0), n_in - 1)] += _keys_cubic(src - (base + k))
    return weights


def test_position_embedding_keeps_the_models_dtype():
    """A bfloat16 model gets a bfloat16 position embedding: 2×2 → 3×3 by scale (3 + 0.1)/2 (PROTOCOL §4)."""
    patches = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    pos = torch.cat([torch.tensor([[7.0]]), patches.reshape(4, 1)])[None].to(torch.bfloat16)
    got = hub_position_embedding(pos, 3)
    assert got.dtype == torch.bfloat16 and got.shape == (1, 10, 1)
    w = _bicubic_matrix(2, 3, 3.1 / 2)
    want = w @ patches.double().numpy() @ w.T
    assert got[0, 0, 0].item() == 7.0
    assert torch.allclose(got[0, 1:, 0].float(), torch.from_numpy(want.reshape(-1)).float(), rtol=8e-3, atol=1e-3)


class _PatchCornerViT(nn.Module):
    """A stand-in timm ViT: a patch's token is its top-left pixel, zero position embedding, identity blocks."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 3))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + 4, 3))
        self.pos_drop = self.patch_drop = self.norm_pre = nn.Identity()
        self.blocks = nn.ModuleList(nn.Identity() for _ in range(12))

    @staticmethod
    def patch_embed(x):
        return x[:, :, ::14, ::14].permute(0, 2, 3, 1)


def test_dino_extractor_runs_the_model_it_was_given(tmp_path):
    """A model passed in is used as is (nothing is loaded): tokens of a 28-px input on a 2×2 grid."""
    config = DinoConfig(model=str(tmp_path / "absent"), grid=2, blocks=(0,))
    pixels = torch.arange(3 * 28 * 28, dtype=torch.float32).reshape(1, 3, 28, 28)
    got = DinoFeatureExtractor(config, model=_PatchCornerViT()).extract_pixels(pixels)
    assert list(got) == [0]
    assert torch.equal(got[0], pixels[0, :, ::14, ::14])


def _tall_image():
    """28 wide, 14 high: already 14·G wide at G = 2, so framing only pads 7 rows above and 7 below."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (14, 28, 3), dtype=np.uint8)


def test_dino_extract_edge_pads_then_normalises(tmp_path):
    """edge_pad=True replicates the border rows (§1.1), then ImageNet mean/std (§4)."""
    content = _tall_image()
    framed = np.pad(content, ((7, 7), (0, 0), (0, 0)), mode="edge")
    config = DinoConfig(model=str(tmp_path / "absent"), grid=2, blocks=(0,), edge_pad=True)
    got = DinoFeatureExtractor(config, model=_PatchCornerViT()).extract(Image.fromarray(content))
    corners = framed[::14, ::14].astype(np.float64) / 255                 # (2, 2, 3): rows 0 and 14 of the frame
    want = (corners - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])      # ImageNet's
    assert got[0].dtype == torch.float32
    assert torch.allclose(got[0], torch.from_numpy(want.transpose(2, 0, 1)).float(), rtol=0, atol=1e-6)


# --- ODISE projection heads (PROTOCOL §3.3) -----------------------------------------------------------

def test_projected_extract_edge_pads_the_sd_frame():
    """ProjectedSDExtractor.extract frames with the SD setting's edge_pad=True (§1.1)."""
    content = np.random.default_rng(4).integers(0, 256, (32, 64, 3), dtype=np.uint8)   # 64 = 16·G at G = 4
    framed = np.pad(content, ((16, 16), (0, 0), (0, 0)), mode="edge")
    extractor = ProjectedSDExtractor(ProjectionConfig(SDConfig(model="meta", grid=4, crop=64, edge_pad=True), "unused"))
    seen = []
    extractor.extract_pixels = lambda pixels: seen.append(pixels) or {16: torch.zeros(1)}
    extractor.extract(Image.fromarray(content))
    want = torch.from_numpy(framed).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(seen[0], want)


def test_projection_descriptor_upsamples_stride_32_with_half_pixel_bilinear():
    """[s4 | bilinear(s5 → G), align_corners unset = False] (§3.3): a linear ramp 2×2 → 4×4 by hand."""
    fine = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    coarse = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])                      # value 2·row + col
    got = projection_descriptor({16: fine, 32: coarse}, 4)
    t = [0.0, 0.25, 0.75, 1.0]                                             # clamp((i + 0.5)/2 − 0.5, 0, 1)
    want = torch.tensor([[fine[0, r, c].item(), 2 * t[r] + t[c]] for r in range(4) for c in range(4)])
    assert got.shape == (16, 2) and torch.allclose(got, want, rtol=0, atol=1e-6)


def test_bottleneck_pads_a_5x5_kernel_to_keep_the_map_size():
    """A 5×5 middle convolution pads by 2 (half the kernel): the block equals nn.Conv2d + GroupNorm modules."""
    gen = torch.Generator().manual_seed(2)
    shapes = {"conv1": (32, 4, 1, 1), "conv2": (32, 32, 5, 5), "conv3": (32, 32, 1, 1), "shortcut": (32, 4, 1, 1)}
    state = {}
    for part, shape in shapes.items():
        state[f"{part}.weight"] = torch.randn(shape, generator=gen) * 0.2
        state[f"{part}.norm.weight"] = 1 + 0.1 * torch.randn(shape[0], generator=gen)
        state[f"{part}.norm.bias"] = 0.1 * torch.randn(shape[0], generator=gen)

    def conv_norm(part):
        weight = state[f"{part}.weight"]
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], padding=(weight.shape[-1] - 1) // 2,
                         bias=False)
        conv.weight.data = weight
        norm = nn.GroupNorm(32, weight.shape[0])
        norm.weight.data, norm.bias.data = state[f"{part}.norm.weight"], state[f"{part}.norm.bias"]
        return nn.Sequential(conv, norm)

    x = torch.randn(1, 4, 6, 6, generator=gen)
    with torch.no_grad():
        branch = nn.Sequential(conv_norm("conv1"), nn.ReLU(), conv_norm("conv2"), nn.ReLU(), conv_norm("conv3"))
        want = torch.relu(branch(x) + conv_norm("shortcut")(x))
        got = BottleneckProjection(state)(x)
    assert got.shape == (1, 32, 6, 6)
    assert torch.allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 32, 1, 3), (32, 32, 2, 2), (32, 32, 3)])
def test_bottleneck_refuses_a_kernel_that_is_not_square_and_odd(shape):
    """Padding k // 2 keeps the map size only for a k×k kernel with k odd (the ODISE heads' 1×1 and 3×3)."""
    state = {f"{part}.{name}": torch.ones(32) for part in BottleneckProjection.PARTS for name in ("norm.weight",
                                                                                               "norm.bias")}
    state.update({f"{part}.weight": torch.ones(32, 32, 1, 1) for part in BottleneckProjection.PARTS})
    state["conv2.weight"] = torch.ones(shape)
    with pytest.raises(WeightsNotFoundError, match=r"conv2\.weight has shape"):
        BottleneckProjection(state)


# --- SD conditioning (PROTOCOL §2.3c) ------------------------------------------------------------------

class _FixedClip:
    """A stand-in CLIP image tower: 4-px input, the same 3-d embedding for every crop."""

    config = SimpleNamespace(image_size=4)

    def __init__(self, embed):
        self.embed = embed

    def __call__(self, pixel_values):
        return SimpleNamespace(image_embeds=self.embed.to(pixel_values.device).expand(len(pixel_values), -1))


def _implicit_extractor(captioner, clip, dtype="float32", empty=None):
    config = SDConfig(model="meta", grid=12, crop=128, conditioning="implicit", captioner_checkpoint="unused",
                      dtype=dtype)
    empty = torch.zeros(1, 77, 2) if empty is None else empty
    models = SDModels(unet=None, vae=None, alpha_bar=0.9, empty_prompt=empty, captioner=captioner, clip=clip)
    return SDFeatureExtractor(config, models)


def test_captioner_gets_the_empty_prompt_on_the_crops_device(monkeypatch):
    """The empty prompt (kept on the CPU at load) reaches the captioner on the crops' device."""
    import sdfuse.features.captioner as captioner_module

    seen = []

    def captioner(embed, empty):
        seen.append(empty.device)
        return empty.expand(len(embed), -1, -1), torch.zeros(len(embed), 4, device=empty.device)

    monkeypatch.setattr(captioner_module, "clip_image_embedding",            # the CLIP tower is not the point here
                        lambda clip, crops: torch.zeros(len(crops), 3, device=crops.device))
    crops = torch.zeros(2, 3, 8, 8, device="meta")                 # a device other than the prompt's CPU
    _implicit_extractor(captioner, None)._conditioning(crops, 2)
    assert seen == [torch.device("meta")]


def test_captioner_time_offset_comes_in_the_run_dtype():
    """o = tanh(α_t)·(W_t·e + b_t + P_t) in bfloat16 for a bfloat16 run: it is added to the UNet's time embedding
    as is (§2.3c)."""
    w_t = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    b_t = torch.tensor([0.1, -0.2, 0.3, 0.0])
    p_t = torch.tensor([[[0.0, 1.0, 0.0, -1.0]]])
    state = {"alpha_cond": torch.zeros(1, 77, 2), "alpha_cond_time_embed": torch.full((4,), 0.5),
             "clip_project.linear.weight": torch.zeros(2, 3), "clip_project.linear.bias": torch.zeros(2),
             "clip_project.positional_embedding": torch.zeros(1, 77, 2),
             "time_embed_project.linear.weight": w_t, "time_embed_project.linear.bias": b_t,
             "time_embed_project.positional_embedding": p_t}
    e = torch.tensor([[1.0, 2.0, 3.0]])
    extractor = _implicit_extractor(ImplicitCaptioner(state), _FixedClip(e), dtype="bfloat16")
    _, offset = extractor._conditioning(torch.zeros(2, 3, 8, 8), 2)
    row = [math.tanh(0.5) * (sum(w_t[j, k].item() * e[0, k].item() for k in range(3)) + b_t[j].item()
                             + p_t[0, 0, j].item()) for j in range(4)]
    assert offset.dtype == torch.bfloat16
    assert torch.allclose(offset.float(), torch.tensor([row, row]), rtol=8e-3, atol=1e-3)
