"""The plug-in registry (``unbacked.plugins``): one contract for every kind, entry points of
other packages, unavailable plug-ins with their reason, and ``unbacked plugins``."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint, EntryPoints

import orjson
import pytest
from click.testing import CliRunner

from unbacked import plugins
from unbacked.errors import DependencyError
from unbacked.plugins import (
    KINDS,
    DuplicatePluginError,
    PluginError,
    Registry,
    describe,
    registry,
)


class Thing:
    name = "thing"
    description = "A thing."


class Other(Thing):
    name = "other"


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: object) -> None:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)


def _entry_points(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str, str]) -> None:
    found = EntryPoints(EntryPoint(n, v, g) for n, v, g in eps)
    monkeypatch.setattr(plugins, "_ENTRY_POINTS", found)
    monkeypatch.delenv(plugins.DISABLE_AUTOLOAD, raising=False)


def test_register_is_a_decorator_and_a_duplicate_name_is_an_error() -> None:
    reg: Registry[type[Thing]] = Registry("things", base=Thing)
    assert reg.register(Thing) is Thing
    reg.register(Thing)  # the same plug-in twice: harmless (a module imported again)
    clash = type("Clash", (Thing,), {"name": "thing"})
    with pytest.raises(DuplicatePluginError, match="duplicate things name 'thing'"):
        reg.register(clash)
    with pytest.raises(PluginError, match="is not a"):
        reg.register(int)  # type: ignore[arg-type]
    assert isinstance(DuplicatePluginError("x"), ValueError)  # as the old registries raised


def test_declared_plugins_are_imported_only_when_asked_for(monkeypatch) -> None:
    reg: Registry[type[Thing]] = Registry("things", base=Thing)
    reg.declare("other", "unbacked_test_lazy:Other", summary="Another thing.")
    assert reg.declared() == {"other": "Another thing."}
    assert "unbacked_test_lazy" not in sys.modules
    _fake_module(monkeypatch, "unbacked_test_lazy", Other=Other)
    assert reg["other"] is Other
    assert reg.origin("other").target == "unbacked_test_lazy:Other"


def test_a_missing_extra_makes_a_plugin_unavailable_with_the_reason() -> None:
    reg: Registry[type[Thing]] = Registry("things", base=Thing)
    needy = type("Needy", (Thing,), {"name": "needy", "needs": ("no_such_module_x",),
                                     "extra": "fancy", "__module__": "unbacked.fake"})  # fmt: skip
    reg.register(needy)
    reg.declare("lazy", "no_such_module_y:Thing", needs=("no_such_module_y",), extra="lazy")
    assert "needy" not in reg and "lazy" not in reg
    gone = reg.unavailable
    assert gone["needy"].reason == "needs the [fancy] extra (no_such_module_x not installed)"
    assert gone["needy"].hint == "pip install 'unbacked[fancy]'"
    assert "lazy" in gone
    with pytest.raises(DependencyError, match=r"unavailable: needs the \[fancy\] extra"):
        reg.require("needy")
    with pytest.raises(PluginError, match="unknown things plug-in 'nope'"):
        reg.require("nope")
    infos = {i.name: i for i in reg.describe()}
    assert not infos["needy"].available and infos["needy"].hint


def test_entry_points_add_plugins_and_broken_ones_are_reported(monkeypatch) -> None:
    _fake_module(monkeypatch, "unbacked_test_ep", Thing=Thing, Other=Other)
    group = "unbacked.things"
    _entry_points(
        monkeypatch,
        ("other", "unbacked_test_ep:Other", group),
        ("thing", "unbacked_test_ep:Thing", group),  # the same name as a builtin
        ("wrong", "unbacked_test_ep:Other", group),  # names a plug-in called "other"
        ("broken", "unbacked_test_missing_module:X", group),
        ("elsewhere", "unbacked_test_ep:Other", "unbacked.others"),
    )
    builtin = type("Builtin", (Thing,), {"name": "thing", "__module__": "unbacked.fake"})
    reg: Registry[type[Thing]] = Registry("things", group=group, base=Thing)
    reg.register(builtin)
    assert sorted(reg) == ["other", "thing"]
    assert reg["thing"] is builtin  # an entry point never replaces a plug-in
    assert reg.origin("other").entry_point
    gone = reg.unavailable
    assert set(gone) == {"thing", "wrong", "broken"}
    assert "duplicate things name 'thing'" in gone["thing"].reason
    assert "names a plug-in called 'other'" in gone["wrong"].reason
    assert "cannot import unbacked_test_missing_module:X" in gone["broken"].reason


def test_autoload_can_be_turned_off(monkeypatch) -> None:
    _entry_points(monkeypatch, ("other", "unbacked_test_ep:Other", "unbacked.things"))
    monkeypatch.setenv(plugins.DISABLE_AUTOLOAD, "1")
    reg: Registry[type[Thing]] = Registry("things", group="unbacked.things", base=Thing)
    assert list(reg) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_loaded_registry_of_builtin_plugins(kind: str) -> None:
    reg = registry(kind)
    assert len(reg) > 0
    for info in reg.describe():
        assert info.kind == kind and info.name
        assert info.available or info.reason


def test_registries_keep_the_old_public_names() -> None:
    from unbacked.detect import DETECTORS, RULES, register_rule
    from unbacked.render import RENDERERS
    from unbacked.sources import SOURCES, register

    assert register.__module__ == "unbacked.sources.base" and callable(register_rule)
    assert "sysmon-evtx" in SOURCES and dict(SOURCES)["sysmon-evtx"].name == "sysmon-evtx"
    assert set(RULES) < set(DETECTORS)
    assert "ocsf" in RENDERERS


def test_plugins_command_lists_every_kind_and_where_from() -> None:
    from unbacked.cli.main import cli

    res = CliRunner().invoke(cli, ["plugins"])
    assert res.exit_code == 0, res.output
    for kind in KINDS:
        assert f"\n{kind} (" in "\n" + res.output
    assert "sysmon-evtx" in res.output and "UNB-B-001" in res.output
    assert "unbacked (builtin)" in res.output
    res = CliRunner().invoke(cli, ["plugins", "--kind", "renderers", "--format", "json"])
    rows = [orjson.loads(line) for line in res.output.splitlines()]
    assert {r["name"] for r in rows} >= {"ocsf", "ecs", "table", "html"}
    assert all(r["kind"] == "renderers" and r["available"] for r in rows)


def test_plugins_command_says_why_a_plugin_is_unavailable(monkeypatch) -> None:
    from unbacked.cli.main import cli
    from unbacked.memscan import scanner

    reg = Registry("scanners", base=scanner.ScannerInterface)
    reg.declare("yara", "unbacked.memscan.yarascan:YaraScanner", summary="YARA rules.",
                needs=("no_such_yara_module",), extra="yara")  # fmt: skip
    monkeypatch.setattr(scanner, "SCANNERS", reg)
    res = CliRunner().invoke(cli, ["plugins", "--kind", "scanners"])
    assert res.exit_code == 0
    assert "scanners (0 available, 1 unavailable)" in res.output
    assert "unavailable: needs the [yara] extra" in res.output
    assert "pip install 'unbacked[yara]'" in res.output


def test_describe_covers_every_kind() -> None:
    assert {i.kind for i in describe()} == set(KINDS)


def test_a_declared_plugin_that_cannot_be_imported_is_unavailable_not_skipped() -> None:
    reg: Registry[type[Thing]] = Registry("things", base=Thing)
    reg.declare("gone", "unbacked_test_no_such_module:Thing", summary="A thing.")
    assert "gone" not in reg
    assert "cannot import unbacked_test_no_such_module:Thing" in reg.unavailable["gone"].reason
    with pytest.raises(DependencyError, match="unavailable: cannot import"):
        reg.require("gone")


def test_threads_that_ask_during_a_load_wait_for_all_of_it(monkeypatch) -> None:
    import threading
    import time

    started = threading.Event()

    class Slow(Thing):
        name = "slow"

    def modules() -> list[str]:
        started.set()
        time.sleep(0.2)  # another thread asks meanwhile
        reg.register(Slow)
        return []

    reg: Registry[type[Thing]] = Registry("things", base=Thing, modules=modules)
    seen: list[list[str]] = []
    other = threading.Thread(target=lambda: (started.wait(), seen.append(list(reg))))
    other.start()
    assert list(reg) == ["slow"]
    other.join()
    assert seen == [["slow"]]


def _dist(folder, name: str, entry_points: str | None) -> None:
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def test_packages_that_add_plugins_are_found_without_parsing_every_distribution(
    tmp_path, monkeypatch
) -> None:
    """The quick look at ``entry_points.txt`` files agrees with ``importlib.metadata``: a
    console script, another tool's group or no file at all is no plug-in; a group of
    unbacked's is; and a command reads entry points only when there is one."""
    import importlib.metadata

    real = importlib.metadata.entry_points

    def ours() -> bool:
        return any(g.startswith("unbacked.") for g in real().groups)

    baseline = plugins.installed_plugin_packages()
    assert baseline in (ours(), None)
    if baseline:
        pytest.skip("a package that adds unbacked plug-ins is installed here")
    _dist(tmp_path, "tool", "[console_scripts]\ntool = unbacked.cli.main:main\n")
    _dist(tmp_path, "other", "[pytest11]\nx = unbacked_x\n")
    _dist(tmp_path, "bare", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.installed_plugin_packages() is False
    assert not ours()

    monkeypatch.setattr(plugins, "_ENTRY_POINTS", None)
    monkeypatch.setattr(plugins, "_NONE_INSTALLED", False)
    monkeypatch.delenv(plugins.DISABLE_AUTOLOAD, raising=False)
    read = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda: read.append(1) or real())
    assert plugins.entry_points("unbacked.detectors") == []
    assert plugins.entry_points("unbacked.sources") == []
    assert read == []  # the quick look answered, once for every group

    _dist(tmp_path, "adds", "[unbacked.detectors]\nEXA-9 = unbacked_test_ep:Thing\n")
    plugins.refresh_entry_points()
    assert plugins.installed_plugin_packages() is True
    assert ours()
    found = plugins.entry_points("unbacked.detectors")
    assert read == [1]
    assert [(ep.name, ep.value) for ep in found] == [("EXA-9", "unbacked_test_ep:Thing")]
    plugins.refresh_entry_points()


def test_an_archive_on_the_path_leaves_plugin_discovery_to_importlib(tmp_path, monkeypatch):
    """A zip or egg on ``sys.path`` can hold metadata the quick look does not read."""
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    monkeypatch.syspath_prepend(str(archive))
    assert plugins.installed_plugin_packages() is None
