"""Per-image backbone features: Stable Diffusion decoder layers and DINOv2 tokens, with a cache and
sharding of the extraction over processes (:mod:`.shard`)."""
