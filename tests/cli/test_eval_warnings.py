"""`unbacked eval` says so on stderr when labels cannot apply: a PATH outside the data root
(no label names its files) and a data file labelled in two --labels directories."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from unbacked.cli.eval import command, merge_labels

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "samples" / "labels"
FIXTURE = "tests/fixtures/windows/baseline/benign-1"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(command, [*args, "-q"], catch_exceptions=False)
    return result.exit_code, result.stderr


def test_a_path_outside_the_data_root_is_named(tmp_path):
    outside = tmp_path / "copy"
    outside.mkdir()
    shutil.copy(REPO / f"{FIXTURE}.jsonl", outside)
    rc, err = _run(str(outside), "--labels", str(LABELS), "--data-root", str(REPO))
    assert rc == 0
    assert f"warning: {outside} is outside the data root" in err


def test_a_path_inside_the_data_root_warns_nothing():
    rc, err = _run(str(REPO / FIXTURE) + ".jsonl", "--labels", str(LABELS), "--data-root",
                   str(REPO))  # fmt: skip
    assert rc == 0
    assert "warning" not in err


def test_a_file_labelled_twice_is_named(tmp_path):
    again = tmp_path / "labels"
    (again / "tests").mkdir(parents=True)
    shutil.copy(LABELS / f"{FIXTURE}.json", again / "tests" / "benign-1.json")
    labels, warnings = merge_labels([str(LABELS), str(again)])
    assert warnings == [
        f"{FIXTURE}.jsonl is labelled in both {LABELS} and {again}; {again} is used"
    ]
    assert f"{FIXTURE}.jsonl" in labels
    rc, err = _run(str(REPO / FIXTURE) + ".jsonl", "--labels", str(LABELS), "--labels",
                   str(again), "--data-root", str(REPO))  # fmt: skip
    assert rc == 0
    assert f"{FIXTURE}.jsonl is labelled in both" in err
    assert merge_labels([str(LABELS)])[1] == []
