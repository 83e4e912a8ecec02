"""Display paths: what the book shows instead of a machine's absolute path (:mod:`sdfuse.data.paths`)."""
from __future__ import annotations

import sys

import pytest

from sdfuse.data.paths import REPO, book_folder, display_path, display_text, display_values


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A book folder, an sdfuse home with a data folder inside, and a home folder, all under tmp_path."""
    book, home, user = tmp_path / "book", tmp_path / "cache" / "sdfuse", tmp_path / "user"
    for folder in (book / "book" / "tables", home, user):
        folder.mkdir(parents=True)
    (book / "_toc.yml").write_text("root: book/intro\n")
    monkeypatch.setenv("SDFUSE_HOME", str(home))
    monkeypatch.delenv("SDFUSE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.chdir(book / "book" / "tables")
    return {"book": book, "home": home, "user": user, "tmp": tmp_path}


def test_each_folder_has_its_display_form(places):
    book, home, user = places["book"], places["home"], places["user"]
    assert display_path(book / "results" / "smoke") == "results/smoke"
    assert display_path(book) == "."
    assert display_path(home / "smoke" / "SPair-71k") == "$SDFUSE_HOME/smoke/SPair-71k"
    assert display_path(home) == "$SDFUSE_HOME"
    assert display_path(home / "data" / "SPair-71k") == "$SDFUSE_DATA/SPair-71k"       # the data home's default
    assert display_path(user / "weights" / "sd") == "~/weights/sd"
    assert display_path(REPO / "notebooks" / "01_unet_layers.ipynb") == "notebooks/01_unet_layers.ipynb"
    assert display_path(f"{sys.prefix}/lib/x.py") == "<sys.prefix>/lib/x.py"
    assert display_path(places["tmp"] / "elsewhere") == str(places["tmp"] / "elsewhere")   # no folder holds it
    assert display_path("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert display_path(book / "book" / ".." / "results") == "results"


def test_the_closest_folder_wins_and_links_are_followed(places, monkeypatch):
    book, home = places["book"], places["home"]
    monkeypatch.setenv("SDFUSE_DATA", str(book / "data"))                 # a data folder inside the book's folder
    assert display_path(book / "data" / "CUB_200_2011") == "$SDFUSE_DATA/CUB_200_2011"
    link = places["tmp"] / "link"
    link.symlink_to(home, target_is_directory=True)
    assert display_path(link / "features") == "$SDFUSE_HOME/features"
    assert display_path(places["tmp"] / "book2" / "x") == str(places["tmp"] / "book2" / "x")  # a prefix, not a parent


def test_a_root_given_wins_over_the_working_folder(places, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    assert display_path(other / "results" / "paper", root=other) == "results/paper"
    assert book_folder() == places["book"].resolve()
    assert book_folder(tmp_path) is None


def test_paths_inside_messages_are_rewritten(places):
    book, home = places["book"], places["home"]
    message = (f"SPair-71k not found at {home}/smoke/data (in cell [3] of {book}/book/tables/01.ipynb); "
               f"see {home}, not {home}2/x or {places['tmp']}/y")
    assert display_text(message) == ("SPair-71k not found at $SDFUSE_HOME/smoke/data (in cell [3] of "
                                     f"book/tables/01.ipynb); see $SDFUSE_HOME, not {home}2/x or {places['tmp']}/y")


def test_only_absolute_path_values_change(places):
    values = {"results_dir": str(places["book"] / "results" / "smoke"), "profile": "smoke", "grid": 12,
              "sd_model": "stable-diffusion-v1-5/stable-diffusion-v1-5", "dino_blocks": [9, 11]}
    assert display_values(values) == {**values, "results_dir": "results/smoke"}
