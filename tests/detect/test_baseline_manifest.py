"""Baseline manifests: every field validated and covered by the checksum (issue #17).

Editing a setting, a count or a table entry is refused with a ``BaselineError`` naming the field;
a manifest whose checksum was recomputed after the edit is still refused when the value is out
of range; values reach DuckDB as parameters, never as SQL text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unbacked.detect import ProgramBaseline
from unbacked.detect.baseline import _sha256, manifest_checksum
from unbacked.errors import BaselineError

from .test_baseline import _facts, _fleet


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    d = tmp_path / "bl"
    ProgramBaseline().learn(_facts(_fleet(4, with_unbacked=1))).save(d)
    return d


def _manifest(d: Path) -> dict[str, Any]:
    return json.loads((d / "manifest.json").read_text())


def _write(d: Path, m: dict[str, Any], *, reseal: bool) -> None:
    if reseal:
        m["checksum"] = manifest_checksum(m)
    (d / "manifest.json").write_text(json.dumps(m))


def test_the_saved_manifest_is_sealed(saved: Path) -> None:
    m = _manifest(saved)
    assert m["version"] == 2 and m["checksum"] == manifest_checksum(m)
    ProgramBaseline.load(saved)


@pytest.mark.parametrize(
    "field, value",
    [
        ("prior", 0),
        ("prior", -5),
        ("prior", 2.5),  # even a valid value: the checksum no longer matches
        ("min_surprise", 0.5),
        ("min_instances_for_calibration", 1),
    ],
)
def test_an_edited_setting_breaks_the_checksum(saved: Path, field: str, value: Any) -> None:
    m = _manifest(saved)
    m["hyper_parameters"][field] = value
    _write(saved, m, reseal=False)
    with pytest.raises(BaselineError, match="'checksum'"):
        ProgramBaseline.load(saved)


BAD_HYPER = [
    ("prior", 0, "hyper_parameters.prior"),
    ("prior", -5, "hyper_parameters.prior"),
    ("prior", "abc", "hyper_parameters.prior"),
    ("prior", [1], "hyper_parameters.prior"),
    ("prior", True, "hyper_parameters.prior"),
    ("prior", 1e300, "hyper_parameters.prior"),
    ("min_surprise", -1, "hyper_parameters.min_surprise"),
    ("calibration_margin", None, "hyper_parameters.calibration_margin"),
    ("min_instances_for_calibration", 2.5, "hyper_parameters.min_instances_for_calibration"),
    ("min_instances_for_calibration", 0, "hyper_parameters.min_instances_for_calibration"),
    ("unknown", 1, "hyper_parameters.unknown"),
]


@pytest.mark.parametrize("key, value, field", BAD_HYPER)
def test_a_resealed_bad_setting_is_refused_by_name(
    saved: Path, key: str, value: Any, field: str
) -> None:
    m = _manifest(saved)
    m["hyper_parameters"][key] = value
    _write(saved, m, reseal=True)
    with pytest.raises(BaselineError, match=field.replace(".", r"\.")):
        ProgramBaseline.load(saved)


def test_nan_and_infinity_are_not_numbers(saved: Path) -> None:
    for text in ("NaN", "Infinity", "-Infinity"):
        raw = (saved / "manifest.json").read_text()
        m = json.loads(raw)
        m["hyper_parameters"]["prior"] = "__X__"
        (saved / "manifest.json").write_text(json.dumps(m).replace('"__X__"', text))
        with pytest.raises(BaselineError, match="not valid JSON"):
            ProgramBaseline.load(saved)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.update(tables=[1, 2]), "'tables'"),
        (lambda m: m.update(tables="abc"), "'tables'"),
        (lambda m: m["tables"]["counts"].update(rows=-1), r"tables\.counts\.rows"),
        (lambda m: m["tables"]["counts"].update(rows="7"), r"tables\.counts\.rows"),
        (lambda m: m["tables"]["counts"].update(file="../etc/passwd"), r"tables\.counts\.file"),
        (lambda m: m["tables"]["counts"].update(sha256="zz"), r"tables\.counts\.sha256"),
        (lambda m: m["tables"].update(extra={}), r"tables\.extra"),
        (lambda m: m["meta"].update(facts=-3), r"meta\.facts"),
        (lambda m: m["meta"].update(programs="x"), r"meta\.programs"),
        (lambda m: m["meta"].update(learned_at=5), r"meta\.learned_at"),
        (lambda m: m.update(meta=[]), "'meta'"),
        (lambda m: m.update(hyper_parameters=None), "'hyper_parameters'"),
        (lambda m: m.update(surprise=1), "'surprise'"),
    ],
)
def test_every_field_is_validated(saved: Path, edit: Any, field: str) -> None:
    m = _manifest(saved)
    edit(m)
    _write(saved, m, reseal=True)
    with pytest.raises(BaselineError, match=field):
        ProgramBaseline.load(saved)


def test_version_1_is_refused_clearly(saved: Path) -> None:
    m = _manifest(saved)
    m.pop("checksum")
    m["version"] = 1
    _write(saved, m, reseal=False)
    with pytest.raises(BaselineError, match=r"version 1 .*no checksum") as info:
        ProgramBaseline.load(saved)
    assert "retrain" in (info.value.hint or "")


def test_negative_counts_in_a_table_are_refused(saved: Path) -> None:
    path = saved / "counts.parquet"
    table = pq.read_table(path)
    i = table.column_names.index("instances")
    values = table.column(i).to_pylist()
    values[0] = -4
    table = table.set_column(i, "instances", pa.array(values, pa.int64()))
    pq.write_table(table, path, compression="zstd")
    m = _manifest(saved)
    m["tables"]["counts"]["sha256"] = _sha256(path)  # a consistent forgery
    _write(saved, m, reseal=True)
    with pytest.raises(BaselineError, match="negative"):
        ProgramBaseline.load(saved)


def test_bad_settings_in_code_are_refused_before_any_sql() -> None:
    facts = _facts(_fleet(3))
    for bad in ({"prior": float("nan")}, {"prior": 0}, {"min_surprise": float("inf")}):
        with pytest.raises(BaselineError, match="hyper_parameters"):
            ProgramBaseline(**bad).learn(facts)
    good = ProgramBaseline().learn(facts)
    good.prior = -5
    with pytest.raises(BaselineError, match="prior"):
        good.score(facts)


def test_settings_reach_sql_as_parameters() -> None:
    # a value that would be SQL if it were pasted into the text: refused as a type first,
    # and the queries themselves hold no setting (they read $prior, $min_surprise, ...)
    import inspect

    from unbacked.detect import baseline as mod

    src = inspect.getsource(mod.ProgramBaseline)
    for name in ("prior", "min_surprise", "calibration_margin", "min_instances_for_calibration"):
        assert "{self." + name not in src and "{float(self." + name not in src
    with pytest.raises(BaselineError):
        ProgramBaseline(prior="1) UNION SELECT 1 --").learn(_facts(_fleet(3)))  # type: ignore[arg-type]
