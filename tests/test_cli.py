"""The sdfuse command: bad input is rejected with a message and exit code 2, before any model loads."""
import subprocess
import sys
from pathlib import Path

import pytest

from sdfuse.cli import main

SDFUSE = str(Path(sys.executable).parent / "sdfuse")


def test_console_script_help_lists_the_commands():
    out = subprocess.run([SDFUSE, "--help"], capture_output=True, text=True, check=True).stdout
    assert "reproduce" in out and "extract" in out and "data" in out


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--only", "table99"], "unknown notebook"),
    (["reproduce", "-p", "gird=12"], "no selected notebook has parameter(s) ['gird']"),
    (["reproduce", "-p", "novalue"], "is not key=value"),
    (["extract", "-p", "grid=-4"], "grid must be >= 4, got -4"),
    (["extract", "-p", "grid=10"], "multiple of 4"),
    (["extract", "-p", "colour=red"], "unknown run parameter(s) ['colour']"),
])
def test_bad_parameters_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_profile_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--profile", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_paper_profile_without_data_says_where_to_get_it(tmp_path, capsys):
    assert main(["extract", "--profile", "paper", "-p", f"data_root='{tmp_path}'", "-p", "device='cpu'"]) == 2
    err = capsys.readouterr().err
    assert "SPair-71k not found" in err and "data_manifests/spair71k.yaml" in err


def test_paper_profile_without_weights_names_the_model(smoke_root, tmp_path, capsys):
    data = str(smoke_root / "SPair-71k")
    assert main(["extract", "--profile", "paper", "-p", f"data_root='{data}'", "-p", "device='cpu'",
                 "-p", f"cache_dir='{tmp_path}'"]) == 2
    err = capsys.readouterr().err
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in err and "-p sd_model=" in err


def test_extract_prefills_the_smoke_cache(smoke_root, tmp_path, capsys):
    assert main(["extract", "-p", f"cache_dir='{tmp_path}'"]) == 0
    assert "12 images: extracted SD 12, DINOv2 12" in capsys.readouterr().out
    assert main(["extract", "-p", f"cache_dir='{tmp_path}'"]) == 0
    assert "extracted SD 0, DINOv2 0" in capsys.readouterr().out


def test_non_integer_grid_is_a_config_error(capsys):
    assert main(["extract", "-p", "grid='abc'"]) == 2
    assert "grid must be an integer" in capsys.readouterr().err
