"""co-PCA, assembly, fusion and nearest-neighbour matching (PROTOCOL §3, §5, §6)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdfuse.errors import ConfigError
from sdfuse.protocol.fusion import assemble_sd, co_pca, co_pca_layers, fuse, l2_normalize
from sdfuse.protocol.matching import match_keypoints, nearest_patches


def _rotation(dim, seed):
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_co_pca_centres_jointly_not_per_image():
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(50, 20, generator=gen, dtype=torch.float64) + 3.0
    trg = torch.randn(40, 20, generator=gen, dtype=torch.float64) - 3.0
    a, b = co_pca(src, trg, 5)
    assert a.shape == (50, 5) and b.shape == (40, 5)
    joint = torch.cat([a, b]).mean(0)
    assert torch.allclose(joint, torch.zeros(5, dtype=torch.float64), atol=1e-10)
    assert a.mean(0).abs().max() > 1.0          # per-image means are not removed
    variances = torch.cat([a, b]).var(0)
    assert (variances[:-1] >= variances[1:]).all()   # components by decreasing variance


def test_co_pca_recovers_a_rank_one_structure_and_caps_dim():
    u = torch.linspace(-1, 1, 30, dtype=torch.float64)[:, None]
    v = torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64)
    x = u @ v + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    a, b = co_pca(x[:10], x[10:], 8)
    assert a.shape == (10, 3)                                   # capped at C = 3
    projected = torch.cat([a, b])[:, 0].abs()
    assert torch.allclose(projected, (u[:, 0] - u.mean()).abs() * 5.0, atol=1e-9)
    assert torch.cat([a, b])[:, 1:].abs().max() < 1e-6


def test_nearest_neighbours_are_invariant_to_a_rotation_of_the_features():
    gen = torch.Generator().manual_seed(1)
    maps_src = {5: torch.randn(12, 4, 4, generator=gen, dtype=torch.float64)}
    maps_trg = {5: torch.randn(12, 4, 4, generator=gen, dtype=torch.float64)}
    q = _rotation(12, 2)
    rot = {5: torch.einsum("dc,chw->dhw", q, maps_src[5])}, {5: torch.einsum("dc,chw->dhw", q, maps_trg[5])}
    rows = np.arange(16)
    plain = co_pca_layers(maps_src, maps_trg, {5: 6})
    rotated = co_pca_layers(*rot, {5: 6})
    nn_plain = nearest_patches(plain[0][5].reshape(6, -1).T, plain[1][5].reshape(6, -1).T, rows)
    nn_rot = nearest_patches(rotated[0][5].reshape(6, -1).T, rotated[1][5].reshape(6, -1).T, rows)
    assert nn_plain.tolist() == nn_rot.tolist()
    dino_src, dino_trg = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    q8 = _rotation(8, 3).float()
    sd = torch.randn(16, 6, generator=gen)
    assert (nearest_patches(fuse(sd, dino_src), fuse(sd, dino_trg), rows).tolist()
            == nearest_patches(fuse(sd, dino_src @ q8), fuse(sd, dino_trg @ q8), rows).tolist())


def test_assembly_order_is_8_5_2_with_two_step_upsampling():
    grid = 8
    maps = {8: torch.full((3, 8, 8), 8.0), 5: torch.full((2, 4, 4), 5.0), 2: torch.randn(4, 2, 2)}
    desc = assemble_sd(maps, (2, 5, 8), grid)
    assert desc.shape == (64, 9)
    assert (desc[:, :3] == 8).all() and (desc[:, 3:5] == 5).all()
    two_step = F.interpolate(F.interpolate(maps[2][None], size=(4, 4), mode="bilinear"), size=(8, 8), mode="bilinear")[0]
    one_step = F.interpolate(maps[2][None], size=(8, 8), mode="bilinear")[0]
    assert torch.allclose(desc[:, 5:], two_step.reshape(4, -1).T)
    assert not torch.allclose(desc[:, 5:], one_step.reshape(4, -1).T)
    subset = assemble_sd(maps, (2, 8), grid)
    assert subset.shape == (64, 7) and torch.allclose(subset[:, 3:], two_step.reshape(4, -1).T)
    assert torch.equal(assemble_sd(maps, (8,), grid), maps[8].reshape(3, -1).T)
    with pytest.raises(ConfigError):
        assemble_sd(maps, (11,), grid)


def test_fusion_alpha_extremes_equal_single_features():
    gen = torch.Generator().manual_seed(4)
    sd_s, sd_t = torch.randn(25, 6, generator=gen), torch.randn(25, 6, generator=gen)
    di_s, di_t = torch.randn(25, 9, generator=gen), torch.randn(25, 9, generator=gen)
    rows = np.arange(25)
    sd_only = nearest_patches(sd_s, sd_t, rows)
    dino_only = nearest_patches(di_s, di_t, rows)
    assert nearest_patches(fuse(sd_s, di_s, 1.0), fuse(sd_t, di_t, 1.0), rows).tolist() == sd_only.tolist()
    assert nearest_patches(fuse(sd_s, di_s, 0.0), fuse(sd_t, di_t, 0.0), rows).tolist() == dino_only.tolist()
    assert sd_only.tolist() != dino_only.tolist()
    norms = fuse(sd_s, di_s, 0.8).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, (0.8 ** 2 + 0.2 ** 2) ** 0.5))
    with pytest.raises(ConfigError):
        fuse(sd_s, di_s, 1.5)


def test_match_keypoints_on_a_shifted_one_hot_grid():
    grid, frame = 4, 56
    src = torch.eye(16)
    trg = torch.roll(src, shifts=1, dims=0)             # target token t+1 equals source token t
    kps = np.array([[20.0, 3.0], [50.0, 50.0]])          # cells (1, 0) → index 1; (3, 3) → index 15
    pred = match_keypoints(src, trg, kps, grid, frame)
    # index 1 → target 2 = cell (2, 0); index 15 → target 0 = cell (0, 0)
    assert pred.tolist() == [[2 * 14 + 6.5, 6.5], [6.5, 6.5]]
    assert np.allclose(l2_normalize(torch.tensor([[3.0, 4.0]])), [[0.6, 0.8]])
