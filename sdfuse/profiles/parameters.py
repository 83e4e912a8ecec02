"""The run parameters: one schema behind ``profiles.resolve``, ``sdfuse reproduce/extract -p`` and
every notebook's parameters cell.

Each :class:`Parameter` has a type, a range or a set of choices and a help text. The CLI parses
``-p key=value`` with it, :func:`sdfuse.profiles.resolve` checks every value with it before any model
loads, and the first lines of each table notebook's parameters cell are generated from it
(:func:`parameters_cell`; ``python -m sdfuse.profiles.parameters`` rewrites them, a test checks they agree), so
``papermill --help-notebook`` lists every parameter with its help. This module imports nothing heavy.
"""
from __future__ import annotations

import ast
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

PROFILES: dict[str, dict] = {
    # pca_dim: co-PCA size per SD layer (§3.1); pca_sweep: supp. Table 2's sizes. The smoke models'
    # layers have 32/32/16 channels and DINO 48, so 16 per layer keeps 3·d = DINO width as at 256/768.
    "smoke": dict(grid=12, sd_crop=128, pairs_per_category=20, dtype="float32", device="cpu",
                  pca_dim=16, pca_sweep=(24, 16, 8)),
    # The paper's settings on the real architectures with seeded random weights (real sizes, real
    # on-disk layouts) and synthetic data at real image sizes: proves the paper path, not the paper.
    "rehearsal": dict(grid=60, sd_crop=512, pairs_per_category=1, dtype="float32", device="auto",
                      pca_dim=256, pca_sweep=(384, 256, 128)),
    "paper": dict(grid=60, sd_crop=512, pairs_per_category=20, dtype="float32", device="auto",
                  pca_dim=256, pca_sweep=(384, 256, 128)),
}
"""Profile → defaults of the parameters left at None (DESIGN "Profiles")."""

MAX_PAIRS_PER_CATEGORY = 100_000
"""Larger draws are refused: SPair-71k's largest category has 870 test pairs (PROTOCOL §7.1)."""


@dataclass(frozen=True)
class Parameter:
    """One run or notebook parameter. ``kind``: str, path, int, ints (integers), float, floats, bool or choice.

    ``default`` None means "the profile's default" (or "not set"). Numbers lie in [minimum, maximum]
    (``exclusive_minimum``: above it); ``multiple_of`` and ``odd`` constrain integers; lists hold
    each value once, sorted, and every value of ``must_include``; a str matches ``pattern`` (a regex
    and what it means) when one is given. ``folder`` marks paths that must be folders when they exist,
    ``existing`` paths that must exist; no path may lie under a file.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    folder: bool = False
    existing: bool = False
    multiple_of: int = 1
    odd: bool = False
    must_include: tuple = ()
    pattern: tuple[str, str] = ()

    def check(self, value: Any) -> Any:
        """``value`` as this parameter's type, or :class:`ConfigError` saying what is expected."""
        if value is None:
            return None
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ConfigError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{self.name} must be a non-empty string, got {value!r}")
            if self.pattern and not re.fullmatch(self.pattern[0], value):
                raise ConfigError(f"{self.name} must be {self.pattern[1]}, got {value!r}")
            return value
        if self.kind == "path":
            return self._path(value)
        if self.kind == "bool":
            text = value.strip().lower() if isinstance(value, str) else None
            if not isinstance(value, bool) and text not in ("true", "false"):
                raise ConfigError(f"{self.name} must be True or False, got {value!r}")
            return value if isinstance(value, bool) else text == "true"
        if self.kind in ("int", "float"):
            return self._number(value, self.name)
        if self.kind in ("ints", "floats"):
            return self._numbers(value)
        raise AssertionError(f"unknown parameter kind {self.kind!r}")

    def _numbers(self, value: Any) -> list:
        if isinstance(value, str):
            value = [part for part in value.strip().strip("[]()").replace(",", " ").split()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        what = "integer" if self.kind == "ints" else "number"
        if not value:
            raise ConfigError(f"{self.name} must list at least one {what}, got {value!r}")
        numbers = [self._number(v, f"each of {self.name}") for v in value]
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{self.name} lists a value twice: {numbers}")
        missing = [v for v in self.must_include if v not in numbers]
        if missing:
            raise ConfigError(f"{self.name} must include {missing} (see its help: {self.help}), got {numbers}")
        return sorted(numbers)

    def _number(self, value: Any, what: str) -> int | float:
        integer = self.kind in ("int", "ints")
        if isinstance(value, str):
            try:
                value = int(value.strip()) if integer else float(value.strip())
            except ValueError:
                raise ConfigError(f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}") from None
        if isinstance(value, bool) or not (hasattr(value, "__index__") if integer else isinstance(value, (int, float))):
            raise ConfigError(f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}")
        value = int(value) if integer else float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be a finite number, got {value}")
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            raise ConfigError(f"{what} must be {'>' if self.exclusive_minimum else '>='} {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{what} must be <= {self.maximum}, got {value}")
        if integer and value % self.multiple_of:
            raise ConfigError(f"{what} must be a multiple of {self.multiple_of}, got {value}")
        if self.odd and value % 2 == 0:
            raise ConfigError(f"{what} must be odd, got {value}")
        return value

    def _path(self, value: Any) -> str:
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise ConfigError(f"{self.name} must be a path, got {value!r}")
        path = Path(value).expanduser()
        if self.existing and not path.exists():
            raise ConfigError(f"{self.name}: {path} does not exist; check the path")
        if self.folder and path.exists() and not path.is_dir():
            raise ConfigError(f"{self.name}={str(value)!r} is a file, not a folder; pass a folder")
        if not self.folder and path.is_dir():
            raise ConfigError(f"{self.name}={str(value)!r} is a folder; pass the file itself")
        above = next((p for p in path.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"{self.name}={str(value)!r} lies under {above}, which is a file, not a folder")
        return str(path.absolute())                                # notebooks run in book/tables, not here

    @property
    def annotation(self) -> str:
        """The type papermill shows in ``--help-notebook``."""
        return {"int": "int", "ints": "list", "float": "float", "floats": "list", "bool": "bool"}.get(self.kind, "str")


_ROOT = "folder; None for the profile default (under $SDFUSE_DATA, or the smoke/rehearsal fixtures)"

RUN_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("profile", "choice", "smoke", "smoke (tiny models, synthetic data), rehearsal (real architectures "
              "with random weights) or paper (real weights and data)", choices=tuple(PROFILES)),
    Parameter("pairs_per_category", "int", None, "SPair-71k pairs drawn per category (0 for all pairs); None for "
              "the profile default (20 as in the supplement)", minimum=0, maximum=MAX_PAIRS_PER_CATEGORY),
    Parameter("seed", "int", 42, "pair-sampling seed (the reference re-seeds 42 per category)",
              minimum=0, maximum=2**32 - 1),
    Parameter("grid", "int", None, "descriptor grid side G, a multiple of 4 (60 for paper: SD 16G px, DINOv2 14G "
              "px); None for the profile default", minimum=4, maximum=200, multiple_of=4),
    Parameter("device", "str", None, "cpu, cuda, cuda:N or auto (a GPU when there is one); None for the "
              "profile default", pattern=(r"cpu|auto|mps|cuda(:[0-9]+)?", "cpu, cuda, cuda:N, mps or auto")),
    Parameter("dtype", "choice", None, "float32 (as the reference), bfloat16 or float16; None for the profile "
              "default (float32)", choices=("float32", "bfloat16", "float16")),
    Parameter("sd_model", "str", None, "SD v1.5 weights: a local diffusers folder or a Hugging Face id; None for "
              "the profile default"),
    Parameter("sd_revision", "str", None, "Hugging Face revision of sd_model; None for the manifest's pin"),
    Parameter("dino_model", "str", None, "DINOv2 ViT-B/14 weights: a local timm folder or a Hugging Face id; None "
              "for the profile default"),
    Parameter("dino_revision", "str", None, "Hugging Face revision of dino_model; None for the manifest's pin"),
    Parameter("dino_blocks", "ints", [9, 11], "DINOv2 blocks cached per image, 0-based (11 is the last of ViT-B; "
              "Ensemble-ViT also needs 9)", minimum=0, maximum=63),
    Parameter("sd_conditioning", "choice", "empty", "empty prompt, or implicit (the ODISE captioner: needs "
              "captioner_checkpoint)", choices=("empty", "implicit")),
    Parameter("captioner_checkpoint", "path", None, "path of the ODISE checkpoint odise_label_coco_50e-b67d2efc.pth "
              "(non-commercial licence): implicit conditioning and Table 2's projection row", existing=True),
    Parameter("timestep", "int", 100, "diffusion timestep t of the SD features (the paper: 100)",
              minimum=0, maximum=999),
    Parameter("data_root", "path", None, "SPair-71k " + _ROOT, folder=True),
    Parameter("pfpascal_root", "path", None, "PF-PASCAL " + _ROOT, folder=True),
    Parameter("tss_root", "path", None, "TSS_CVPR2016 " + _ROOT, folder=True),
    Parameter("cub_root", "path", None, "CUB_200_2011 " + _ROOT, folder=True),
    Parameter("cache_dir", "path", None, "per-image feature cache folder; None for $SDFUSE_HOME/features",
              folder=True),
    Parameter("results_dir", "path", None, "folder of the results CSVs; None for results/PROFILE", folder=True),
)
"""Every parameter of a run, in the order of the notebooks' parameters cells."""

ROOT_OPTION = Parameter("--root", "path", None, "a folder, created when missing", folder=True)
"""The ``--root`` of every command: a folder, never a file or anything under one."""
PICTURE_OPTION = Parameter("--out", "path", "match.png", "the picture file to write (not a folder)")
"""``sdfuse match --out``: a file, neither a folder nor anything under a file."""
MIRROR_OPTION = Parameter("--mirror", "str", None, "base URL of a mirror",
                          pattern=(r"https?://[^/\s]+\S*", "an http:// or https:// URL, e.g. https://example.org/data"))

BY_NAME = {p.name: p for p in RUN_PARAMETERS}

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = {"table1": "01_unet_layers", "table2": "02_reduction", "table3": "03_fusion_strategy",
             "alpha_sweep": "04_alpha_sweep", "table5": "05_dino_variants", "outcomes": "06_outcomes",
             "table8": "08_cub200", "match": "10_match_your_images"}
"""Table notebooks and the "Match your own images" page: short name (for ``--only``) → file stem in ``notebooks/``."""
_WEIGHT = dict(minimum=0, maximum=1)
NOTEBOOK_PARAMETERS: dict[str, tuple[Parameter, ...]] = {
    "04_alpha_sweep": (
        Parameter("alphas", "floats", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "weights on SD for "
                  "the curve, in [0, 1]; 0.5 (the paper's default, compared with Table 1) must be one",
                  must_include=(0.5,), **_WEIGHT),
        Parameter("figure_alphas", "floats", [0.0, 0.25, 0.5, 0.75, 1.0], "weights shown as pictures, in [0, 1]",
                  **_WEIGHT),
        Parameter("n_pairs_shown", "int", 3, "pairs drawn as pictures", minimum=1, maximum=50)),
    "05_dino_variants": (
        Parameter("filter_kernel", "int", 5, "Filter-ViT window in cells, odd, at most 2·grid − 1 (reconstruction)",
                  minimum=1, maximum=2 * 200 - 1, odd=True),
        Parameter("filter_sigma_space", "float", 1.0, "Filter-ViT spatial sigma in cells (reconstruction)",
                  minimum=0, exclusive_minimum=True, maximum=1e3),
        Parameter("filter_sigma_color", "float", 0.1, "Filter-ViT range sigma on [0, 1] RGB (reconstruction)",
                  minimum=0, exclusive_minimum=True, maximum=1e3),
        Parameter("ensemble_blocks", "ints", [9, 11], "Ensemble-ViT DINOv2 blocks, 0-based, each also in dino_blocks "
                  "(reconstruction)", minimum=0, maximum=63),
        Parameter("tss_true_division", "bool", False, "True replicates the reference's float source row in the "
                  "TSS flow")),
    "06_outcomes": (
        Parameter("fusion_alpha", "float", 0.5, "weight on SD of the fused matcher, in [0, 1]", **_WEIGHT),),
    "08_cub200": (
        Parameter("cub_classes", "ints", [1, 2, 3], "CUB class ids, 1 to 200 (the first three, an assumption, "
                  "AMBIG-13)", minimum=1, maximum=200),
        Parameter("fusion_alphas", "floats", [0.5, 0.8], "weights on SD of the fused rows, in [0, 1]", **_WEIGHT)),
    "10_match_your_images": (
        Parameter("alpha", "float", 0.5, "fusion weight on SD, in [0, 1] (PROTOCOL §5.1)", **_WEIGHT),),
}
"""Each table notebook's own parameters (file stem → parameters), after the run parameters in its
parameters cell; notebooks not listed have none."""

NOTEBOOK_BY_NAME = {p.name: p for own in NOTEBOOK_PARAMETERS.values() for p in own}
LAST_DINO_BLOCK = 11
"""The DINOv2 ViT-B/14 block every table matches with (its last; PROTOCOL §4)."""


def check_values(values: dict[str, Any], known: dict[str, Parameter] = BY_NAME,
                 what: str = "run parameter") -> dict[str, Any]:
    """Every value checked and converted by its :class:`Parameter` in ``known``; an unknown name is a ConfigError."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; the {what}s are {sorted(known)}")
    return {name: known[name].check(value) for name, value in values.items()}


def check_notebook_values(namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook parameters (:data:`NOTEBOOK_PARAMETERS`) present in ``namespace``, checked and converted."""
    return check_values({name: namespace[name] for name in NOTEBOOK_BY_NAME if name in namespace}, NOTEBOOK_BY_NAME)


def check_together(values: dict[str, Any], grid: int) -> None:
    """What one table notebook's parameters need of each other (``values``: checked run and notebook
    parameters; ``grid``: the run's G): the DINOv2 blocks it matches with are cached (the last, and
    Ensemble-ViT's ``ensemble_blocks``), and the Filter-ViT window fits the G×G map."""
    cached = set(values.get("dino_blocks") or BY_NAME["dino_blocks"].default)
    needed = {LAST_DINO_BLOCK, *(values.get("ensemble_blocks") or ())}
    if not needed <= cached:
        raise ConfigError(f"dino_blocks={sorted(cached)} lacks block(s) {sorted(needed - cached)}, which the tables "
                          f"match with ({LAST_DINO_BLOCK} is ViT-B/14's last; ensemble_blocks adds Ensemble-ViT's); "
                          f"cache them too: -p dino_blocks={sorted(cached | needed)}")
    kernel = values.get("filter_kernel")
    if kernel is not None and kernel > 2 * grid - 1:
        raise ConfigError(f"filter_kernel={kernel} does not fit the {grid}×{grid} token map: at most 2·grid − 1 = "
                          f"{2 * grid - 1}")


def parse_assignment(item: str) -> tuple[str, Any]:
    """``key=value`` from the command line: a Python literal where it parses as one, else the string.

    For str, path and choice parameters a value that is not a quoted string literal stays the text as
    typed (``-p sd_revision=1234`` is the revision "1234"); ``None`` always means the default.
    """
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not key:
        raise ConfigError(f"parameter {item!r} is not key=value (e.g. -p pairs_per_category=0)")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = text
    parameter = BY_NAME.get(key) or NOTEBOOK_BY_NAME.get(key)
    if value is not None and parameter is not None and parameter.kind in ("str", "path", "choice"):
        return key, value if isinstance(value, str) else text
    return key, value


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Every ``-p key=value``; a key given twice, or the profile (``--profile``), is a ConfigError."""
    params: dict[str, Any] = {}
    for item in items:
        key, value = parse_assignment(item)
        if key in params:
            raise ConfigError(f"parameter {key!r} is given twice")
        if key == "profile":
            raise ConfigError("give the profile as --profile, not as -p profile=...")
        params[key] = value
    return params


GENERATED_END = "# (end of the generated parameters, written by python -m sdfuse.profiles.parameters)"
"""The line after the generated block of a notebook's parameters cell."""


def parameter_line(parameter: Parameter) -> str:
    """``name: type = default  # help``, in the form papermill parses (no '=' in the help)."""
    assert "=" not in parameter.help and "#" not in parameter.help, parameter.name
    return f"{parameter.name}: {parameter.annotation} = {parameter.default!r}  # {parameter.help}"


def parameters_block(stem: str) -> str:
    """The generated first lines of a table notebook's parameters cell: the run parameters, then its own."""
    own = NOTEBOOK_PARAMETERS.get(stem, ())
    return "\n".join([parameter_line(p) for p in RUN_PARAMETERS + own] + [GENERATED_END])


def notebook_parameter_source(source: str, stem: str) -> str:
    """A parameters cell's source with its generated block replaced by the current one (what follows it is kept)."""
    kept = source.split(GENERATED_END, 1)[1] if GENERATED_END in source else ""
    return parameters_block(stem) + kept


def rewrite_notebooks(paths: list[Path]) -> list[Path]:
    """Rewrite the generated block of each notebook's parameters cell; returns the changed files."""
    changed = []
    for path in paths:
        notebook = json.loads(path.read_text())
        cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        old = "".join(cell["source"])
        new = notebook_parameter_source(old, path.stem)
        if new != old:
            from ..data.storage import atomic_write_text

            cell["source"] = new.splitlines(keepends=True)
            atomic_write_text(path, json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                              what="the notebook")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m sdfuse.profiles.parameters [NOTEBOOK ...]``: regenerate the notebooks' run parameters."""
    paths = [Path(p) for p in argv] if argv else [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in NOTEBOOKS.values()]
    for path in rewrite_notebooks(paths):
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
