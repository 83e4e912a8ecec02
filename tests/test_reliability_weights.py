"""Missing weights offline fail at once with what to do; weight files are never unpickled."""
from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from sdfuse.cli import main
from sdfuse.errors import UnsafeWeightsError
from sdfuse.features.captioner import load_captioner, read_captioner_state

PACKAGE = Path(__file__).resolve().parents[1] / "sdfuse"

OFFLINE_PROBE = """
import json, sys
from sdfuse.cli import main
from sdfuse.features.dino import DinoConfig, load_dino_model
code = main(["extract", "--profile", "paper", "-p", "data_root='" + sys.argv[1] + "'", "-p", "device='cpu'",
             "-p", "cache_dir='" + sys.argv[2] + "'"])
try:
    load_dino_model(DinoConfig())
    dino = "loaded"
except Exception as error:
    dino = type(error).__name__ + ": " + str(error)
print(json.dumps({"code": code, "dino": dino}))
"""


@pytest.fixture
def silent_hub():
    """A 'hub' that accepts TCP connections and never answers: the worst case, a black-holed network.

    Yields its URL and the list of connections it accepted (held open, unanswered, until the test ends)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_paper_profile_without_weights_fails_at_once_offline(smoke_root, tmp_path, silent_hub):
    hub, accepted = silent_hub
    hf_home = tmp_path / "hf"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE")}
    env |= {"HF_HOME": str(hf_home), "HF_ENDPOINT": hub, "SDFUSE_HUB_TIMEOUT": "1"}
    done = subprocess.run([sys.executable, "-c", OFFLINE_PROBE, str(smoke_root / "SPair-71k"), str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 2
    # huggingface_hub alone retries each request (≈ 25 s per model without a network); the one probe gives up
    # after SDFUSE_HUB_TIMEOUT = 1 s, its answer is kept for the process, and no model download is attempted:
    # the hub saw one connection for the SD weights and none for DINOv2 (the time itself is the benchmark's).
    assert len(accepted) == 1, accepted
    err = done.stderr
    assert "error: Cannot load the sd weights 'stable-diffusion-v1-5/stable-diffusion-v1-5' (revision " \
           "451f4fe16113bff5a5d2269ed5ad43b0592e9a14)" in err
    assert f"it is not in the Hugging Face cache ({hf_home / 'hub'}) and the hub {hub} did not answer" in err
    assert "huggingface-cli download stable-diffusion-v1-5/stable-diffusion-v1-5 --revision 451f4fe" in err
    assert "-p sd_model=/path/to/folder" in err
    assert "Cannot load the dino weights 'timm/vit_base_patch14_dinov2.lvd142m'" in result["dino"]
    assert not hf_home.exists() or [p for p in hf_home.rglob("*") if p.is_file()] == []  # nothing half-downloaded
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").rglob("*.safetensors")) == []


def test_hf_hub_offline_fails_without_any_probe(monkeypatch, tmp_path):
    import sdfuse.features.weights as weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "hub_unreachable", lambda *a: pytest.fail("no network probe when offline"))
    with pytest.raises(weights.WeightsNotFoundError, match="HF_HUB_OFFLINE is set"):
        weights.local_weights("org/absent-model", "abc123", "sd")


def test_a_cached_snapshot_loads_without_network(monkeypatch, tmp_path):
    """A hub id whose revision is in the HF cache resolves to the snapshot folder, local only."""
    import huggingface_hub.constants

    import sdfuse.features.weights as weights

    repo = tmp_path / "models--org--m"
    (repo / "snapshots" / "c0ffee").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c0ffee")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "hub_unreachable", lambda *a: pytest.fail("no network probe for a cached model"))
    assert weights.local_weights("org/m", None, "sd") == (str(repo / "snapshots" / "c0ffee"), True)
    assert weights.local_weights("org/m", "c0ffee", "sd") == (str(repo / "snapshots" / "c0ffee"), True)


def _fake_hub_cache(cache: Path, model_id: str, folder: Path, commit: str = "0123abcd") -> Path:
    """``folder``'s files as the Hugging Face cache stores a snapshot: blobs, symlinks, refs/main."""
    repo = cache / f"models--{model_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in (f for f in folder.rglob("*") if f.is_file()):
        blob = repo / "blobs" / hashlib.sha256(str(file.relative_to(folder)).encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_models_in_the_hub_cache_load_offline_through_the_hub_id(smoke_root, tmp_path, monkeypatch):
    import huggingface_hub.constants

    import sdfuse.features.weights as weights
    from sdfuse.features.dino import DinoConfig, DinoFeatureExtractor, load_dino_model
    from sdfuse.features.sd import SDConfig, load_sd_models
    from sdfuse.data.images import open_rgb

    _fake_hub_cache(tmp_path, "org/tiny-dino", smoke_root / "models" / "dino")
    _fake_hub_cache(tmp_path, "org/tiny-sd", smoke_root / "models" / "sd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "hub_unreachable", lambda *a: pytest.fail("no network probe for a cached model"))
    hub = DinoConfig(model="org/tiny-dino", grid=12)
    assert hub.fingerprint()["model"] == "hub:org/tiny-dino@0123abcd"
    image = open_rgb(smoke_root / "SPair-71k" / "JPEGImages" / "terrain" / "terrain_01.jpg")
    from_hub = DinoFeatureExtractor(hub, load_dino_model(hub)).extract(image)[11]
    local = DinoConfig(model=str(smoke_root / "models" / "dino"), grid=12)
    assert torch.equal(from_hub, DinoFeatureExtractor(local, load_dino_model(local)).extract(image)[11])
    models = load_sd_models(SDConfig(model="org/tiny-sd", revision="0123abcd", grid=12, crop=128))
    assert list(models.unet.config.block_out_channels) == [16, 16, 32, 32]


class Payload:
    """Pickles to a call of os.mkdir(marker): unpickling it would run code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_malicious_pickle_as_captioner_checkpoint_is_refused_without_running(smoke_root, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "odise_label_coco_50e-b67d2efc.pth"
    torch.save({"model": {"backbone.feature_extractor.alpha_cond": Payload(marker)}}, evil)
    with pytest.raises(UnsafeWeightsError, match=f"refused to load {evil}: it holds Python objects other than"):
        read_captioner_state(str(evil))
    with pytest.raises(UnsafeWeightsError):
        load_captioner(str(evil), "openai/clip-vit-large-patch14-336", time_dim=64)
    assert main(["extract", "-p", "sd_conditioning='implicit'", "-p", f"captioner_checkpoint='{evil}'",
                 "-p", f"cache_dir='{tmp_path / 'cache'}'"]) == 2
    err = capsys.readouterr().err
    assert f"error: refused to load {evil}" in err and "unsupported GLOBAL posix.mkdir" in err
    assert not marker.exists()                                     # the payload never ran
    with open(evil, "rb") as handle:                               # (and it would have: it is a real payload)
        assert b"mkdir" in handle.read()
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with pytest.raises(UnsafeWeightsError):
        read_captioner_state(str(pickled))
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_weights_are_read_only_from_safetensors_or_with_weights_only():
    """Every torch.load passes weights_only=True; every model from_pretrained passes use_safetensors=True;
    nothing unpickles (pickle.load, numpy allow_pickle) anywhere in the library."""
    checked = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for call, name in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            where = f"{path.relative_to(PACKAGE.parent)}:{call.lineno}"
            if name == "torch.load":
                assert keywords.get("weights_only") == "True", where
                checked.append(where)
            elif name.endswith(".from_pretrained") and not any(s in name for s in ("Tokenizer", "Scheduler")):
                assert keywords.get("use_safetensors") == "True", where
                checked.append(where)
            assert name not in ("pickle.load", "pickle.loads", "torch.jit.load"), where
            assert keywords.get("allow_pickle") != "True", where
    assert len(checked) >= 5, checked                              # UNet, VAE, text encoder, CLIP, ODISE checkpoint
    import inspect

    from timm.models import _helpers, _hub                         # DINOv2 loads through timm: safetensors first,
    for loader in (_helpers.load_state_dict, _hub.load_state_dict_from_hf, _helpers._torch_load):  # else weights_only
        assert inspect.signature(loader).parameters["weights_only"].default is True, loader
