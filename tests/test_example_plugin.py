"""The worked example plug-in (``examples/plugin``) installs beside unbacked as a separate
package, unbacked finds its source, rule and renderer through their entry points, the
conformance kit passes on them in that environment, and a hunt uses all three."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from unbacked.plugins import KINDS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"


def test_the_docs_show_the_example_entry_points() -> None:
    """docs/plugins.md registers what the example registers, the way it does."""
    doc = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    shown = tomllib.loads(block.group(1))["project"]["entry-points"]
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    assert shown == example["project"]["entry-points"]
    for group in shown:
        assert group.removeprefix("unbacked.") in KINDS


def _run(cmd: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A throwaway venv over this interpreter's packages with the example installed (from a
    copy: a build leaves files beside the sources)."""
    root = tmp_path_factory.mktemp("example")
    src = root / "plugin"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(env_dir)], check=True, timeout=120)  # fmt: skip
    python = env_dir / "bin" / "python"
    # --system-site-packages reaches the base interpreter's packages, not those of the venv
    # these tests run in (the project's .venv): a .pth hands the new venv this one's
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    parents = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if Path(p).is_dir()]
    Path(site_dir, "unbacked-test-parent.pth").write_text("\n".join(parents) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "UNBACKED_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-deps"]  # fmt: skip
    # offline with this interpreter's setuptools when it can build wheels; else an isolated
    # build, which fetches the build backend from the package index
    tries = [[*pip, "--no-build-isolation", "--no-index", str(src)], [*pip, str(src)]]
    errors = []
    for cmd in tries:
        res = _run(cmd, env)
        if res.returncode == 0:
            return python, src, env
        errors.append(res.stderr.strip().splitlines()[-1:] or [""])
    pytest.skip(f"cannot install the example plug-in here: {errors}")


@pytest.mark.slow
def test_unbacked_plugins_lists_the_example(venv) -> None:
    python, _src, env = venv
    res = _run([str(python), "-m", "unbacked.cli.main", "plugins", "--format", "json"], env)
    assert res.returncode == 0, res.stderr
    rows = {(r["kind"], r["name"]): r for r in map(json.loads, res.stdout.splitlines())}
    for key in (("sources", "example-csv"), ("detectors", "EXA-001"), ("renderers", "markdown")):
        row = rows[key]
        assert row["available"] and row["entry_point"], row
        assert row["distribution"] == "unbacked-example-plugin" and row["version"] == "0.1.0"
    assert all(r["available"] for r in rows.values()), [r for r in rows.values()
                                                        if not r["available"]]  # fmt: skip


@pytest.mark.slow
def test_the_conformance_kit_passes_on_the_example(venv) -> None:
    python, src, env = venv
    res = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                str(src / "tests")], {**env, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "skipped" not in res.stdout, res.stdout[-2000:]  # installed: nothing skips


@pytest.mark.slow
def test_a_hunt_uses_the_example_source_rule_and_renderer(venv, tmp_path) -> None:
    python, src, env = venv
    out = tmp_path / "alerts.md"
    res = _run([str(python), "-m", "unbacked.cli.main", "hunt", str(src / "sample.csv"),
                "--format", "markdown", "-o", str(out), "-q"], env)  # fmt: skip
    assert res.returncode == 3, res.stderr  # a high alert
    assert "| lab-1 | loader | 4242 |" in out.read_text()
    res = _run([str(python), "-m", "unbacked.cli.main", "hunt", str(src / "sample.csv"), "-q"],
               env)  # fmt: skip
    (alert,) = map(json.loads, res.stdout.splitlines())
    assert "EXA-001" in {e["detector"] for e in alert["unmapped"]["unbacked"]["explanation"]}
