"""What the command line imports (start-up cost is measured in bench/bench_startup.py; these
pin the import structure that keeps it low, not a time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from unbacked.cli.main import SUBCOMMANDS, cli

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("pyarrow", "duckdb", "numpy", "pandas", "rich", "pyspark", "bokeh", "evtx")


def _after(code: str, what: str, **env: str) -> Any:
    """``what`` (a JSON-able expression) in a fresh interpreter that ran ``code``, with the
    environment's variables ``env`` set (one set to "" is left out)."""
    import os

    probe = f"{code}\nimport json, os, sys\nprint(json.dumps({what}))"
    full = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
        env=full,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    return set(_after(code, "sorted(sys.modules)"))


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


def test_hunt_runs_without_importing_pandas(tmp_path) -> None:
    """pyarrow imports pandas (when installed) on its first conversion of Python values; the
    command line tells it first that none will be a pandas object, and a hunt's alerts are the
    same as in a process that imported pandas itself (with pandas installed; the bare-install
    job runs hunts where it is not)."""
    pytest.importorskip("pandas")
    sample = REPO / "samples" / "linux"
    plain, with_pandas = tmp_path / "plain.json", tmp_path / "pandas.json"
    mods = _modules_after(
        "from unbacked.cli.main import main\n"
        f"assert main(['hunt', {str(sample)!r}, '-o', {str(plain)!r}, '-q']) == 3"
    )
    assert "pandas" not in _tops(mods)
    mods = _modules_after(
        "import pandas\nfrom unbacked.cli.main import main\n"
        f"assert main(['hunt', {str(sample)!r}, '-o', {str(with_pandas)!r}, '-q']) == 3"
    )
    assert "pandas" in _tops(mods)
    assert plain.read_bytes() == with_pandas.read_bytes()


def test_hunt_runs_without_numpy_masked_arrays_or_rich(tmp_path) -> None:
    """``pa.array`` of a NumPy array imports ``numpy.ma`` (10-20 ms) to ask whether it is a
    masked array: the hunt path builds its arrays on NumPy's buffers (``model.rows.from_numpy``).
    Its summary on a stderr that is not a terminal is plain text, without rich (30 ms). Both on
    the Linux and the Windows samples; the Windows ones (EVTX, JSON lines) without Parquet's
    module either (~17 ms)."""
    samples = (REPO / "samples" / "linux", REPO / "tests" / "fixtures" / "windows")
    for i, sample in enumerate(samples):
        out = tmp_path / f"{i}.json"
        mods = _modules_after(
            "import io, sys\nsys.stderr = io.StringIO()\n"
            "from unbacked.cli.main import main\n"
            f"assert main(['hunt', {str(sample)!r}, '-o', {str(out)!r}]) == 3\n"
            "summary = sys.stderr.getvalue()\nsys.stderr = sys.__stderr__\n"
            "assert summary.startswith('unbacked: ') and ' alerts in ' in summary, summary"
        )
        assert "numpy.ma" not in mods, sample
        assert "rich" not in _tops(mods), sample
        if sample.name == "windows":  # EVTX and JSON lines: no Parquet to read or write
            assert "pyarrow.parquet" not in mods


def _allocator_options(code: str, **env: str) -> str:
    """What Arrow's mimalloc prints of its options when it starts (``MIMALLOC_VERBOSE``), in a
    fresh interpreter running ``code`` and then allocating an Arrow buffer."""
    import os

    base = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ALLOW_THP"}
    run = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport pyarrow as pa\npa.allocate_buffer(64)"],
        capture_output=True, text=True, timeout=120, check=True,
        env={**base, "MIMALLOC_VERBOSE": "1", **env},
    )  # fmt: skip
    if "option 'allow_thp'" not in run.stderr:
        pytest.skip("Arrow's allocator here is not a mimalloc that prints its options")
    return run.stderr


def test_commands_keep_arrow_off_transparent_huge_pages() -> None:
    """A subcommand's process runs Arrow's mimalloc without transparent huge pages (seconds of
    kernel time zeroing 2 MiB pages otherwise, see ``keep_huge_pages_out_of_arrow``); a
    user's own ``MIMALLOC_ALLOW_THP`` wins, and a library import keeps mimalloc's default."""
    command = "import unbacked.cli.main as m\nm.cli.get_command(None, 'hunt')"
    assert "option 'allow_thp': 0" in _allocator_options(command)
    assert "option 'allow_thp': 1" in _allocator_options(command, MIMALLOC_ALLOW_THP="1")
    assert "option 'allow_thp': 1" in _allocator_options("import unbacked")


def _threads_after(code: str, **env: str) -> tuple[int, str | None]:
    """How many threads a fresh interpreter has after running ``code`` and importing NumPy
    (Linux: ``/proc/self/task``), and the ``OPENBLAS_NUM_THREADS`` it then has (none of the
    caller's own unless given in ``env``)."""
    n, value = _after(
        f"{code}\nimport numpy",
        "[len(os.listdir('/proc/self/task')), os.environ.get('OPENBLAS_NUM_THREADS')]",
        **{"OPENBLAS_NUM_THREADS": "", **env},
    )
    return n, value


def test_commands_keep_blas_from_starting_threads() -> None:
    """A subcommand's process loads NumPy with its BLAS on one thread (OpenBLAS otherwise
    starts a thread per core that spins for a while, see ``keep_blas_single_threaded``); a
    user's own ``OPENBLAS_NUM_THREADS`` wins, and a library import keeps NumPy's default."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("threads are counted in /proc/self/task (Linux)")
    command = "import unbacked.cli.main as m\nm.cli.get_command(None, 'hunt')"
    plain, _ = _threads_after("import unbacked")
    one, _ = _threads_after("import unbacked", OPENBLAS_NUM_THREADS="1")
    if plain <= one:
        pytest.skip("this NumPy's BLAS starts no threads of its own here")
    # the same threads as when the user asks for one BLAS thread (what else the command's
    # imports start, such as an Arrow or DuckDB pool, is there in both)
    assert _threads_after(command) == _threads_after(command, OPENBLAS_NUM_THREADS="1")
    assert _threads_after(command, OPENBLAS_NUM_THREADS="2")[1] == "2"


def test_arrow_keeps_working_with_pandas_after_the_probe() -> None:
    """After the probe, what needs pandas by name still gets it (a notebook or a plug-in)."""
    pytest.importorskip("pandas")
    mods = _modules_after(
        "import pyarrow as pa\nfrom unbacked.model.rows import keep_pandas_out_of_arrow\n"
        "assert keep_pandas_out_of_arrow()\n"
        "t = pa.table({'a': [1, None], 't': pa.array([1, 2], pa.timestamp('ns'))})\n"
        "import sys\nassert 'pandas' not in sys.modules\n"
        "df = t.to_pandas()\nassert df['a'].isna().tolist() == [False, True]\n"
        "assert pa.Table.from_pandas(df).num_rows == 2\n"
        "assert not keep_pandas_out_of_arrow()  # pandas is here now: nothing to spare"
    )
    assert "pandas" in _tops(mods)


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


def test_importtime_reports_every_module_a_hunt_loads(tmp_path) -> None:
    """``python -X importtime`` (what bench/bench_startup.py and bench_hunt.py sum per package)
    lists every unbacked module a hunt holds at its end: the plug-ins the registries import
    (sources, rules, the subcommand) included, so their time is in the figures."""
    out = tmp_path / "o.json"
    code = (
        "import io, sys\nsys.stderr = io.StringIO()\nfrom unbacked.cli.main import main\n"
        f"main(['hunt', {str(REPO / 'samples' / 'linux')!r}, '-o', {str(out)!r}])\n"
        "sys.stderr = sys.__stderr__\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('unbacked'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import json\n{code}"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    held = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    timed = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert {"unbacked.cli.hunt", "unbacked.detect.rules.memory", "unbacked.sources.native"} <= held
    assert held <= timed, sorted(held - timed)
