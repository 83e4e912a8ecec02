"""One source of truth for run parameters: the schema, ``profiles.resolve``, ``-p`` and every notebook."""
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import papermill
import pytest

from sdfuse.errors import ConfigError
from sdfuse.profiles.parameters import (BY_NAME, GENERATED_END, RUN_PARAMETERS, check_values, parse_assignment,
                                        parse_assignments, parameters_block)
from sdfuse.profiles.parameters import NOTEBOOK_DIR, NOTEBOOKS
from sdfuse.profiles.runs import resolve
from tests.test_projection import odise_checkpoint  # noqa: F401  (a fixture)

SDFUSE = str(Path(sys.executable).parent / "sdfuse")


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS.values()))
def test_every_table_notebook_declares_every_run_parameter_with_its_help(stem):
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("papermill").addHandler(handler)
    try:
        declared = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{stem}.ipynb"))
    finally:
        logging.getLogger("papermill").removeHandler(handler)
    assert "Unable to parse" not in log.getvalue()
    for parameter in RUN_PARAMETERS:
        entry = declared[parameter.name]
        assert entry["help"] == parameter.help
        assert entry["default"] == repr(parameter.default)
        assert entry["inferred_type_name"] != "None"
    assert all(entry["inferred_type_name"] != "None" for entry in declared.values()), "a parameter without a type"


@pytest.mark.parametrize("stem", sorted(NOTEBOOKS.values()))
def test_the_generated_block_is_current(stem):
    """``python -m sdfuse.profiles.parameters`` was run after the last schema change."""
    cells = json.loads((NOTEBOOK_DIR / f"{stem}.ipynb").read_text())["cells"]
    source = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"])
    assert source.startswith(parameters_block(stem)) and source.count(GENERATED_END) == 1


def test_resolve_takes_every_run_parameter_to_the_run(smoke_root, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    checkpoint = tmp_path / "c.pth"
    checkpoint.write_bytes(b"x")
    values = dict(pairs_per_category=3, seed=7, grid=8, device="cpu", dtype="bfloat16",
                  sd_model=str(smoke_root / "models" / "sd"), sd_revision="r-sd",
                  dino_model=str(smoke_root / "models" / "dino"), dino_revision="r-dino", dino_blocks=[11, 3],
                  sd_conditioning="empty", captioner_checkpoint=str(checkpoint), timestep=50,
                  data_root=str(folder / "a"), pfpascal_root=str(folder / "b"), tss_root=str(folder / "c"),
                  cub_root=str(folder / "d"), cache_dir=str(folder / "e"), results_dir=str(folder / "g"))
    assert set(values) | {"profile"} == set(BY_NAME), "a run parameter is missing from this test"
    run = resolve("smoke", **values)
    got = dict(pairs_per_category=run.pairs_per_category, seed=run.seed, grid=run.grid, device=run.sd.device,
               dtype=run.sd.dtype, sd_model=run.sd.model, sd_revision=run.sd.revision, dino_model=run.dino.model,
               dino_revision=run.dino.revision, dino_blocks=list(run.dino.blocks),
               sd_conditioning=run.sd.conditioning, captioner_checkpoint=run.sd.captioner_checkpoint,
               timestep=run.sd.timestep, data_root=str(run.data_root), pfpascal_root=str(run.pfpascal_root),
               tss_root=str(run.tss_root), cub_root=str(run.cub_root), cache_dir=str(run.cache_dir),
               results_dir=str(run.results_dir))
    assert got == {**values, "dino_blocks": [3, 11]}
    assert (run.dino.dtype, run.dino.device, run.dino.grid) == ("bfloat16", "cpu", 8)


def test_defaults_come_from_the_profile(smoke_root):
    run = resolve("smoke")
    assert (run.grid, run.pairs_per_category, run.seed, run.sd.timestep, run.dino.blocks) == (12, 20, 42, 100, (9, 11))
    assert (run.sd.revision, run.sd.conditioning, run.sd.dtype) == (None, "empty", "float32")


@pytest.mark.parametrize("values, message", [
    ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
    ({"pairs_per_category": 2.7}, "pairs_per_category must be an integer, got 2.7"),
    ({"pairs_per_category": True}, "pairs_per_category must be an integer, got True"),
    ({"pairs_per_category": 10**12}, "pairs_per_category must be <= 100000"),
    ({"pairs_per_category": -1}, "pairs_per_category must be >= 0"),
    ({"grid": 0}, "grid must be >= 4"),
    ({"timestep": 1000}, "timestep must be <= 999"),
    ({"dino_blocks": [11, 11]}, "lists a value twice"),
    ({"dino_blocks": []}, "at least one integer"),
    ({"dino_blocks": ["x"]}, "each of dino_blocks must be an integer"),
    ({"dtype": "float64"}, "dtype must be one of ['float32', 'bfloat16', 'float16']"),
    ({"profile": "huge"}, "profile must be one of ['smoke', 'rehearsal', 'paper']"),
    ({"sd_conditioning": "text"}, "sd_conditioning must be one of ['empty', 'implicit']"),
    ({"captioner_checkpoint": "/no/such/odise.pth"}, "captioner_checkpoint: /no/such/odise.pth does not exist"),
    ({"sd_model": ""}, "sd_model must be a non-empty string"),
    ({"colour": "red"}, "unknown run parameter(s) ['colour']"),
])
def test_bad_values_are_refused_with_what_is_expected(values, message):
    with pytest.raises(ConfigError) as error:
        check_values(values)
    assert message in str(error.value)


def test_a_file_where_a_folder_belongs_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_values({"results_dir": str(tmp_path / "file")})
    with pytest.raises(ConfigError, match="is a folder; pass the file itself"):
        check_values({"captioner_checkpoint": str(tmp_path)})


def test_integers_are_never_rounded_and_lists_take_one_or_many():
    assert check_values({"dino_blocks": 11, "grid": "12"}) == {"dino_blocks": [11], "grid": 12}
    assert check_values({"dino_blocks": "9,11"})["dino_blocks"] == [9, 11]
    assert check_values({"pairs_per_category": None}) == {"pairs_per_category": None}


def test_command_line_values_keep_their_type():
    assert parse_assignment("sd_revision=1234") == ("sd_revision", "1234")      # a str parameter stays text
    assert parse_assignment("data_root='/x y'") == ("data_root", "/x y")        # quotes are optional
    assert parse_assignment("pairs_per_category=0") == ("pairs_per_category", 0)
    assert parse_assignment("grid=None") == ("grid", None)
    assert parse_assignment("cub_classes=[1, 2]") == ("cub_classes", [1, 2])     # a notebook's own parameter
    assert parse_assignment("alpha = 0.5") == ("alpha", 0.5)
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_assignment("novalue")
    with pytest.raises(ConfigError, match="given twice"):
        parse_assignments(["seed=1", "seed=2"])


def test_reproduce_takes_local_weights_and_the_captioner_checkpoint(smoke_root, odise_checkpoint, tmp_path):
    """The README's advice for local weights and Table 2's projection row, through the CLI and papermill."""
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text((NOTEBOOK_DIR.parent / name).read_text())
    done = subprocess.run([SDFUSE, "reproduce", "--only", "table2", "--root", str(tmp_path),
                           "-p", f"sd_model={smoke_root / 'models' / 'sd'}",
                           "-p", f"dino_model={smoke_root / 'models' / 'dino'}",
                           "-p", f"captioner_checkpoint={odise_checkpoint}", "-p", f"cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr and "Unable to parse" not in done.stderr
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [["ok", "02_reduction"], ["ok", "00_status"],
                                                                       ["ok", "99_run"]]
    table = pd.read_csv(tmp_path / "results" / "smoke" / "table2.csv")
    assert {"projection", "PCA 384", "PCA 256", "PCA 128"} <= set(table["setting"])
    provenance = json.loads((tmp_path / "results" / "smoke" / "table2.provenance.json").read_text())
    assert provenance["sd_model"] == "$SDFUSE_HOME/smoke/models/sd"              # shown under $SDFUSE_HOME
    executed = (tmp_path / "book" / "tables" / "02_reduction.ipynb").read_text()
    assert "captioner_checkpoint" in executed and str(odise_checkpoint) in executed


def test_a_missing_captioner_checkpoint_is_named_before_anything_runs(tmp_path):
    done = subprocess.run([SDFUSE, "reproduce", "--only", "table2", "--root", str(tmp_path),
                           "-p", "captioner_checkpoint=/no/such/odise.pth"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: captioner_checkpoint: /no/such/odise.pth does not exist")
    assert not (tmp_path / "book").exists() and not (tmp_path / "results").exists()
