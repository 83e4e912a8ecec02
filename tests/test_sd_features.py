"""Stable Diffusion features: window geometry, schedule, noise, capture points, early stop (PROTOCOL §2);
the features themselves against the smoke UNet and VAE run module by module in the test."""
import numpy as np
import pytest
import torch
from PIL import Image

from sdfuse.errors import ConfigError, WeightsNotFoundError
from sdfuse.features.architectures import SD15_SCHEDULER, SD15_UNET, SD15_VAE
from sdfuse.features.captioner import ODISE_PREFIX, ImplicitCaptioner
from sdfuse.features.sd import (SDConfig, SDFeatureExtractor, SDModels, average_windows, shared_noise,
                                window_starts)
from tests.fixture_scope import per_module


@pytest.mark.parametrize("size, crop, starts", [(960, 512, [0, 448]), (512, 512, [0]), (192, 128, [0, 64]),
                                                (1024, 512, [0, 512]), (300, 512, [0])])
def test_window_starts(size, crop, starts):
    assert window_starts(size, crop) == starts


def test_average_windows_averages_overlaps():
    maps = torch.stack([torch.full((1, 4, 4), float(v)) for v in (1, 2, 3, 4)])
    out = average_windows(maps, [(0, 0), (0, 2), (2, 0), (2, 2)], size=6, stride=1)[0]
    assert out[0, 0] == 1 and out[0, 5] == 2 and out[5, 0] == 3 and out[5, 5] == 4
    assert out[0, 2] == 1.5 and out[2, 0] == 2.0 and out[3, 3] == 2.5 and out[5, 3] == 3.5


def test_schedule_and_noise_known_values():
    from diffusers import DDPMScheduler

    alpha_bar = DDPMScheduler(**SD15_SCHEDULER).alphas_cumprod[100].item()
    assert alpha_bar == pytest.approx(0.8942235, abs=1e-6)
    noise = shared_noise(64, 42)
    assert noise.shape == (1, 4, 64, 64)
    # the well-known first values of a seed-42 CPU randn (vectorised path, >= 16 elements)
    assert noise.flatten()[:3].tolist() == pytest.approx([1.9269, 1.4873, 0.9007], abs=1e-4)
    assert torch.equal(noise, shared_noise(64, 42))


def test_real_sd15_architecture_shapes_at_g60_on_meta_device():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
    calls = []
    unet.up_blocks[3].register_forward_hook(lambda *a: calls.append("up_blocks[3]"))
    unet.conv_out.register_forward_hook(lambda *a: calls.append("conv_out"))
    vae.decoder.register_forward_hook(lambda *a: calls.append("vae.decoder"))
    models = SDModels(unet=unet, vae=vae, alpha_bar=0.8942235, empty_prompt=torch.zeros(1, 77, 768, device="meta"))
    features = SDFeatureExtractor(SDConfig(model="meta", grid=60), models).extract_pixels(
        torch.zeros(1, 3, 960, 960, device="meta"))
    assert {k: tuple(v.shape) for k, v in features.items()} == {2: (1280, 15, 15), 5: (1280, 30, 30), 8: (640, 60, 60)}
    assert calls == []
    layer11 = SDFeatureExtractor(SDConfig(model="meta", grid=60, layers=(11,)), models).extract_pixels(
        torch.zeros(1, 3, 960, 960, device="meta"))
    assert tuple(layer11[11].shape) == (320, 120, 120)


@pytest.fixture(scope=per_module)
def smoke_sd(smoke_root):
    return SDFeatureExtractor(SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128))


def test_smoke_sd_loads_through_diffusers_and_never_decodes(smoke_sd):
    models = smoke_sd.models
    assert models.vae.decoder is None
    assert models.alpha_bar == pytest.approx(0.8942235, abs=1e-6)
    assert tuple(models.empty_prompt.shape) == (1, 77, 32)


def test_sliding_window_averages_crop_features(smoke_sd):
    pixels = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    crops = torch.cat([pixels[:, :, y:y + 128, x:x + 128] for y in (0, 64) for x in (0, 64)])
    per_crop = smoke_sd.crop_features(crops)[8]          # (4, 16, 8, 8): stride 16
    full = smoke_sd.extract_pixels(pixels)[8]            # (16, 12, 12)
    assert tuple(full.shape) == (16, 12, 12)
    assert torch.allclose(full[:, 0, 0], per_crop[0, :, 0, 0])
    assert torch.allclose(full[:, 11, 11], per_crop[3, :, 7, 7])
    assert torch.allclose(full[:, 0, 5], (per_crop[0, :, 0, 5] + per_crop[1, :, 0, 1]) / 2, atol=1e-6)
    four = (per_crop[0, :, 5, 5] + per_crop[1, :, 5, 1] + per_crop[2, :, 1, 5] + per_crop[3, :, 1, 1]) / 4
    assert torch.allclose(full[:, 5, 5], four, atol=1e-6)


def test_unet_stops_after_the_last_needed_block(smoke_sd):
    calls = []
    unet = smoke_sd.models.unet
    handles = [unet.up_blocks[3].register_forward_hook(lambda *a: calls.append(3)),
               unet.up_blocks[2].register_forward_hook(lambda *a: calls.append(2))]
    try:
        smoke_sd.crop_features(torch.rand(1, 3, 128, 128))
    finally:
        for h in handles:
            h.remove()
    assert calls == []       # layer 8 is captured inside up_blocks[2], before its upsampler


def test_config_rejects_bad_values_before_loading():
    with pytest.raises(ConfigError, match="multiple of 4"):
        SDConfig(grid=30)
    with pytest.raises(ConfigError, match="unknown SD layers"):
        SDConfig(layers=(3,))
    with pytest.raises(ConfigError, match="captioner_checkpoint"):
        SDConfig(conditioning="implicit")
    with pytest.raises(ConfigError, match="dtype"):
        SDConfig(dtype="float64")


def test_fingerprint_changes_with_settings(smoke_root):
    base = SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128)
    other = SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128, timestep=50)
    assert base.fingerprint() != other.fingerprint()
    assert base.fingerprint() == SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128,
                                          device="cuda").fingerprint()
    assert base.fingerprint()["model"].startswith("local:")


# --- implicit captioner (PROTOCOL §2.3c) ---------------------------------------------------------

def _captioner_state(clip_dim, text_dim, time_dim, alpha):
    gen = torch.Generator().manual_seed(7)
    return {
        "alpha_cond": torch.full((1, 77, text_dim), alpha),
        "alpha_cond_time_embed": torch.full((time_dim,), alpha),
        "clip_project.linear.weight": torch.randn(text_dim, clip_dim, generator=gen),
        "clip_project.linear.bias": torch.randn(text_dim, generator=gen),
        "clip_project.positional_embedding": torch.randn(1, 77, text_dim, generator=gen),
        "time_embed_project.linear.weight": torch.randn(time_dim, clip_dim, generator=gen),
        "time_embed_project.linear.bias": torch.randn(time_dim, generator=gen),
        "time_embed_project.positional_embedding": torch.randn(1, 1, time_dim, generator=gen),
    }


def test_captioner_formula():
    state = _captioner_state(clip_dim=5, text_dim=4, time_dim=6, alpha=0.3)
    embed = torch.randn(2, 5)
    empty = torch.randn(1, 77, 4)
    context, offset = ImplicitCaptioner(state)(embed, empty)
    t = torch.tanh(torch.tensor(0.3))
    want_c = empty + t * (embed @ state["clip_project.linear.weight"].T + state["clip_project.linear.bias"])[:, None] \
        + t * state["clip_project.positional_embedding"]
    want_o = t * (embed @ state["time_embed_project.linear.weight"].T + state["time_embed_project.linear.bias"]
                  + state["time_embed_project.positional_embedding"][0])
    assert torch.allclose(context, want_c, atol=1e-6) and torch.allclose(offset, want_o, atol=1e-6)
    assert context.shape == (2, 77, 4) and offset.shape == (2, 6)


@pytest.fixture(scope=per_module)
def tiny_clip(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip")
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, image_size=28,
        patch_size=14, projection_dim=8)).save_pretrained(folder)
    return folder


def _odise_checkpoint(path, alpha):
    state = _captioner_state(clip_dim=8, text_dim=32, time_dim=64, alpha=alpha)
    model = {ODISE_PREFIX + k: v for k, v in state.items()}
    model["sem_seg_head.predictor.weight"] = torch.zeros(2)     # unrelated ODISE tensors are ignored
    torch.save({"model": model, "iteration": 1}, path)
    return path


def test_implicit_conditioning_with_zero_gates_equals_empty_prompt(smoke_root, tiny_clip, tmp_path):
    image = Image.open(smoke_root / "SPair-71k" / "JPEGImages" / "portrait" / "portrait_00.jpg")
    common = dict(model=str(smoke_root / "models" / "sd"), grid=12, crop=128)
    empty = SDFeatureExtractor(SDConfig(**common)).extract(image)
    zero = SDFeatureExtractor(SDConfig(**common, conditioning="implicit", clip_model=str(tiny_clip),
                                       captioner_checkpoint=str(_odise_checkpoint(tmp_path / "z.pth", 0.0)))).extract(image)
    gated = SDFeatureExtractor(SDConfig(**common, conditioning="implicit", clip_model=str(tiny_clip),
                                        captioner_checkpoint=str(_odise_checkpoint(tmp_path / "g.pth", 0.5)))).extract(image)
    for layer in (2, 5, 8):
        assert torch.allclose(empty[layer], zero[layer], atol=1e-5)
        assert not torch.allclose(empty[layer], gated[layer], atol=1e-3)


def test_checkpoint_without_captioner_tensors_is_refused(smoke_root, tiny_clip, tmp_path):
    torch.save({"model": {"backbone.other": torch.zeros(1)}}, tmp_path / "bad.pth")
    config = SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128, conditioning="implicit",
                      clip_model=str(tiny_clip), captioner_checkpoint=str(tmp_path / "bad.pth"))
    with pytest.raises(WeightsNotFoundError, match="lacks the implicit-captioner tensors"):
        SDFeatureExtractor(config).models


def test_hub_weights_are_identified_by_the_cached_commit(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from sdfuse.features.weights import weights_identity

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    assert weights_identity("org/model", None) == "hub:org/model@main"
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("abc123\n")
    assert weights_identity("org/model", None) == "hub:org/model@abc123"
    assert weights_identity("org/model", "v2") == "hub:org/model@v2"


# --- known answers by a second route: the UNet run block by block in the test (PROTOCOL §2.3d–f, §2.4) ----

SMOKE_GRID, SMOKE_CROP = 12, 128                     # SD input 16·12 = 192 px: crops at {0, 64}², latent 16²


def _alpha_bar(t: int) -> float:
    """ᾱ_t of SD's schedule by hand: β linear in √β from √0.00085 to √0.012 over 1000 steps (§2.3e)."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    return float(np.prod(1 - betas[:t + 1]))


@pytest.fixture(scope=per_module)
def sd_parts(smoke_root):
    """The smoke SD parts loaded straight from the diffusers folder, and the empty prompt's embedding."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = smoke_root / "models" / "sd"
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        empty = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")(ids).last_hidden_state
    return unet, vae, empty


@torch.no_grad()
def _ldm_output_blocks(unet, vae, crop: torch.Tensor, context: torch.Tensor, offset=None, t: int = 100) -> list:
    """Outputs of the LDM UNet's 12 ``output_blocks`` for one crop in [0, 1], computed module by module.

    VAE encoder → quant_conv → the posterior mean (first 4 moments) × 0.18215; x_t = √ᾱ·z + √(1−ᾱ)·ε with
    ε = randn(1, 4, s, s) of a CPU generator seeded 42; the time embedding (plus the captioner's offset);
    the down path, the middle block, then each up block's (ResNet on [h | skip], attention) units in order,
    the third unit of a block followed by its upsampler. ``output_blocks[3k + j]`` is unit j of up block k.
    """
    moments = vae.quant_conv(vae.encoder(2 * crop - 1))
    latent = moments[:, :4] * 0.18215
    noise = torch.randn((1, 4) + latent.shape[-2:], generator=torch.Generator("cpu").manual_seed(42))
    a = _alpha_bar(t)
    h = a ** 0.5 * latent + (1 - a) ** 0.5 * noise
    emb = unet.time_embedding(unet.time_proj(torch.tensor([t])))
    if offset is not None:
        emb = emb + offset
    h = unet.conv_in(h)
    skips = [h]
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(h, emb, encoder_hidden_states=context)
        else:
            h, res = block(h, emb)
        skips += list(res)
    h = unet.mid_block(h, emb, encoder_hidden_states=context)
    outputs = []
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for j, (resnet, attention) in enumerate(zip(block.resnets, attentions)):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if attention is not None:
                h = attention(h, encoder_hidden_states=context, return_dict=False)[0]
            if j == len(block.resnets) - 1 and block.upsamplers:
                h = block.upsamplers[0](h)
            outputs.append(h)
    return outputs


def test_alpha_bar_by_hand_is_the_protocols():
    assert _alpha_bar(100) == pytest.approx(0.8942235, abs=1e-6)


def test_crop_features_equal_the_unet_run_block_by_block(smoke_sd, sd_parts):
    """Paper layer n is the tensor entering LDM ``output_blocks[n]``: the output of block n − 1 (§2.3f)."""
    unet, vae, empty = sd_parts
    crop = torch.rand(1, 3, SMOKE_CROP, SMOKE_CROP, generator=torch.Generator().manual_seed(3))
    outputs = _ldm_output_blocks(unet, vae, crop, empty)
    config = SDConfig(model=smoke_sd.config.model, grid=SMOKE_GRID, crop=SMOKE_CROP, layers=(2, 5, 8, 11))
    got = SDFeatureExtractor(config).crop_features(crop)
    for layer in (2, 5, 8, 11):
        assert got[layer].shape == outputs[layer - 1].shape
        torch.testing.assert_close(got[layer], outputs[layer - 1], rtol=0, atol=2e-5)
    # the neighbouring blocks of the same shape hold other values, so the comparison pins the hook points
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3) and not torch.allclose(outputs[3], outputs[4], atol=1e-3)
    assert not torch.allclose(outputs[6], outputs[7], atol=1e-3)


def _resize_pad_by_hand(image: Image.Image, side: int) -> np.ndarray:
    """PIL LANCZOS resize of the longer side to ``side`` (numpy rounding), centred on a black square (§1.1)."""
    w, h = image.size
    new = (side, int(np.round(side * h / w))) if h <= w else (int(np.round(side * w / h)), side)
    canvas = np.zeros((side, side, 3), np.uint8)
    top, left = (side - new[1]) // 2, (side - new[0]) // 2
    canvas[top:top + new[1], left:left + new[0]] = np.asarray(image.convert("RGB").resize(new, Image.LANCZOS))
    return canvas


def test_image_features_equal_four_hand_made_crops_averaged(smoke_root, smoke_sd, sd_parts):
    """extract(image): resize-pad with LANCZOS to 192 px, 4 crops of 128 at {0, 64}², per-crop features
    by the block-by-block route, overlaps averaged (§1.1, §2.3b)."""
    unet, vae, empty = sd_parts
    image = Image.open(smoke_root / "SPair-71k" / "JPEGImages" / "portrait" / "portrait_00.jpg")
    assert image.size[0] != image.size[1]                      # the resize and the padding both act
    pixels = torch.from_numpy(_resize_pad_by_hand(image, 192)).permute(2, 0, 1)[None].float() / 255
    got = smoke_sd.extract(image)
    for layer, stride in ((2, 64), (5, 32), (8, 16)):
        cells = 192 // stride
        total = torch.zeros(got[layer].shape)
        count = torch.zeros(cells, cells)
        for y in (0, 64):
            for x in (0, 64):
                crop = pixels[:, :, y:y + 128, x:x + 128]
                block = _ldm_output_blocks(unet, vae, crop, empty)[layer - 1][0]
                total[:, y // stride:y // stride + 128 // stride, x // stride:x // stride + 128 // stride] += block
                count[y // stride:y // stride + 128 // stride, x // stride:x // stride + 128 // stride] += 1
        torch.testing.assert_close(got[layer], total / count, rtol=0, atol=2e-5)


def test_implicit_captioner_time_offset_acts_on_the_time_embedding(smoke_root, smoke_sd, sd_parts, tiny_clip, tmp_path):
    """With the context gate closed (α_c = 0, so c = u) only the time offset o acts: the features are the
    block-by-block UNet's with o added to the time embedding, and differ from the empty prompt's (§2.3c)."""
    from sdfuse.features.captioner import clip_image_embedding, read_captioner_state

    state = _captioner_state(clip_dim=8, text_dim=32, time_dim=64, alpha=0.5)
    state["alpha_cond"] = torch.zeros_like(state["alpha_cond"])
    torch.save({"model": {ODISE_PREFIX + k: v for k, v in state.items()}}, tmp_path / "time_only.pth")
    config = SDConfig(model=smoke_sd.config.model, grid=SMOKE_GRID, crop=SMOKE_CROP, conditioning="implicit",
                      clip_model=str(tiny_clip), captioner_checkpoint=str(tmp_path / "time_only.pth"))
    extractor = SDFeatureExtractor(config)
    crop = torch.rand(1, 3, SMOKE_CROP, SMOKE_CROP, generator=torch.Generator().manual_seed(5))
    got = extractor.crop_features(crop)
    embed = clip_image_embedding(extractor.models.clip, crop)
    offset = torch.tanh(torch.tensor(0.5)) * (embed @ state["time_embed_project.linear.weight"].T
                                              + state["time_embed_project.linear.bias"]
                                              + state["time_embed_project.positional_embedding"][0])
    unet, vae, empty = sd_parts
    with_offset = _ldm_output_blocks(unet, vae, crop, empty, offset=offset)
    without = _ldm_output_blocks(unet, vae, crop, empty)
    for layer in (2, 5, 8):
        torch.testing.assert_close(got[layer], with_offset[layer - 1], rtol=0, atol=2e-5)
        assert not torch.allclose(got[layer], without[layer - 1], atol=1e-3)
    context, _ = ImplicitCaptioner(read_captioner_state(str(tmp_path / "time_only.pth")))(embed, empty)
    torch.testing.assert_close(context, empty.expand_as(context))          # the context gate is closed


@pytest.mark.parametrize("field, value", [
    ("grid", 8), ("crop", 256), ("timestep", 50), ("noise_seed", 1), ("layers", (2, 5)), ("edge_pad", True),
    ("dtype", "bfloat16"), ("revision", "other"), ("clip_model", "another/clip"),
])
def test_every_feature_setting_keys_the_cache(smoke_root, field, value):
    """Each SDConfig field that changes the features changes the cache fingerprint (DESIGN "Feature cache")."""
    from dataclasses import replace

    base = SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128)
    assert replace(base, **{field: value}).fingerprint() != base.fingerprint()
