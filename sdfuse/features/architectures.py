"""Model configurations: Stable Diffusion v1.5's published shapes and the smoke profile's tiny twins.

The SD v1.5 values are those of the ``unet/``, ``vae/`` and ``text_encoder/config.json`` files of
the SD v1.5 repository; they let the rehearsal profile, tests and benchmarks build the real-size
architectures (on the ``meta`` device, or with random weights) without downloading anything. The smoke configs keep
the *module structure* (4 down/up blocks, cross-attention in 3 of each, 2 ResNets per down block,
3 per up block) so the same hook points run, with tiny widths.
"""
from __future__ import annotations

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
SD15_TEXT_ENCODER = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
"""CLIP ViT-L/14's text tower as in SD v1.5's ``text_encoder/config.json`` (its legacy special-token ids included)."""
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
)

SMOKE_UNET = dict(
    SD15_UNET, sample_size=16, block_out_channels=(16, 16, 32, 32),
    cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8,
)
SMOKE_VAE = dict(SD15_VAE, layers_per_block=1, sample_size=128, block_out_channels=(8, 16, 16, 16), norm_num_groups=8)
SMOKE_TEXT_ENCODER = dict(
    vocab_size=64, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=2,
)
SMOKE_DINO = dict(embed_dim=48, depth=12, num_heads=3)
"""Tiny DINOv2: ViT-B/14's 12 blocks (so block indices 9 and 11 stay valid), 48 channels."""
