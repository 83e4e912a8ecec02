"""What a loader's error tells the user to do: the dataset's manifest and the exact fetch command."""
from __future__ import annotations

from pathlib import Path

from ...errors import SdfuseError


def fetch_hint(name: str, folder: str | Path) -> str:
    """``see data_manifests/<name>.yaml; get it with: sdfuse data fetch <name> --root <parent>``.

    ``folder`` is the dataset folder the loader was given; the fetch command unpacks into
    ``<parent>/<manifest folder>``, and when ``folder`` has another name the hint says where to
    point the run afterwards; when ``folder`` *contains* the dataset folder (the data root was
    passed by mistake) it says so. Imported lazily: the data store pulls in the download stack.
    """
    folder = Path(folder)
    try:
        from ..datastore import missing_hint
        from ..manifests import load_manifest

        hint = missing_hint(name, folder.parent)
        expected = load_manifest(name)["folder"]
    except SdfuseError:  # a custom manifest folder without this manifest: still say what to run
        return f"get it with: sdfuse data fetch {name} --root {folder.parent}"
    if (folder / expected).is_dir():
        return f"{folder / expected} exists: did you pass the data root instead of the dataset folder? ({hint})"
    if folder.name != expected:
        hint += f" (it unpacks into {folder.parent / expected}; point the run there)"
    return hint


def verify_hint(name: str, folder: str | Path) -> str:
    """The fetch hint plus the command that lists every damaged or missing file of the dataset."""
    return f"{fetch_hint(name, folder)}; list what is damaged with: sdfuse data verify {name} --root {Path(folder).parent}"
