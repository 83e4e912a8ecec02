"""Crafted dataset archives through ``sdfuse data fetch``: each trick is refused, nothing lands outside
the data root (the file system around it is compared before and after), nothing is unpacked, the
archive is quarantined and never recorded as trusted in ``sdfuse-data.lock.json``.

The PATH_MAX symlink chain is CVE-2025-4517 (CPython gh-135034): ``tarfile``'s ``filter="data"`` on
the Python this project runs on lets it write outside the destination; the first test proves that
the archive is a real attack here, so that its refusal below means something.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest

from sdfuse.cli import main
from sdfuse.data.archives import MAX_LINK_HOPS, UnsafeArchiveError, installed_files, unpack
from sdfuse.errors import DatasetError

from .test_data_cli import env, fetch, write_dataset  # noqa: F401 - env is a fixture

NAME, ARCHIVE = "mini", "mini.tar"


def _tar(*members: tuple) -> bytes:
    """A tar of (name, type, linkname or data) members; devices get major/minor 1/3."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644, 0
            data = None
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = extra
            elif kind == tarfile.REGTYPE:
                data = extra
                info.size = len(data)
            elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _zip(*members: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, data, unix mode) members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)             # zipfile warns about a duplicate name
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zipped.writestr(info, data)
    return buffer.getvalue()


def _path_max_chain(escape_to: str, write: bool) -> bytes:
    """CVE-2025-4517: 16 links to 247-character folders, so that the last link's path overflows PATH_MAX
    and ``realpath`` stops resolving; an 'escape' link through it then points at ``escape_to``, and with
    ``write`` a file is written through 'escape' (the published attack)."""
    folder, steps, members, path = "d" * 247, "abcdefghijklmnop", [], ""
    for step in steps:
        members += [(os.path.join(path, folder), tarfile.DIRTYPE, None),
                    (os.path.join(path, step), tarfile.SYMTYPE, folder)]
        path = os.path.join(path, folder)
    long_link = os.path.join(*steps, "l" * 254)              # through the links (a write-through)...
    placed = long_link if write else os.path.join(path, "l" * 254)   # ...or at the real folder it resolves to
    members.append((placed, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps))))
    members.append(("escape", tarfile.SYMTYPE, f"{long_link}/../{escape_to}"))
    if write:
        members.append(("escape/evil.txt", tarfile.REGTYPE, b"written through the chain"))
    return _tar(*members)


def _snapshot(top: Path) -> dict[str, object]:
    """Every path under ``top`` (links not followed): file bytes, link targets, folders."""
    seen = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder) / name
            relative = str(path.relative_to(top))
            if path.is_symlink():
                seen[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[relative] = "dir"
            else:
                seen[relative] = path.read_bytes()
    return seen


@pytest.fixture
def place(env, tmp_path):  # noqa: F811 - the imported fixture
    """Put an archive in ``downloads/`` by hand (a first-use manifest entry without URLs) and a victim
    folder beside the data root; returns a function that writes the archive and the manifest."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"original")

    def put(data: bytes, archive: str = ARCHIVE, unpack: str = "tar") -> Path:
        downloads = env.root / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        (downloads / archive).write_bytes(data)
        write_dataset(env, files=[{"archive": archive, "urls": ["http://127.0.0.1:9/never-contacted"], "unpack": unpack, "size_bytes": None,
                                   "sha256": None}])
        return downloads / archive

    put.outside = outside
    return put


def _assert_refused(env, tmp_path, capsys, archive: Path, before: dict, why: str) -> None:  # noqa: F811
    """Exit 2 with the reason, nothing written anywhere but the archive's move to quarantine, no lock."""
    data = archive.read_bytes()
    capsys.readouterr()
    assert fetch(env) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "refused, it is unsafe to unpack" in err and why in err, err
    assert "Traceback" not in err
    assert not (env.root / "sdfuse-data.lock.json").exists()
    after = _snapshot(tmp_path)
    quarantined = [k for k in after if k.startswith("data/quarantine/") and k.count("/") == 2]
    assert len(quarantined) == 1 and after[quarantined[0]] == data
    expected = {k: v for k, v in before.items() if k != str(archive.relative_to(tmp_path))}
    expected.update({"data/quarantine": "dir", quarantined[0]: data})
    assert after == expected                                   # nothing else, inside the root or outside it


TAR_TRICKS = {
    "dot-dot": ([("Mini/ok.txt", tarfile.REGTYPE, b"ok"), ("../outside/evil.txt", tarfile.REGTYPE, b"evil")],
                "climbs out with '..'"),
    "dot-dot inside a name": ([("Mini/../../outside/evil.txt", tarfile.REGTYPE, b"evil")], "climbs out with '..'"),
    "absolute path": ([("{outside}/evil.txt", tarfile.REGTYPE, b"evil")], "has an absolute path"),
    "symlink out, then a write through it": (
        [("Mini", tarfile.SYMTYPE, "../outside"), ("Mini/evil.txt", tarfile.REGTYPE, b"evil")],
        "lies below 'Mini', which is a symlink"),
    "symlink inside, then a write through it": (
        [("Mini/real", tarfile.DIRTYPE, None), ("Mini/alias", tarfile.SYMTYPE, "real"),
         ("Mini/alias/x.txt", tarfile.REGTYPE, b"x")], "lies below 'Mini/alias', which is a symlink"),
    "symlink that leads out": ([("Mini/link", tarfile.SYMTYPE, "../../outside/victim.txt")],
                               "symbolic link that leads outside"),
    "absolute symlink": ([("Mini/link", tarfile.SYMTYPE, "{outside}/victim.txt")], "has an absolute path as its target"),
    "symlink chain that leads out": (
        [("Mini/a", tarfile.SYMTYPE, "b/.."), ("Mini/b", tarfile.SYMTYPE, "."), ("Mini/c", tarfile.SYMTYPE, "a/../..")],
        "symbolic link that leads outside"),
    "symlink loop": ([("Mini/a", tarfile.SYMTYPE, "b"), ("Mini/b", tarfile.SYMTYPE, "a")],
                     f"through more than {MAX_LINK_HOPS} others"),
    "empty-named symlink (CPython gh-149486)": ([("", tarfile.SYMTYPE, ".."), ("evil.txt", tarfile.REGTYPE, b"e")],
                                                "has an empty name"),
    "hard link out (relative)": ([("Mini/hl", tarfile.LNKTYPE, "../outside/victim.txt")], "hard link that climbs out"),
    "hard link out (absolute)": ([("Mini/hl", tarfile.LNKTYPE, "{outside}/victim.txt")], "has an absolute path"),
    "hard link to a symlink": ([("Mini/s", tarfile.SYMTYPE, "x"), ("Mini/hl", tarfile.LNKTYPE, "Mini/s")],
                               "not an earlier regular file"),
    "hard link to a later file": ([("Mini/hl", tarfile.LNKTYPE, "Mini/f"), ("Mini/f", tarfile.REGTYPE, b"f")],
                                  "not an earlier regular file"),
    "character device": ([("Mini/null", tarfile.CHRTYPE, None)], "is a character device"),
    "block device": ([("Mini/disk", tarfile.BLKTYPE, None)], "is a block device"),
    "FIFO": ([("Mini/pipe", tarfile.FIFOTYPE, None)], "is a FIFO"),
    "a file replaced by a symlink": ([("Mini/a.jpg", tarfile.REGTYPE, b"jpg"),
                                      ("Mini/a.jpg", tarfile.SYMTYPE, "../../outside/victim.txt")], "appears twice"),
    "a file below a file": ([("Mini/f", tarfile.REGTYPE, b"f"), ("Mini/f/g", tarfile.REGTYPE, b"g")],
                            "lies below 'Mini/f', which is a file"),
    "backslash name": ([("Mini\\..\\..\\evil.txt", tarfile.REGTYPE, b"e")], "backslash"),
    "name component over 255 bytes": ([("Mini/" + "n" * 256, tarfile.REGTYPE, b"e")], "over 255 bytes"),
}


@pytest.mark.parametrize("case", TAR_TRICKS, ids=list(TAR_TRICKS))
def test_crafted_tar_is_refused_and_nothing_is_written(case, env, place, tmp_path, capsys):  # noqa: F811
    members, why = TAR_TRICKS[case]
    outside = str(place.outside)
    members = [(name.format(outside=outside), kind, extra.format(outside=outside) if isinstance(extra, str) else extra)
               for name, kind, extra in members]
    archive = place(_tar(*members))
    _assert_refused(env, tmp_path, capsys, archive, _snapshot(tmp_path), why)


def test_the_path_max_chain_escapes_tarfiles_data_filter_on_this_python(tmp_path):
    """The attack is real here (else the next test would prove nothing); skipped only on a fixed Python."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    with tarfile.open(fileobj=io.BytesIO(_path_max_chain("outside", write=True))) as tar:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError:
            pytest.skip("this Python's tarfile has the gh-135034 fix: the chain is refused by filter='data' too")
    assert (outside / "evil.txt").read_bytes() == b"written through the chain"


@pytest.mark.parametrize("write", [True, False], ids=["write through the chain", "link through the chain"])
def test_path_max_symlink_chain_is_refused(write, env, place, tmp_path, capsys):  # noqa: F811
    archive = place(_path_max_chain("outside", write=write))
    why = "which is a symlink: it would be written through it" if write else "symbolic link that leads outside"
    _assert_refused(env, tmp_path, capsys, archive, _snapshot(tmp_path), why)


ZIP_TRICKS = {
    "zip slip": ([("Mini/ok.txt", b"ok", 0o100644), ("../outside/evil.txt", b"evil", 0o100644)], "zip slip"),
    "zip slip inside a name": ([("Mini/../../outside/evil.txt", b"evil", 0o100644)], "zip slip"),
    "absolute name": ([("{outside}/evil.txt", b"evil", 0o100644)], "has an absolute path"),
    "drive letter": ([("C:/evil.txt", b"evil", 0o100644)], "has an absolute path"),
    "symlink entry": ([("Mini/link", b"../../outside/victim.txt", 0o120777)], "is a symbolic link"),
    "FIFO entry": ([("Mini/pipe", b"", 0o010644)], "a device file, FIFO or socket"),
    "duplicate name": ([("Mini/a.txt", b"a", 0o100644), ("Mini/a.txt", b"b", 0o100644)], "appears twice"),
}


@pytest.mark.parametrize("case", ZIP_TRICKS, ids=list(ZIP_TRICKS))
def test_crafted_zip_is_refused_and_nothing_is_written(case, env, place, tmp_path, capsys):  # noqa: F811
    members, why = ZIP_TRICKS[case]
    members = [(name.format(outside=place.outside), data, mode) for name, data, mode in members]
    archive = place(_zip(*members), archive="mini.zip", unpack="zip")
    _assert_refused(env, tmp_path, capsys, archive, _snapshot(tmp_path), why)


def test_a_symlink_already_in_the_destination_is_never_written_through(env, place, tmp_path, capsys):  # noqa: F811
    archive = place(_tar(("Mini/JPEGImages/cat/a.jpg", tarfile.REGTYPE, b"a")))
    (env.root / "Mini").symlink_to(place.outside)               # left there by someone else
    before = _snapshot(tmp_path)
    assert fetch(env) == 2
    err = capsys.readouterr().err
    assert f"{env.root / 'Mini'} exists and is a symbolic link or a file" in err and "move it away" in err
    assert _snapshot(tmp_path) == before                       # the link's target was not touched
    assert not (env.root / "sdfuse-data.lock.json").exists()


def test_a_safe_archive_with_links_unpacks_exactly_under_the_umask(env, place, tmp_path, capsys):  # noqa: F811
    members = [("Mini/", tarfile.DIRTYPE, None), ("./Mini/JPEGImages/cat/a.jpg", tarfile.REGTYPE, b"first"),
               ("Mini/JPEGImages/cat/b.jpg", tarfile.LNKTYPE, "Mini/JPEGImages/cat/a.jpg"),
               ("Mini/Layout/large", tarfile.SYMTYPE, "small"),
               ("Mini/PairAnnotation/test/000-a-b:cat.json", tarfile.REGTYPE, b"{}"),
               ("Mini/Layout/small/test.txt", tarfile.REGTYPE, b"000-a-b:cat\n")]
    place(_tar(*members))
    old = os.umask(0o027)
    try:
        assert fetch(env) == 0
    finally:
        os.umask(old)
    mini = env.root / "Mini"
    assert (mini / "JPEGImages/cat/a.jpg").read_bytes() == (mini / "JPEGImages/cat/b.jpg").read_bytes() == b"first"
    assert os.readlink(mini / "Layout/large") == "small" and (mini / "Layout/large/test.txt").is_file()
    assert stat.S_IMODE((mini / "JPEGImages/cat/a.jpg").stat().st_mode) == 0o640     # 0644 under umask 027
    assert stat.S_IMODE((mini / "JPEGImages").stat().st_mode) == 0o750
    assert sorted(p.name for p in (mini / "JPEGImages/cat").iterdir()) == ["a.jpg", "b.jpg"]   # no temporary files
    assert "first use: recorded" in capsys.readouterr().out


def test_unpack_functions_refuse_before_writing_anything(tmp_path):
    dest = tmp_path / "dest"
    tar_path, zip_path = tmp_path / "a.tar", tmp_path / "a.zip"
    tar_path.write_bytes(_tar(("ok.txt", tarfile.REGTYPE, b"ok"), ("../evil.txt", tarfile.REGTYPE, b"evil")))
    zip_path.write_bytes(_zip(("ok.txt", b"ok", 0o100644), ("../evil.txt", b"evil", 0o100644)))
    for kind, path in (("tar", tar_path), ("zip", zip_path)):
        for check in (lambda: unpack(path, dest, kind), lambda: installed_files(path, kind)):
            with pytest.raises(UnsafeArchiveError, match="climbs out"):
                check()
        assert not dest.exists() and not (tmp_path / "evil.txt").exists()
    assert issubclass(UnsafeArchiveError, DatasetError)
    zip_path.write_bytes(_zip(("__MACOSX/._x", b"junk", 0o100644), ("x/y.txt", b"y", 0)))
    skip = lambda name: name.startswith("__MACOSX")  # noqa: E731
    assert installed_files(zip_path, "zip", skip) == [("x/y.txt", 1)]
    assert unpack(zip_path, dest, "zip", skip) == 1
    assert (dest / "x/y.txt").read_bytes() == b"y" and not (dest / "__MACOSX").exists()
    tar_path.write_bytes(_tar(("a:b.txt", tarfile.REGTYPE, b"colon"), ("c/1:cat.json", tarfile.REGTYPE, b"{}")))
    assert installed_files(tar_path, "tar") == [("a:b.txt", 5), ("c/1:cat.json", 2)]   # a colon is no drive letter


def test_verify_reports_a_kept_archive_that_is_unsafe(env, place, capsys):  # noqa: F811
    """An unsafe archive placed in downloads/ by hand after a good fetch: verify says so, reads nothing out."""
    archive = place(_tar(("Mini/JPEGImages/cat/a.jpg", tarfile.REGTYPE, b"a"),
                         ("../outside/victim.txt", tarfile.REGTYPE, b"evil")))
    (env.root / "Mini").mkdir()
    assert main(["data", "verify", NAME, "--root", str(env.root)]) == 1
    out = capsys.readouterr().out
    assert f"unsafe to unpack: {archive}: member '../outside/victim.txt' climbs out with '..'" in out
