"""`./benchmarks/run --only`: which figures a run measures. `--only P1,P6` measured nothing
and printed an empty table (the ids were only compared one `--only` at a time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import chosen_figures

ROOT = Path(__file__).parent.parent.parent


def ids(only: list[str] | None) -> list[str]:
    return sorted({function.__name__.split("_")[0].upper() for function in chosen_figures(only)})


def test_figures_are_chosen_by_repeated_or_comma_separated_ids_in_any_case() -> None:
    assert ids(["P1,P6"]) == ["P1", "P6"]
    assert ids(["p1", "P6"]) == ["P1", "P6"]
    assert ids(["P3, p7"]) == ["P3", "P7"]


def test_none_chooses_no_figure_for_a_soak_alone() -> None:
    assert ids(["none"]) == []
    assert ids(["NONE"]) == []


def test_every_figure_without_only() -> None:
    assert ids(None) == ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"]


def test_an_unknown_figure_is_refused() -> None:
    with pytest.raises(ValueError, match="P9"):
        chosen_figures(["P1,P9"])


def test_the_command_refuses_an_unknown_figure_before_it_measures_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "--only", "P1,P9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "P9" in done.stderr
    assert "measured" not in done.stderr
