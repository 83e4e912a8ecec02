"""DINOv2 features: hub-style position embedding and tokens before the final norm (PROTOCOL §4)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sdfuse.errors import ConfigError
from sdfuse.features.architectures import SMOKE_DINO
from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor, hub_position_embedding
from tests.fixture_scope import per_module


def _cubic(x, a=-0.75):
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _bicubic_axis(values: np.ndarray, out_size: int, scale: float) -> np.ndarray:
    """Resize along axis 0: source coordinate (i + 0.5)/scale − 0.5, Keys kernel a = −0.75, clamped taps."""
    n = values.shape[0]
    out = np.zeros((out_size,) + values.shape[1:])
    for i in range(out_size):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            out[i] += _cubic(src - (base + k)) * values[min(max(base + k, 0), n - 1)]
    return out


def test_position_embedding_follows_the_protocol_formula():
    m, grid, channels = 37, 60, 3
    pos = torch.randn(1, 1 + m * m, channels, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = hub_position_embedding(pos, grid)
    assert got.shape == (1, 1 + grid * grid, channels)
    assert torch.equal(got[:, :1], pos[:, :1])
    scale = (grid + 0.1) / m
    patches = pos[0, 1:].numpy().reshape(m, m, channels)
    want = _bicubic_axis(_bicubic_axis(patches, grid, scale).transpose(1, 0, 2), grid, scale).transpose(1, 0, 2)
    assert np.allclose(got[0, 1:].numpy().reshape(grid, grid, channels), want, atol=5e-5)  # float32 arithmetic, as in the hub
    from timm.layers import resample_abs_pos_embed

    timm_style = resample_abs_pos_embed(pos.float(), new_size=(grid, grid), old_size=(m, m), num_prefix_tokens=1)
    assert (timm_style - got.float()).abs().max() > 1e-3        # timm's own resampling differs


@pytest.fixture(scope=per_module)
def smoke_dino(smoke_root):
    return DinoFeatureExtractor(DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12, blocks=(9, 11)))


def test_tokens_equal_timm_with_the_hub_embedding_written_in(smoke_dino, smoke_root):
    import timm

    image = Image.open(smoke_root / "SPair-71k" / "JPEGImages" / "terrain" / "terrain_00.jpg")
    ours = smoke_dino.extract(image)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {9: (48, 12, 12), 11: (48, 12, 12)}
    model = smoke_dino.model
    fixed = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, img_size=168, **SMOKE_DINO)
    state = dict(model.state_dict())
    state["pos_embed"] = hub_position_embedding(model.pos_embed.detach(), 12)
    fixed.load_state_dict(state)
    fixed.eval()
    from sdfuse.features.dino import IMAGENET_MEAN, IMAGENET_STD
    from sdfuse.protocol.geometry import resize_pad

    pixels = torch.from_numpy(np.asarray(resize_pad(image, 168)).copy()).permute(2, 0, 1).float() / 255
    pixels = (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        inter = fixed.forward_intermediates(pixels[None], indices=[9, 11], norm=False, output_fmt="NCHW",
                                            intermediates_only=True)
        normed = fixed.forward_features(pixels[None])[0, 1:].T.reshape(48, 12, 12)
    assert torch.allclose(ours[9], inter[0][0], atol=1e-5)
    assert torch.allclose(ours[11], inter[1][0], atol=1e-5)
    assert not torch.allclose(ours[11], normed, atol=1e-2)       # before the final norm


def test_dino_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        DinoConfig(grid=0)
    with pytest.raises(ConfigError):
        DinoConfig(blocks=())
    with pytest.raises(ConfigError, match="block 12 requested"):
        extractor = DinoFeatureExtractor(DinoConfig(grid=2, blocks=(12,)), model=_FakeViT())
        extractor.extract_pixels(torch.zeros(1, 3, 28, 28))


class _FakeViT(torch.nn.Module):
    """Just enough of a timm ViT (12 identity blocks) to reach the block-index check."""

    def __init__(self):
        super().__init__()
        self.patch_embed = lambda x: torch.zeros(1, 2, 2, 4)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 1 + 4, 4))
        self.pos_drop = self.patch_drop = self.norm_pre = torch.nn.Identity()
        self.blocks = torch.nn.ModuleList(torch.nn.Identity() for _ in range(12))
