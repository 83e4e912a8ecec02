"""The built book in a real browser: served on 127.0.0.1, rendered by headless Chromium.

On every page of the table of contents: it renders (tables, figures, the smoke banner), no code cell
input is visible (each is removed, or folded under a closed "How this page was computed" toggle), no
machine path appears in its text or links, no internal link or image is broken, and a screenshot is
saved under ``_build/screenshots/``. The landing page shows the one-glance summary, the run page links
to the results bundle and the server serves it with every CSV. A second, small book, built after
``sdfuse reproduce --only table1`` on a fresh copy of the sources, builds strictly and says "not run
yet", with the command that runs it, on every page whose notebook has not run. Chromium is Debian's
``chromium`` package: found on PATH, or installed with apt-get when running as root (as CI does).
"""
from __future__ import annotations

import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import urlopen

import pandas as pd
import pytest
import yaml

from sdfuse.book.runner import COMPUTED, SUMMARY_NOTEBOOKS, reproduce
from sdfuse.book.status import TABLES
from sdfuse.cli import main
from sdfuse.profiles.parameters import NOTEBOOKS

from .conftest import ROOT

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
MACHINE_PATHS = ("/tmp/", "/work/", "/home/", "/root/")


def _toc_pages() -> list[str]:
    """Every page of ``_toc.yml``: the root, then each chapter in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


PAGES = _toc_pages()


def _find_chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600, env=env)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        pytest.skip("BROWSER TEST NOT RUN: Debian's chromium is not installed and could not be installed "
                    "(not root, or no apt-get). Install it with `apt-get install chromium` to run this test.")
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def serve():
    """``serve(html_folder)`` → the base URL of a server for it, on 127.0.0.1, stopped after the module."""
    servers = []

    def start(html: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="module")
def site(built_book, serve):
    html = built_book / "_build" / "html"
    return serve(html), html


@pytest.fixture(scope="module")
def partial_book(smoke_root, tmp_path_factory) -> Path:
    """A fresh copy of the book's sources (no executed page, no results) after ``reproduce --only
    table1``, built strictly (the features come from the session's cache, which ``built_book`` filled)."""
    root = tmp_path_factory.mktemp("partial")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("tables"))
    runs = reproduce("smoke", only=["table1"], root=root)
    assert [(r.name, r.status) for r in runs] == [("table1", "ok"), ("status", "ok"), ("run", "ok")]
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return root


class _Page(HTMLParser):
    """A rendered page's DOM: its text (all of it, and what a closed ``<details>`` hides not), its links,
    and for each code cell input the summary of the closed ``<details>`` folding it (None: visible)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, dom: str):
        super().__init__()
        self.stack: list[dict] = []
        self.text: list[str] = []
        self.visible: list[str] = []
        self.links: list[str] = []
        self.inputs: list[str | None] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[key] for key in ("href", "src") if attrs.get(key)]
        if "cell_input" in (attrs.get("class") or "").split():
            folds = [e for e in self.stack if e["tag"] == "details" and not e["open"]]
            self.inputs.append("".join(folds[-1]["summary"]).strip().splitlines()[0] if folds else None)   # shown when closed
        if tag not in self.VOID:
            self.stack.append({"tag": tag, "open": "open" in attrs, "summary": []})

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)
        tags = [e["tag"] for e in self.stack]
        details = [e for e in self.stack if e["tag"] == "details"]
        if "summary" in tags and details:
            details[-1]["summary"].append(data)
        folded = any(not e["open"] for e in details) and "summary" not in tags
        if not folded and "script" not in tags and "style" not in tags:
            self.visible.append(data)

    @property
    def visible_text(self) -> str:
        return " ".join(" ".join(self.visible).split())


def _browser(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args],
                              capture_output=True, text=True, timeout=120)


def _render(chromium: str, url: str) -> tuple[str, _Page]:
    dom = _browser(chromium, "--dump-dom", url).stdout
    return dom, _Page(dom)


def _assert_no_machine_path(page: _Page, name: str, build_root: Path) -> None:
    text = " ".join(page.text)
    for needle in (*MACHINE_PATHS, str(build_root)):
        assert needle not in text, (name, needle, text[max(0, text.find(needle) - 200):text.find(needle) + 200])
        assert not [link for link in page.links if needle in link], (name, needle)


def test_every_page_reads_results_first_without_machine_paths(chromium, site, built_book):
    base, html = site
    shots = built_book / "_build" / "screenshots"
    shots.mkdir(exist_ok=True)
    for name in PAGES:
        dom, page = _render(chromium, base + name + ".html")
        assert "<h1" in dom and "sdfuse" in dom, name
        stem = name.removeprefix("book/tables/")
        if name.startswith("book/tables/"):
            assert "<table" in dom, name
            assert page.inputs and all(s is not None and s.startswith(COMPUTED) for s in page.inputs), (name, page.inputs)
            assert sum(s.endswith("the parameters of this run") for s in page.inputs) == 1, name   # papermill's cell
        else:
            assert not page.inputs, name
        if stem in NOTEBOOKS.values():
            assert "<img" in dom and "Smoke profile: these numbers are NOT the paper" in page.visible_text, name
        if name.startswith("book/tables/"):                    # Binder and Colab open the repository's notebook
            launch = [link for link in page.links if link.startswith(("https://mybinder.org", "https://colab"))]
            assert len(launch) == 2 and all(link.endswith(f"/notebooks/{stem}.ipynb") for link in launch), launch
            assert (ROOT / "notebooks" / f"{stem}.ipynb").is_file()
        _assert_no_machine_path(page, name, built_book)
        shot = shots / f"{name.replace('/', '_')}.png"
        _browser(chromium, "--window-size=1280,1600", f"--screenshot={shot}", base + name + ".html")
        assert shot.stat().st_size > 10_000, name
    assert sorted(p.stem for p in shots.glob("*.png")) == sorted(name.replace("/", "_") for name in PAGES)


def test_the_landing_page_summarises_every_table_with_links(chromium, site, built_book):
    base, html = site
    _, page = _render(chromium, base + "book/intro.html")
    text = page.visible_text
    assert "This build shows the smoke profile" in text
    table1 = pd.read_csv(built_book / "results" / "smoke" / "table1.csv").query(
        "setting == '2+5+8' and method == 'Fuse' and alpha == 0.1 and aggregate == 'category_mean' and category == 'all'")
    value, low, high = table1[["value", "ci_low", "ci_high"]].iloc[0]
    assert (f"Table 1: UNet layers 2+5+8 · Fuse · PCK@0.10 62.2 {value:.1f} [{low:.1f}, {high:.1f}] "
            "smoke run: not comparable") in text
    assert text.count("smoke run: not comparable") == len(TABLES)
    assert "not available" not in text
    for spec in TABLES:
        assert f"book/tables/{spec.notebook}.html" in {urljoin(base + "book/intro.html", link).removeprefix(base)
                                                         for link in page.links}, spec.key


def test_the_run_page_links_the_results_bundle_and_it_is_served(chromium, site, built_book):
    base, html = site
    url = base + "book/tables/99_run.html"
    _, page = _render(chromium, url)
    bundles = [link for link in page.links if link.endswith(".zip")]
    assert len(bundles) == 1 and "Results bundle: results/smoke.zip" in page.visible_text
    with urlopen(urljoin(url, bundles[0]), timeout=10) as response:
        names = zipfile.ZipFile(io.BytesIO(response.read())).namelist()
    results = built_book / "results" / "smoke"
    assert {f"smoke/{p.name}" for p in results.glob("*.csv")} <= set(names)
    assert {f"smoke/{p.name}" for p in results.glob("*.keypoints.csv.gz")} <= set(names)
    assert {"smoke/runs.json", "smoke/table1.provenance.json"} <= set(names)
    assert len([p for p in results.glob("*.csv")]) >= 9


def test_a_partial_run_builds_and_says_not_run_yet_with_the_command(chromium, partial_book, serve, capsys):
    base = serve(partial_book / "_build" / "html")
    shots = partial_book / "_build" / "screenshots"
    shots.mkdir()
    not_run = {stem: name for name, stem in NOTEBOOKS.items() if name != "table1"}
    for name in PAGES:
        dom, page = _render(chromium, base + name + ".html")
        assert "<h1" in dom, name
        _assert_no_machine_path(page, name, partial_book)
        stem = name.removeprefix("book/tables/")
        if stem in not_run:
            text = page.visible_text
            command = f"sdfuse reproduce --profile smoke --only {not_run[stem]}"
            assert "Not run yet: this page’s notebook has not been run in this book. To fill this page, run" in text
            assert command in text, (name, text)
            assert main(shlex.split(command)[1:] + ["--dry-run"]) == 0, capsys.readouterr().err
            _browser(chromium, "--window-size=1280,900", f"--screenshot={shots / stem}.png", base + name + ".html")
    _, intro = _render(chromium, base + "book/intro.html")
    assert re.search(r"Table 1: UNet layers 2\+5\+8 · Fuse · PCK@0.10 62.2 \d+\.\d \[\d+\.\d, \d+\.\d\] smoke run",
                     intro.visible_text)
    assert intro.visible_text.count("– not run") == len(TABLES) - 1
    assert len(list(shots.glob("*.png"))) == len(not_run)


def test_no_broken_internal_links(site):
    base, html = site
    checked, broken = set(), []
    pages = [f for f in sorted(html.rglob("*.html")) if f.relative_to(html).parts[0] not in ("_static", "_sources")]
    assert len(pages) >= len(PAGES) + 2           # + index and search
    for file in pages:
        page_url = base + file.relative_to(html).as_posix()
        for link in _Page(file.read_text(errors="replace")).links:
            target = urldefrag(urljoin(page_url, link)).url
            if urlparse(target).netloc != urlparse(base).netloc or target in checked:
                continue
            checked.add(target)
            try:
                with urlopen(target, timeout=10) as response:
                    assert response.status == 200
            except HTTPError as error:
                broken.append(f"{file.relative_to(html)} → {link} ({error.code})")
    assert not broken, broken
    assert len(checked) > 50
