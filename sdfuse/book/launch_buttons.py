"""Sphinx extension of the book (``_config.yml``): its Binder and Colab buttons open the notebook in the
repository (``notebooks/STEM.ipynb``), not the executed copy under ``book/tables/``, which the
repository does not hold (the runner writes it).
"""
from __future__ import annotations

from ..profiles.parameters import NOTEBOOK_DIR
from .runner import OUTPUT_SUBDIR

LAUNCH_GROUP = "launch-buttons"
"""sphinx-book-theme's label of the header group holding the launch buttons."""


def point_to_templates(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context`` handler, after the theme's (priority 501): rewrite each launch URL of an
    executed page to its template notebook."""
    executed = f"{OUTPUT_SUBDIR.as_posix()}/"
    if not pagename.startswith(executed):
        return
    stem = pagename.removeprefix(executed)
    template = f"{NOTEBOOK_DIR.name}/{stem}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") == LAUNCH_GROUP:
            for button in group.get("buttons", []):
                if "url" in button:
                    button["url"] = button["url"].replace(f"{pagename}.ipynb", template)


def setup(app) -> dict:
    app.connect("html-page-context", point_to_templates, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
