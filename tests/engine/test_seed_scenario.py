"""The seed's scenario end to end, on ETW-TI telemetry of the project's own Windows programs
(tests/fixtures/windows, recorded by tools/winlab): a baseline learned from benign runs of the
document host, then each triggered run raises one incident on the host process."""

from __future__ import annotations

from pathlib import Path

import pytest

from unbacked.engine.local import hunt, train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "windows"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("bl")
    train([FIXTURES / "baseline"], out)
    return out


def test_benign_runs_raise_nothing(baseline):
    assert hunt([FIXTURES / "baseline"], baseline=baseline).alerts == []


@pytest.mark.parametrize("run", ["reflective", "shellcode", "rwx"])
def test_triggered_run_is_one_explained_incident(baseline, run):
    alerts = hunt([FIXTURES / "triggered" / f"{run}.jsonl"], baseline=baseline).alerts
    assert len(alerts) == 1
    a = alerts[0]
    assert a.process.name and a.process.name.lower().startswith("dochost")
    assert "T1620" in a.techniques
    assert a.severity_id >= 4  # high or critical
    # why: measured against the program's baseline ("N of M ... of this program")
    assert any(e.baseline_total for e in a.explanation)
    # the region's life in order, and the C2 endpoint
    kinds = [t.kind for t in a.timeline]
    first = {k: kinds.index(k) for k in ("allocate", "protect", "connect") if k in kinds}
    assert set(first) == {"allocate", "protect", "connect"}
    assert first["allocate"] < first["protect"] < first["connect"]
    assert any(n.remote.startswith("127.0.0.1:") for n in a.network)
    assert any(r.protections and "EXECUTE" in r.protections[-1] for r in a.regions)
    assert all(t.provenance.file and t.provenance.line for t in a.timeline)


def test_reflective_run_shows_the_loader(baseline):
    (a,) = hunt([FIXTURES / "triggered" / "reflective.jsonl"], baseline=baseline).alerts
    assert {"UNB-M-004", "UNB-M-002"} <= set(a.detectors)  # flip-then-thread, unbacked caller
