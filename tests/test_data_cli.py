"""``sdfuse data list/fetch/verify`` against a local HTTP server and small manifests in tmp_path (no network)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from sdfuse.cli import main
from sdfuse.data.download import CHUNK_BYTES
from sdfuse.data.manifests import MANIFEST_DIR, load_manifest, manifest_names, validate_manifest

ARCHIVE = "mini.tar.gz"
KEY = f"mini/{ARCHIVE}"
LAYOUT = [{"path": "Mini/JPEGImages/*/", "count": 1}, {"path": "Mini/JPEGImages/cat/*.jpg", "count": 2},
          {"path": "Mini/PairAnnotation/test/*.json", "count": 1}, {"path": "Mini/Layout/small/test.txt"}]


def _members() -> dict[str, bytes]:
    """A tiny SPair-like dataset; one 256 KiB seeded image makes a partial download meaningful."""
    noise = np.random.default_rng(0).integers(0, 256, 256 * 1024, dtype=np.uint8).tobytes()
    return {"Mini/JPEGImages/cat/a.jpg": noise, "Mini/JPEGImages/cat/b.jpg": b"second image",
            "Mini/PairAnnotation/test/000-a-b:cat.json": json.dumps({"src_imname": "a.jpg"}).encode(),
            "Mini/Layout/small/test.txt": b"000-a-b:cat\n"}


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = _members()
TAR = _tar_gz(MEMBERS)
TAR_SHA = hashlib.sha256(TAR).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``state.files``; honours ``Range: bytes=N-`` when ``state.ranges``; can cut one reply short.
    Each request is logged before its reply is sent, so the log keeps the client's order (a threaded server
    could otherwise log a finished reply after the next request's)."""

    def do_GET(self) -> None:
        state = self.server.state
        body, wanted = state.files.get(self.path), self.headers.get("Range")
        if body is None:
            state.requests.append((self.path, wanted, 404, 0))
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1)) if wanted and state.ranges else 0
        if start >= len(body) > 0 and wanted:
            state.requests.append((self.path, wanted, 416, 0))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = body[start:state.cut_after] if state.cut_after else body[start:]
        state.cut_after = None
        state.requests.append((self.path, wanted, 206 if start else 200, len(payload)))
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread; ``state`` holds its files and request log."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = SimpleNamespace(files={f"/{ARCHIVE}": TAR}, ranges=True, cut_after=None, requests=[])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield SimpleNamespace(url=lambda name: f"{base}/{name}", base=base, state=httpd.state)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A manifest folder ($SDFUSE_MANIFESTS) and a data root, both in tmp_path."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    monkeypatch.setenv("SDFUSE_MANIFESTS", str(manifests))
    monkeypatch.delenv("SDFUSE_DATA_MIRROR", raising=False)
    return SimpleNamespace(manifests=manifests, root=tmp_path / "data")


def write_dataset(env, name: str = "mini", files: list[dict] | None = None, layout=None, folder="Mini") -> None:
    data = {"name": name, "kind": "dataset", "folder": folder, "files": files, "layout": layout or LAYOUT,
            "licence": "test data", "citation": "none", "how_to_get": "sdfuse data fetch"}
    (env.manifests / f"{name}.yaml").write_text(yaml.safe_dump(data))


def tar_entry(urls: list[str], sha256: str | None = None, **extra) -> dict:
    return {"archive": ARCHIVE, "urls": urls, "unpack": "tar", "size_bytes": len(TAR), "sha256": sha256, **extra}


def lock(env) -> dict:
    return json.loads((env.root / "sdfuse-data.lock.json").read_text())


def fetch(env, name: str = "mini", *extra: str) -> int:
    return main(["data", "fetch", name, "--root", str(env.root), *extra])


def verify(env, name: str = "mini") -> int:
    return main(["data", "verify", name, "--root", str(env.root)])


def test_fetch_tries_mirrors_in_order_unpacks_and_records_the_sha256(env, server, capsys):
    write_dataset(env, files=[tar_entry([server.url("gone.tar.gz"), server.url(ARCHIVE)])])
    assert fetch(env) == 0
    assert f"sha256 {TAR_SHA} (first use: recorded in {env.root / 'sdfuse-data.lock.json'})" in capsys.readouterr().out
    assert [(r[0], r[2]) for r in server.state.requests] == [("/gone.tar.gz", 404), (f"/{ARCHIVE}", 200)]
    for name, data in MEMBERS.items():
        assert (env.root / name).read_bytes() == data
    entry = lock(env)["files"][KEY]
    assert (entry["sha256"], entry["size_bytes"], entry["source"]) == (TAR_SHA, len(TAR), server.url(ARCHIVE))
    assert lock(env)["format"] == "sdfuse-data-lock/1"
    assert not (env.root / "downloads" / f"{ARCHIVE}.part").exists()

    assert fetch(env) == 0  # the kept archive is checked against the lock, not downloaded again
    assert "(matches the lock file)" in capsys.readouterr().out
    assert len(server.state.requests) == 2


def test_fetch_resumes_a_partial_download_with_a_range_request(env, server):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    part = env.root / "downloads" / f"{ARCHIVE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(TAR[:100_000])
    assert fetch(env) == 0
    assert server.state.requests == [(f"/{ARCHIVE}", "bytes=100000-", 206, len(TAR) - 100_000)]
    assert (env.root / "downloads" / ARCHIVE).read_bytes() == TAR
    assert lock(env)["files"][KEY]["sha256"] == TAR_SHA


def test_an_interrupted_download_is_resumed_by_the_next_fetch(env, server, capsys):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    server.state.cut_after = 200_000
    assert fetch(env) == 2
    part, kept = env.root / "downloads" / f"{ARCHIVE}.part", 200_000 // CHUNK_BYTES * CHUNK_BYTES
    err = capsys.readouterr().err
    assert f"the {kept} bytes received are kept in {part}. Run the same command again to resume" in err
    assert part.read_bytes() == TAR[:kept] and not (env.root / "sdfuse-data.lock.json").exists()
    assert fetch(env) == 0
    assert server.state.requests[-1] == (f"/{ARCHIVE}", f"bytes={kept}-", 206, len(TAR) - kept)
    assert lock(env)["files"][KEY]["sha256"] == TAR_SHA


def test_a_complete_part_file_is_not_downloaded_again(env, server):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    part = env.root / "downloads" / f"{ARCHIVE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(TAR)
    assert fetch(env) == 0
    assert server.state.requests == [(f"/{ARCHIVE}", f"bytes={len(TAR)}-", 416, 0)]
    assert lock(env)["files"][KEY]["sha256"] == TAR_SHA


def test_a_server_without_range_support_restarts_the_download(env, server):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    server.state.ranges = False
    part = env.root / "downloads" / f"{ARCHIVE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert fetch(env) == 0
    assert server.state.requests == [(f"/{ARCHIVE}", "bytes=1000-", 200, len(TAR))]
    assert (env.root / "downloads" / ARCHIVE).read_bytes() == TAR


def test_a_wrong_hash_is_refused_quarantined_and_nothing_is_unpacked(env, server, capsys):
    expected = hashlib.sha256(b"another archive").hexdigest()
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)], sha256=expected)])
    assert fetch(env) == 2
    err = capsys.readouterr().err
    assert f"expected sha256 {expected} (manifest), observed {TAR_SHA}" in err
    quarantined = env.root / "quarantine" / f"{ARCHIVE}.{TAR_SHA[:12]}"
    assert f"moved to {quarantined}" in err and quarantined.read_bytes() == TAR
    assert not (env.root / "Mini").exists()
    assert sorted(p.name for p in (env.root / "downloads").iterdir()) == []
    assert not (env.root / "sdfuse-data.lock.json").exists()


def test_a_manifest_sha256_wins_over_the_lock_and_is_not_copied_into_it(env, server, capsys):
    bogus = {"sha256": "0" * 64, "size_bytes": 1, "source": "x", "recorded_utc": "2020-01-01T00:00:00Z"}
    env.root.mkdir()
    (env.root / "sdfuse-data.lock.json").write_text(json.dumps({"format": "sdfuse-data-lock/1",
                                                               "files": {KEY: bogus}}))
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)], sha256=TAR_SHA)])
    assert fetch(env) == 0
    assert f"sha256 {TAR_SHA} (matches the manifest)" in capsys.readouterr().out
    assert lock(env)["files"] == {KEY: bogus}


def test_an_archive_changed_since_first_use_is_never_trusted_again(env, server, capsys):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    assert fetch(env) == 0
    archive = env.root / "downloads" / ARCHIVE
    archive.write_bytes(TAR + b"tampered")
    tampered = hashlib.sha256(TAR + b"tampered").hexdigest()
    capsys.readouterr()
    assert fetch(env) == 2
    err = capsys.readouterr().err
    assert f"expected sha256 {TAR_SHA} (lock file), observed {tampered}" in err and f"'{KEY}'" in err
    assert (env.root / "quarantine" / f"{ARCHIVE}.{tampered[:12]}").exists() and not archive.exists()
    assert lock(env)["files"][KEY]["sha256"] == TAR_SHA


def test_a_file_that_does_not_unpack_is_not_trusted(env, server, capsys):
    server.state.files[f"/{ARCHIVE}"] = b"<html>Google Drive can't scan this file for viruses</html>"
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    assert fetch(env) == 2
    assert f"cannot unpack {env.root / 'downloads' / ARCHIVE} as tar" in capsys.readouterr().err
    assert not (env.root / "sdfuse-data.lock.json").exists()


def test_verify_reports_a_deleted_file_and_a_resized_one(env, server, capsys):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    assert fetch(env) == 0
    capsys.readouterr()
    assert verify(env) == 0
    assert f"mini: ok ({env.root / 'Mini'})" in capsys.readouterr().out
    deleted, resized = env.root / "Mini/JPEGImages/cat/b.jpg", env.root / "Mini/Layout/small/test.txt"
    deleted.unlink()
    resized.write_bytes(b"000-a-b:cat\nextra\n")
    assert verify(env) == 1
    out = capsys.readouterr().out
    assert f"missing 1 file(s) of {ARCHIVE}:\n      {deleted}\n" in out
    assert f"{resized} (18 bytes, 12 in the archive)" in out
    assert f"{env.root / 'Mini/JPEGImages/cat/*.jpg'}: expected 2, found 1" in out
    assert f"to repair: sdfuse data fetch mini --root {env.root}" in out


def test_verify_reports_an_archive_corrupted_since_the_lock(env, server, capsys):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    assert fetch(env) == 0
    archive = env.root / "downloads" / ARCHIVE
    archive.write_bytes(b"\0" + TAR[1:])
    corrupted = hashlib.sha256(b"\0" + TAR[1:]).hexdigest()
    capsys.readouterr()
    assert verify(env) == 1
    out = capsys.readouterr().out
    assert f"corrupted: {archive}: expected sha256 {TAR_SHA} (lock file), observed {corrupted}" in out
    assert "1 problem(s)" in out and archive.exists()


def test_verify_of_a_missing_dataset_names_the_manifest_and_the_fetch_command(env, capsys):
    write_dataset(env, files=[tar_entry(["http://127.0.0.1:9/unused.tar.gz"])])
    assert verify(env) == 1
    out = capsys.readouterr().out
    assert (f"{env.root / 'Mini'} does not exist; see {env.manifests / 'mini.yaml'}; "
            f"get it with: sdfuse data fetch mini --root {env.root}") in out


def test_list_shows_kind_state_and_location(env, server, tmp_path, monkeypatch, capsys):
    write_dataset(env, files=[tar_entry([server.url(ARCHIVE)])])
    write_dataset(env, "absent", files=[tar_entry([server.url(ARCHIVE)])], folder="Absent")
    write_dataset(env, "partial", files=[tar_entry([server.url(ARCHIVE)])], folder="Mini",
                  layout=[{"path": "Mini/JPEGImages/cat/*.jpg", "count": 3}])
    for name, model_id in [("cached-model", "org/cached"), ("other-model", "org/other")]:
        (env.manifests / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "kind": "model", "model_id": model_id, "revision": "abc123", "licence": "MIT",
             "citation": "none", "how_to_get": "huggingface-cli download"}))
    hub = tmp_path / "hub"
    (hub / "models--org--cached" / "snapshots" / "abc123").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert fetch(env) == 0
    capsys.readouterr()
    assert main(["data", "list", "--root", str(env.root)]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[2:]
            if not line.startswith(" ")}
    assert rows == {"absent": ["dataset", "missing", str(env.root / "Absent")],
                    "cached-model": ["model", "present", str(hub / "models--org--cached/snapshots/abc123")],
                    "mini": ["dataset", "present", str(env.root / "Mini")],
                    "other-model": ["model", "missing", str(hub / "models--org--other")],
                    "partial": ["dataset", "incomplete", str(env.root / "Mini")]}
    main(["data", "list", "--root", str(env.root)])
    assert f"get it: sdfuse data fetch absent --root {env.root}" in capsys.readouterr().out


def test_google_drive_only_prints_instructions_then_takes_the_file_placed_by_hand(env, server, capsys):
    write_dataset(env, "gd", files=[{"archive": ARCHIVE, "urls": [], "gdrive_id": "0B-FakeDriveId", "unpack": "tar",
                                     "size_bytes": None, "sha256": None}])
    assert fetch(env, "gd") == 2
    err = capsys.readouterr().err
    target = env.root / "downloads" / ARCHIVE
    assert "open https://drive.google.com/uc?id=0B-FakeDriveId" in err
    assert f"save it as {target}" in err and f"sdfuse data verify gd --root {env.root}" in err
    assert server.state.requests == [] and not (env.root / "Mini").exists()

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(TAR)
    assert fetch(env, "gd") == 0
    assert lock(env)["files"][f"gd/{ARCHIVE}"]["source"].startswith("found in downloads/")
    assert verify(env, "gd") == 0


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_mirror_serves_a_google_drive_only_file(env, server, monkeypatch, how):
    write_dataset(env, "gd", files=[{"archive": ARCHIVE, "urls": [], "gdrive_id": "0B-FakeDriveId", "unpack": "tar",
                                     "size_bytes": None, "sha256": None}])
    extra = ["--mirror", server.base + "/"] if how == "option" else []
    if how == "environment":
        monkeypatch.setenv("SDFUSE_DATA_MIRROR", server.base)
    assert fetch(env, "gd", *extra) == 0
    assert lock(env)["files"][f"gd/{ARCHIVE}"]["source"] == server.url(ARCHIVE)


def test_zip_and_plain_files_install_without_macos_junk_and_csv_rows_are_counted(env, server, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("PF/JPEGImages/1.jpg", b"img")
        zipped.writestr("__MACOSX/PF/._1.jpg", b"junk")
    server.state.files.update({"/pf.zip": buffer.getvalue(), "/pairs.csv": b"src,trg\n1.jpg,1.jpg\n1.jpg,1.jpg\n"})
    files = [{"archive": "pf.zip", "urls": [server.url("pf.zip")], "unpack": "zip", "size_bytes": None,
              "sha256": None},
             {"archive": "pairs.csv", "urls": [server.url("pairs.csv")], "unpack": "none", "into": "PF",
              "size_bytes": None, "sha256": None}]
    write_dataset(env, "pf", files=files, folder="PF",
                  layout=[{"path": "PF/JPEGImages/*.jpg", "count": 1}, {"path": "PF/pairs.csv", "rows": 2}])
    assert fetch(env, "pf") == 0
    assert (env.root / "PF/pairs.csv").read_bytes() == server.state.files["/pairs.csv"]
    assert not (env.root / "__MACOSX").exists()
    assert sorted(lock(env)["files"]) == ["pf/pairs.csv", "pf/pf.zip"]
    write_dataset(env, "pf", files=files, folder="PF", layout=[{"path": "PF/pairs.csv", "rows": 3}])
    capsys.readouterr()
    assert verify(env, "pf") == 1
    assert f"{env.root / 'PF/pairs.csv'}: expected 3 data rows, found 2" in capsys.readouterr().out


def test_a_model_is_not_fetched_but_its_instructions_are_shown(env, capsys):
    (env.manifests / "m.yaml").write_text(yaml.safe_dump(
        {"name": "m", "kind": "model", "model_id": "org/m", "revision": None, "licence": "MIT", "citation": "none",
         "how_to_get": "huggingface-cli download org/m"}))
    assert fetch(env, "m") == 2
    assert "m is a model" in (err := capsys.readouterr().err) and "huggingface-cli download org/m" in err


@pytest.mark.parametrize("name", sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml")))
def test_every_repository_manifest_follows_the_schema(name, monkeypatch):
    monkeypatch.delenv("SDFUSE_MANIFESTS", raising=False)
    data = yaml.safe_load((MANIFEST_DIR / f"{name}.yaml").read_text())
    assert validate_manifest(data, name) == []
    assert load_manifest(name)["kind"] in ("dataset", "model")


def test_the_repository_manifests_carry_the_protocol_facts(monkeypatch):
    monkeypatch.delenv("SDFUSE_MANIFESTS", raising=False)
    assert manifest_names() == ["cub200", "dinov2-vitb14", "pfpascal", "spair71k", "stable-diffusion-v1-5", "tss"]
    counts = {name: {e["path"]: e.get("count") for e in load_manifest(name)["layout"]}
              for name in ("spair71k", "pfpascal", "tss")}
    assert counts["spair71k"]["SPair-71k/PairAnnotation/test/*.json"] == 12234
    assert counts["pfpascal"]["PF-dataset-PASCAL/Annotations/*/"] == 20
    assert sum(counts["tss"][f"TSS_CVPR2016/{s}/*/"] for s in ("FG3DCar", "JODS", "PASCAL")) == 400
    assert load_manifest("pfpascal")["layout"][2] == {"path": "PF-dataset-PASCAL/test_pairs_pf_pascal.csv",
                                                      "count": 1, "rows": 299}
    assert load_manifest("tss")["files"][0]["gdrive_id"] == "0B-VxeI7PlJE1U3FyTGVpbUFtcjg"
    cub = {f["archive"]: f for f in load_manifest("cub200")["files"]}
    assert cub["cachedir.tar.gz"]["md5"] == "89842f8937a136bfdd7106e80f88d30f"
    assert cub["CUB_200_2011.tgz"]["pages"] == ["https://data.caltech.edu/records/65de6-vvk27"]
    assert load_manifest("stable-diffusion-v1-5")["model_id"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"


VALID = {"name": "x", "kind": "dataset", "folder": "X", "licence": "l", "citation": "c", "how_to_get": "h",
         "files": [{"archive": "x.tgz", "urls": ["https://example.org/x.tgz"], "unpack": "tar", "size_bytes": None,
                    "sha256": None}],
         "layout": [{"path": "X/*.jpg", "count": 3}]}


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(kind="weights"), "kind must be one of ['dataset', 'model'], got 'weights'"),
    (lambda m: m.pop("licence"), "licence: missing"),
    (lambda m: m.update(name="y"), "name 'y' must equal the file name 'x'"),
    (lambda m: m["files"][0].update(sha256="abc"), "files[0].sha256: must be 64 lowercase hex digits or null"),
    (lambda m: m["files"][0].update(md5="A" * 32), "files[0].md5: must be 32 lowercase hex digits or null"),
    (lambda m: m["files"][0].update(sha265=None), "files[0].sha265: unknown key"),
    (lambda m: m["files"][0].pop("sha256"), "files[0].sha256: missing"),
    (lambda m: m["files"][0].update(urls=["ftp://example.org/x"]), "'ftp://example.org/x' is not an http(s) URL"),
    (lambda m: m["files"][0].update(urls=[]), "files[0]: needs a source: urls, gdrive_id or pages"),
    (lambda m: m["files"][0].update(unpack="rar"), "files[0].unpack: must be one of ['tar', 'zip', 'none']"),
    (lambda m: m["files"][0].update(into="../elsewhere"), "must be a relative path inside the data root"),
    (lambda m: m["files"][0].update(size_bytes="1 GB"), "files[0].size_bytes: str is not int or null"),
    (lambda m: m["layout"][0].update(count=-1), "layout[0].count: must be >= 0"),
    (lambda m: m.update(layout=[]), "layout: at least one expected path is needed"),
])
def test_the_schema_check_names_each_problem(change, message):
    manifest = json.loads(json.dumps(VALID))
    assert validate_manifest(manifest, "x") == []
    change(manifest)
    assert any(message in problem for problem in validate_manifest(manifest, "x")), validate_manifest(manifest, "x")


def test_a_broken_manifest_is_an_error_that_names_the_file(env, capsys):
    (env.manifests / "x.yaml").write_text(yaml.safe_dump({**VALID, "kind": "weights"}))
    assert main(["data", "verify", "x", "--root", str(env.root)]) == 2
    assert f"{env.manifests / 'x.yaml'} does not follow the manifest schema" in capsys.readouterr().err
