"""Notebook kernels of runs side by side cannot take each other's ports: on POSIX each kernel listens on
Unix sockets in a folder private to its run, read back here from Linux's socket tables."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/net/unix").exists(),
                                reason="LINUX-ONLY TESTS NOT RUN: they read the kernel's sockets from /proc/net")


KERNEL_PROBE = r'''
import json, os, sys
mine = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        mine.add(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:                                    # the descriptor listdir itself had open
        pass
def listening(table, inode_col, state_col, state, path_col=None):
    rows = [line.split() for line in open(table).read().splitlines()[1:]]
    return [(row[path_col] if path_col is not None and len(row) > path_col else row[1])
            for row in rows if row[state_col] == state and f"socket:[{row[inode_col]}]" in mine]
tcp = [int(address.split(":")[1], 16)
       for address in listening("/proc/net/tcp", 9, 3, "0A") + listening("/proc/net/tcp6", 9, 3, "0A")]
unix = listening("/proc/net/unix", 6, 3, "00010000", path_col=7)
folders = {os.path.dirname(path) for path in unix}
json.dump({"tcp": tcp, "unix": sorted(unix), "output_pipe": sys.stdout.pub_thread._pipe_port,
           "modes": {f: os.stat(f).st_mode & 0o777 for f in folders}}, open("sockets.json", "w"))
'''
"""A cell that writes the sockets its own kernel listens on, read from Linux's socket tables
(``/proc/net/tcp``: state 0A is LISTEN, the inode is column 9; ``/proc/net/unix``: flags 00010000 mark a
listening socket, the inode is column 6 and the path column 7) and kept to the kernel's own descriptors;
and the port of ipykernel's pipe for subprocess output, which the kernel binds itself (no race: it
retries another port when one is taken) and which no client connects to."""


def _probe_kernel_sockets(tmp_path: Path, monkeypatch) -> dict:
    from sdfuse.book import runner

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(KERNEL_PROBE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(notebook, notebooks / "probe.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", notebooks)
    page = tmp_path / "book" / "tables" / "probe.ipynb"
    page.parent.mkdir(parents=True)
    assert runner._run_papermill("probe", {}, page, "python3", set()) is None
    return json.loads((page.parent / "sockets.json").read_text())


def test_notebook_kernels_listen_on_unix_sockets_in_a_private_folder_not_on_tcp_ports(tmp_path, monkeypatch):
    """Two runs (a parallel test, a second reproduce) cannot take each other's kernel ports: over TCP,
    jupyter_client releases the free ports it found before the kernel binds them."""
    sockets = _probe_kernel_sockets(tmp_path, monkeypatch)
    assert sockets["tcp"] == [sockets["output_pipe"]]
    folder = os.path.dirname(sockets["unix"][0])
    assert sockets["unix"] == [os.path.join(folder, f"kernel-{n}") for n in range(1, 6)]
    assert Path(folder).parent == Path(tempfile.gettempdir())
    assert Path(folder).name.startswith("sdfuse-kernel-")
    assert sockets["modes"] == {folder: 0o700}                    # no other user can reach the kernel
    assert not Path(folder).exists()                               # removed with the kernel


def test_a_temporary_folder_too_long_for_unix_sockets_gives_the_kernel_tcp_ports(tmp_path, monkeypatch):
    """A socket's path holds at most 107 bytes; in a 76-byte folder, ``…/sdfuse-kernel-XXXXXXXX/kernel-5`` has 108."""
    deep = tmp_path / ("d" * (76 - len(str(tmp_path)) - 1))
    deep.mkdir()
    assert len(os.fsencode(deep)) + len("/sdfuse-kernel-12345678/kernel-5") == 108
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    sockets = _probe_kernel_sockets(tmp_path, monkeypatch)
    assert len(set(sockets["tcp"]) - {sockets["output_pipe"]}) == 5 and sockets["unix"] == []
    assert list(deep.iterdir()) == []
