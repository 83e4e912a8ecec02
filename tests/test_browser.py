"""The built book in a real browser: served on 127.0.0.1, rendered by headless Chromium.

Checks that the landing page, every table page, the status and run pages render with their
tables and images, that no internal link or image is broken, and saves screenshots under
``_build/screenshots/``. Chromium is Debian's ``chromium`` package: found on PATH, or installed
with apt-get when running as root (as CI does).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import urlopen

import pytest

from sdfuse.runner import NOTEBOOKS, SUMMARY_NOTEBOOKS

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


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


@pytest.fixture(scope="module")
def site(built_book):
    html = built_book / "_build" / "html"
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", html
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if tag in ("a", "img", "link", "script") and attrs.get(key):
                self.links.append(attrs[key])


def _browser(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args],
                              capture_output=True, text=True, timeout=120)


PAGES = ["book/intro", "book/protocol"] + [f"book/tables/{stem}" for stem in [*NOTEBOOKS.values(), *SUMMARY_NOTEBOOKS.values()]]


def test_pages_render_with_tables_and_images(chromium, site, built_book):
    base, html = site
    shots = built_book / "_build" / "screenshots"
    shots.mkdir(exist_ok=True)
    landing = _browser(chromium, "--dump-dom", base)
    assert "A Tale of Two Features" in landing.stdout and "Headline of this build" in landing.stdout
    for page in PAGES:
        dom = _browser(chromium, "--dump-dom", base + page + ".html").stdout
        assert "<h1" in dom and "sdfuse" in dom, page
        if page.startswith("book/tables/"):
            assert "<table" in dom, page
        if page.removeprefix("book/tables/") in NOTEBOOKS.values():
            assert "<img" in dom and "Smoke profile: these numbers are NOT the paper" in dom, page
        name = page.replace("/", "_")
        _browser(chromium, "--window-size=1280,1600", f"--screenshot={shots / name}.png", base + page + ".html")
        assert (shots / f"{name}.png").stat().st_size > 10_000, page


def test_no_broken_internal_links(site):
    base, html = site
    checked, broken = set(), []
    pages = [f for f in sorted(html.rglob("*.html")) if f.relative_to(html).parts[0] not in ("_static", "_sources")]
    assert len(pages) >= len(PAGES) + 2           # + index and search
    for file in pages:
        page_url = base + file.relative_to(html).as_posix()
        parser = _Links()
        parser.feed(file.read_text(errors="replace"))
        for link in parser.links:
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
