"""What the command line imports (start-up cost is measured in bench/bench_startup.py; these
pin the import structure that keeps it low, not a time)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from unbacked.cli.main import SUBCOMMANDS, cli

HEAVY = ("pyarrow", "duckdb", "numpy", "pandas", "rich", "pyspark", "bokeh", "evtx")


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _tops(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def test_help_imports_no_subcommand_and_no_heavy_library() -> None:
    mods = _modules_after(
        "import sys\nfrom unbacked.cli.main import main\n"
        "sys.stdout = open('/dev/null', 'w')\nmain(['--help'])\nsys.stdout = sys.__stdout__"
    )
    assert not _tops(mods) & set(HEAVY), sorted(_tops(mods) & set(HEAVY))
    assert not {f"unbacked.cli.{n}" for n in SUBCOMMANDS} & mods


def test_package_import_loads_no_pyarrow() -> None:
    mods = _modules_after("import unbacked")
    assert "pyarrow" not in _tops(mods)


def test_hunt_loads_neither_spark_nor_plotting_nor_scanner_nor_sensor() -> None:
    mods = _modules_after("import unbacked.cli.main as m\nm.cli.get_command(None, 'hunt')")
    assert "unbacked.cli.hunt" in mods
    for name in ("pyspark", "bokeh", "unbacked.memscan", "unbacked.sensor",
                 "unbacked.render.html", "unbacked.evaluate", "unbacked.engine.spark",
                 "unbacked.cli.scan", "unbacked.cli.report"):  # fmt: skip
        assert not any(m == name or m.startswith(name + ".") for m in mods), name


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_summaries_are_the_commands_own(name: str) -> None:
    """``--help`` lists the summaries in ``SUBCOMMANDS`` without importing the commands; they
    must shorten exactly as each command's own help does."""
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd is not None
    for limit in (20, 45, 60, 74, 120, 200):
        ours = click.Command(name, help=SUBCOMMANDS[name]).get_short_help_str(limit)
        assert ours == cmd.get_short_help_str(limit), (name, limit)


def test_help_lists_every_command_and_each_runs() -> None:
    from click.testing import CliRunner

    res = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert res.exit_code == 0
    listed = [ln.split()[0] for ln in res.output.split("Commands:")[1].splitlines() if ln.strip()]
    assert listed == sorted(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert f"Usage: cli {name}" in sub.output or f"{name} [OPTIONS]" in sub.output
