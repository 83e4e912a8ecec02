"""ODISE projection heads (supp. Table 2's first row, PROTOCOL §3.3) on the smoke model."""
import numpy as np
import pytest
import torch
from torch import nn

from sdfuse import tables
from sdfuse.errors import WeightsNotFoundError
from sdfuse.features.projection import (PREFIX, BottleneckProjection, ProjectedSDExtractor, ProjectionConfig,
                                        load_projections, projection_descriptor)
from sdfuse.features.sd import SDConfig
from sdfuse.profiles.runs import resolve
from tests.fixture_scope import per_module


def _head_state(in_channels: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"conv1": (128, in_channels, 1, 1), "conv2": (128, 128, 3, 3), "conv3": (512, 128, 1, 1),
              "shortcut": (512, in_channels, 1, 1)}
    state = {}
    for part, shape in shapes.items():
        state[f"{part}.weight"] = torch.randn(shape, generator=gen) * 0.1
        state[f"{part}.norm.weight"] = 1 + 0.1 * torch.randn(shape[0], generator=gen)
        state[f"{part}.norm.bias"] = 0.1 * torch.randn(shape[0], generator=gen)
    return state


@pytest.fixture(scope=per_module)
def odise_checkpoint(tmp_path_factory):
    model = {}
    for index, channels in ((2, 32), (3, 32), (4, 16)):          # smoke layers 2, 5, 8
        model |= {PREFIX.format(index=index) + k: v for k, v in _head_state(channels, index).items()}
    path = tmp_path_factory.mktemp("odise") / "odise.pth"
    torch.save({"model": model}, path)
    return path


def test_bottleneck_equals_detectron2_style_modules():
    state = _head_state(16, 0)
    x = torch.randn(2, 16, 5, 5, generator=torch.Generator().manual_seed(1))

    def conv_norm(part, k):
        conv = nn.Conv2d(state[f"{part}.weight"].shape[1], state[f"{part}.weight"].shape[0], k, padding=k // 2, bias=False)
        conv.weight.data = state[f"{part}.weight"]
        norm = nn.GroupNorm(32, conv.out_channels)
        norm.weight.data, norm.bias.data = state[f"{part}.norm.weight"], state[f"{part}.norm.bias"]
        return nn.Sequential(conv, norm)

    branch = nn.Sequential(conv_norm("conv1", 1), nn.ReLU(), conv_norm("conv2", 3), nn.ReLU(), conv_norm("conv3", 1))
    want = torch.relu(branch(x) + conv_norm("shortcut", 1)(x))
    assert torch.allclose(BottleneckProjection(state)(x), want, atol=1e-5)


def test_projected_features_and_descriptor(smoke_root, odise_checkpoint):
    config = ProjectionConfig(SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128), str(odise_checkpoint))
    maps = ProjectedSDExtractor(config).extract_pixels(torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(0)))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {16: (512, 12, 12), 32: (512, 6, 6)}
    assert (maps[16] >= 0).all()                                  # a ReLU ends every head
    assert tuple(projection_descriptor(maps, 12).shape) == (144, 1024)
    assert config.fingerprint() != {**config.sd.fingerprint()}


def test_missing_head_is_refused(tmp_path):
    torch.save({"model": {"backbone.other": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(WeightsNotFoundError, match="no projection head for layer 2"):
        load_projections(str(tmp_path / "x.pth"))


def test_table2_computes_the_projection_row_with_a_checkpoint(smoke_root, odise_checkpoint, tmp_path):
    run = resolve("smoke", cache_dir=tmp_path, captioner_checkpoint=str(odise_checkpoint), progress=False)
    table = tables.table2(run)
    rows = table[(table["setting"] == "projection") & (table["aggregate"] == "category_mean") & (table["category"] == "all")]
    assert len(rows) == 6 and rows["value"].between(0, 100).all()
    assert run.projection_features.forward_passes == 12
    plain = tables.table2(resolve("smoke", cache_dir=tmp_path, progress=False))
    assert "projection" not in set(plain["setting"])


def test_extract_frames_the_image_as_the_sd_input_by_hand(smoke_root, odise_checkpoint):
    from PIL import Image

    config = ProjectionConfig(SDConfig(model=str(smoke_root / "models" / "sd"), grid=12, crop=128), str(odise_checkpoint))
    extractor = ProjectedSDExtractor(config)
    content = np.random.default_rng(0).integers(0, 256, (96, 192, 3), dtype=np.uint8)  # 192 wide: already 16·G
    framed = np.zeros((192, 192, 3), np.uint8)
    framed[48:144] = content                            # black bands of (192 − 96)/2 rows above and below
    expected = extractor.extract_pixels(torch.from_numpy(framed).permute(2, 0, 1)[None].float() / 255)
    got = extractor.extract(Image.fromarray(content))
    assert got.keys() == expected.keys()
    for stride in got:
        torch.testing.assert_close(got[stride], expected[stride], rtol=0, atol=1e-6)
