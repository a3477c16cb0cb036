"""The example notebook runs top to bottom on the shared real data (nbclient, a real kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "hunt_shared_data.ipynb"

nbformat = pytest.importorskip("nbformat", reason="pip install nbformat nbclient ipykernel")
nbclient = pytest.importorskip("nbclient", reason="pip install nbclient nbformat ipykernel")
pytest.importorskip("ipykernel", reason="the notebook needs a Python kernel: pip install ipykernel")
pytest.importorskip("bokeh", reason="the notebook plots with bokeh (the [report] extra)")


@pytest.mark.shared_data
@pytest.mark.slow
def test_example_notebook_runs(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # jupyter_core warns (an error under filterwarnings=error) until platformdirs are opted into
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("UNBACKED_SHARED_DATA", str(shared_data))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the example without outputs (they embed bokeh's JavaScript)"
    )
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any failure

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert " alerts" in text and "0 alerts" not in text.split("\n")[0]
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "first_seen" in html and "risk_score" in html  # the alert table
    assert "summary" in html and "record" in html  # the timeline table, with provenance
    assert "of_instances" in html  # the baseline profile
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert "application/vnd.bokehjs_exec.v0+json" in mimes  # the plot was shown inline
    assert "report.html" in text
