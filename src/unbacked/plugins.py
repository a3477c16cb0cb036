"""One plug-in contract for every kind: a registry per kind, filled by the package and by others.

A **kind** is one extension point: ``sources`` (telemetry formats), ``detectors`` (rules and the
learned baseline), ``renderers`` (alert output formats), ``scanners`` (memory scanners under
the chunk contract) and ``commands`` (CLI subcommands). Each kind has one :class:`Registry`,
kept beside its contract (``unbacked.sources.base.SOURCES``, ``unbacked.detect.base.DETECTORS``,
``unbacked.render.base.RENDERERS``, ``unbacked.memscan.scanner.SCANNERS``,
``unbacked.cli.main.COMMANDS``).

A registry is a read-only mapping name -> plug-in, filled on first use from three places:

* the package's own modules, whose plug-ins register themselves (``@SOURCES.register``);
* lazy declarations (``declare(name, "module:attr")``): the module is imported only when that
  plug-in is asked for (the CLI's subcommands: ``unbacked --help`` imports none of them);
* the entry points of the kind's group (``unbacked.sources``, ``unbacked.detectors``,
  ``unbacked.renderers``, ``unbacked.scanners``), so that a separately installed package adds a
  plug-in without editing this one (as pytest and pySigma find theirs)::

      [project.entry-points."unbacked.sources"]
      my-format = "my_package.source:MyFormat"

A plug-in that cannot be used is not skipped silently: it is recorded as :class:`Unavailable`
with the reason (a missing extra, an import error, a duplicate name) and a hint, and
``unbacked plugins`` lists it beside the others (as dissect.target lists its plugins). A plug-in
declares what it needs at run time with two optional class attributes: ``needs`` (importable
module names) and ``extra`` (the package extra that installs them).

Setting ``UNBACKED_DISABLE_PLUGIN_AUTOLOAD`` in the environment skips entry-point discovery
(the package's own plug-ins only), as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from unbacked.errors import DependencyError, UnbackedError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")

#: kind -> "module:attribute" of its registry (imported when the kind is asked for)
KINDS: dict[str, str] = {
    "sources": "unbacked.sources.base:SOURCES",
    "detectors": "unbacked.detect.base:DETECTORS",
    "renderers": "unbacked.render.base:RENDERERS",
    "scanners": "unbacked.memscan.scanner:SCANNERS",
    "commands": "unbacked.cli.main:COMMANDS",
}

#: the environment variable that turns entry-point discovery off
DISABLE_AUTOLOAD = "UNBACKED_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN = "unbacked"


class PluginError(UnbackedError, ValueError):
    """A plug-in cannot be registered (wrong type, duplicate name) or is unknown."""


class DuplicatePluginError(PluginError):
    """Two plug-ins of one kind claim the same name."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a plug-in comes from: this package or an installed distribution's entry point."""

    distribution: str  # "unbacked" for the package's own plug-ins
    target: str  # "module:attribute"
    version: str | None = None
    entry_point: bool = False

    def __str__(self) -> str:
        dist = self.distribution + (f" {self.version}" if self.version else "")
        how = "entry point" if self.entry_point else "builtin"
        return f"{dist} ({how}) {self.target}"


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A plug-in that is installed or declared but cannot be used, and why."""

    kind: str
    name: str
    origin: Origin
    reason: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One line of ``unbacked plugins``: a usable or unavailable plug-in of one kind."""

    kind: str
    name: str
    summary: str
    origin: Origin
    available: bool = True
    reason: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "distribution": self.origin.distribution,
            "version": self.origin.version,
            "target": self.origin.target,
            "entry_point": self.origin.entry_point,
            "available": self.available,
            "reason": self.reason,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class _Declared:
    target: str
    summary: str
    needs: tuple[str, ...]
    extra: str | None


def _name_attr(obj: Any) -> str:
    return str(obj.name)


def _summary_attr(obj: Any) -> str:
    text = getattr(obj, "description", None) or getattr(obj, "title", None) or obj.__doc__ or ""
    return str(text).strip().split("\n", 1)[0]


def _target(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qual = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qual}"


def missing_modules(needs: Iterable[str]) -> list[str]:
    """Which of the importable module names ``needs`` are not installed (no import happens)."""
    missing = []
    for mod in needs:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    return missing


def _needs_reason(
    needs: Iterable[str], extra: str | None, dist: str = BUILTIN
) -> tuple[str, str | None] | None:
    missing = missing_modules(needs)
    if not missing:
        return None
    what = ", ".join(missing)
    if extra:
        return (
            f"needs the [{extra}] extra ({what} not installed)",
            f"pip install '{dist}[{extra}]'",
        )
    return f"needs {what} (not installed)", f"pip install {' '.join(missing)}"


def import_module(name: str) -> ModuleType:
    """The module of absolute name ``name``, imported as ``importlib.import_module`` does but
    through the import statement's own path, which ``python -X importtime`` reports (it does
    not report a module ``importlib.import_module`` loads, so the plug-ins' own import time
    was missing from the start-up figures of ``bench/``)."""
    __import__(name)
    return sys.modules[name]


_ENTRY_POINTS: Any = None
#: set when ``installed_plugin_packages`` found none (until ``refresh_entry_points``)
_NONE_INSTALLED = False

#: a line of an ``entry_points.txt`` that opens one of unbacked's groups (``[unbacked.sources]``)
_OUR_GROUP = re.compile(rb"^[ \t]*\[[ \t]*unbacked\.", re.MULTILINE)


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (all groups are read once per process)."""
    global _ENTRY_POINTS, _NONE_INSTALLED
    if os.environ.get(DISABLE_AUTOLOAD):
        return []
    if _ENTRY_POINTS is None:
        if _NONE_INSTALLED or installed_plugin_packages() is False:
            _NONE_INSTALLED = True
            return []
        from importlib.metadata import entry_points as read

        _ENTRY_POINTS = read()
    return sorted(_ENTRY_POINTS.select(group=group), key=lambda ep: ep.name)


def installed_plugin_packages() -> bool | None:
    """Whether an installed distribution declares entry points in one of unbacked's groups;
    None when that cannot be told this way (an egg or archive on ``sys.path``, or an import
    finder that lists distributions of its own).

    The quick answer to the usual question (no other package adds plug-ins): the metadata
    folders on ``sys.path`` are listed and only their ``entry_points.txt`` files read, ~2 ms,
    where ``importlib.metadata`` parses every distribution's entry points into objects,
    ~8 ms at every command's start with ~150 packages installed (docs/benchmarks.md). Any
    match, or any doubt, leaves the answer to ``importlib.metadata``.
    """
    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and hasattr(finder, "find_distributions"):
            return None
    for entry in sys.path:
        folder = entry or "."
        if folder.lower().endswith(".egg") or os.path.isfile(folder):
            return None
        try:
            names = os.listdir(folder)
        except OSError:
            continue  # a path entry that is not there: importlib.metadata skips it too
        for name in names:
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), "rb") as fh:
                    text = fh.read()
            except OSError:
                continue
            if _OUR_GROUP.search(text):
                return True
    return False


def refresh_entry_points() -> None:
    """Forget the entry points read so far (after installing a package into this process)."""
    global _ENTRY_POINTS, _NONE_INSTALLED
    _ENTRY_POINTS = None
    _NONE_INSTALLED = False


class Registry(Mapping[str, T], Generic[T]):
    """The plug-ins of one kind: name -> plug-in, filled on first use (see the module doc).

    ``modules`` are the package's own modules that register plug-ins when imported (a list,
    or a function giving it); ``base`` is the class every plug-in must be (a subclass of, for
    classes); ``key`` gives a plug-in's name and ``summary`` its one-line description.
    """

    def __init__(
        self,
        kind: str,
        *,
        group: str | None = None,
        base: type | None = None,
        modules: Iterable[str] | Callable[[], Iterable[str]] = (),
        key: Callable[[Any], str] = _name_attr,
        summary: Callable[[Any], str] = _summary_attr,
    ) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._modules = modules
        self._key = key
        self._summary = summary
        self._items: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}
        self._declared: dict[str, _Declared] = {}
        self._unavailable: dict[str, Unavailable] = {}
        self._state = 0  # 0: not loaded, 1: loading, 2: loaded
        #: another thread waits for a load in progress; the loading thread's own lookups
        #: (a plug-in module that reads the registry while it is imported) do not
        self._lock = threading.RLock()

    # -- filling ----------------------------------------------------------------------------
    def register(self, plugin: T, *, origin: Origin | None = None, name: str | None = None) -> T:
        """Add ``plugin`` (usable as a class decorator); returns it unchanged.

        Raises ``PluginError`` when it is not of the kind's base class and
        ``DuplicatePluginError`` when another plug-in already has its name. A plug-in whose
        ``needs`` are not installed is recorded as unavailable instead. ``name`` overrides
        the plug-in's own (a declared plug-in is registered under its declared name).
        """
        self._check_type(plugin)
        name = self._key(plugin) if name is None else name
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind}: {plugin!r} has no name")
        origin = origin or Origin(BUILTIN if _target(plugin).startswith("unbacked.") else
                                  _target(plugin).split(".", 1)[0], _target(plugin))  # fmt: skip
        existing = self._items.get(name)
        if existing is not None and existing is not plugin:
            raise DuplicatePluginError(
                f"duplicate {self.kind} name {name!r}: {origin.target} and "
                f"{self._origins[name].target}",
                hint="give one of them another name",
            )
        why = _needs_reason(
            getattr(plugin, "needs", ()), getattr(plugin, "extra", None), origin.distribution
        )
        if why is not None:
            self._unavailable[name] = Unavailable(self.kind, name, origin, *why)
            return plugin
        self._items[name] = plugin
        self._origins[name] = origin
        return plugin

    def declare(
        self,
        name: str,
        target: str,
        *,
        summary: str = "",
        needs: tuple[str, ...] = (),
        extra: str | None = None,
    ) -> None:
        """Declare a plug-in by ``"module:attribute"``: imported only when asked for by name
        (or when the whole registry is loaded). ``summary`` describes it without the import."""
        if name in self._declared or name in self._items:
            raise DuplicatePluginError(f"duplicate {self.kind} name {name!r}: {target}")
        self._declared[name] = _Declared(target, summary, needs, extra)

    def declared(self) -> dict[str, str]:
        """Declared plug-ins: name -> summary, without importing any of them."""
        return {name: d.summary for name, d in self._declared.items()}

    def _check_type(self, plugin: Any) -> None:
        if self.base is None:
            return
        ok = (
            issubclass(plugin, self.base)
            if isinstance(plugin, type)
            else isinstance(plugin, self.base)
        )
        if not ok:
            raise PluginError(
                f"{plugin!r} is not a {self.base.__module__}.{self.base.__qualname__}",
                hint=f"a plug-in of kind {self.kind!r} subclasses {self.base.__qualname__}",
            )

    def _resolve(self, name: str) -> None:
        spec = self._declared[name]
        if name in self._items or name in self._unavailable:
            return
        origin = Origin(BUILTIN, spec.target)
        why = _needs_reason(spec.needs, spec.extra)
        if why is not None:
            self._unavailable[name] = Unavailable(self.kind, name, origin, *why)
            return
        module, _, attr = spec.target.partition(":")
        try:
            plugin = getattr(import_module(module), attr)
        except ImportError as exc:  # listed with the reason, never skipped silently
            reason = f"cannot import {spec.target}: {exc}"
            hint = f"pip install 'unbacked[{spec.extra}]'" if spec.extra else None
            self._unavailable[name] = Unavailable(self.kind, name, origin, reason, hint)
            return
        if self._items.get(name) is not plugin:
            self.register(plugin, origin=origin, name=name)

    def load(self) -> Registry[T]:
        """Import the package's plug-ins and the installed entry points (once)."""
        if self._state == 2:
            return self
        with self._lock:
            if self._state:  # loaded meanwhile, or this thread is loading it
                return self
            self._state = 1
            try:
                modules = self._modules() if callable(self._modules) else self._modules
                for module in modules:
                    import_module(module)
                for name in list(self._declared):
                    self._resolve(name)
                if self.group is not None:
                    for ep in entry_points(self.group):
                        self._load_entry_point(ep)
            except BaseException:
                self._state = 0
                raise
            self._state = 2
        return self

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        origin = Origin(
            dist.name if dist is not None else "?",
            ep.value,
            version=dist.version if dist is not None else None,
            entry_point=True,
        )
        extras = list(getattr(ep, "extras", None) or [])
        hint = f"pip install '{origin.distribution}[{','.join(extras)}]'" if extras else None
        try:
            plugin = ep.load()
        except ImportError as exc:
            reason = f"cannot import {ep.value}: {exc}"
            self._unavailable.setdefault(
                ep.name,
                Unavailable(self.kind, ep.name, origin, reason, hint or "install what it imports"),
            )
            return  # fmt: skip
        except Exception as exc:  # a broken plug-in must not break the others
            reason = f"loading {ep.value} failed: {type(exc).__name__}: {exc}"
            self._unavailable.setdefault(ep.name, Unavailable(self.kind, ep.name, origin, reason))
            return
        try:
            name = self._key(plugin)
        except Exception:
            name = None
        if name != ep.name:
            reason = f"entry point {ep.name!r} names a plug-in called {name!r}"
            self._unavailable.setdefault(
                ep.name,
                Unavailable(self.kind, ep.name, origin, reason, "make the two names equal"),
            )
            return
        if self._items.get(name) is plugin:
            return  # registered by its own import already (a decorator in the module)
        try:
            self.register(plugin, origin=origin)
        except PluginError as exc:
            self._unavailable.setdefault(
                ep.name, Unavailable(self.kind, ep.name, origin, exc.message, exc.hint)
            )

    # -- the mapping ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            if name in self._declared:
                with self._lock:
                    self._resolve(name)
            if name not in self._items:
                self.load()
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.load()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {', '.join(self._items) or '(not loaded)'}>"

    # -- asking -----------------------------------------------------------------------------
    def require(self, name: str) -> T:
        """The plug-in ``name``, or an error that says why it cannot be used: a
        ``DependencyError`` (with the install hint) when it is unavailable, a ``PluginError``
        naming the choices when there is no such plug-in."""
        try:
            return self[name]
        except KeyError:
            pass
        gone = self._unavailable.get(name)
        if gone is not None:
            raise DependencyError(
                f"{self.kind} plug-in {name!r} is unavailable: {gone.reason}", hint=gone.hint
            ) from None
        raise PluginError(
            f"unknown {self.kind} plug-in {name!r}: one of {', '.join(self)}",
            hint="`unbacked plugins` lists what is installed",
        )

    @property
    def unavailable(self) -> dict[str, Unavailable]:
        """Plug-ins that cannot be used, with the reason (after loading the registry)."""
        self.load()
        return dict(self._unavailable)

    def origin(self, name: str) -> Origin:
        self[name]
        return self._origins[name]

    def describe(self) -> list[PluginInfo]:
        """Every plug-in of the kind, usable or not, sorted by name."""
        self.load()
        out = [
            PluginInfo(self.kind, name, self._summary(p), self._origins[name])
            for name, p in self._items.items()
        ]
        for name, gone in self._unavailable.items():
            summary = self._declared[name].summary if name in self._declared else ""
            out.append(PluginInfo(self.kind, name, summary, gone.origin, False, gone.reason,
                                  gone.hint))  # fmt: skip
        return sorted(out, key=lambda i: i.name)

    def view(self, predicate: Callable[[T], bool]) -> RegistryView[T]:
        """A read-only mapping of the plug-ins that satisfy ``predicate`` (loads on use)."""
        return RegistryView(self, predicate)


class RegistryView(Mapping[str, T], Generic[T]):
    """Part of a registry (``RULES``: the detectors that are rules)."""

    def __init__(self, registry: Registry[T], predicate: Callable[[T], bool]) -> None:
        self._registry = registry
        self._predicate = predicate

    def __getitem__(self, name: str) -> T:
        plugin = self._registry[name]
        if not self._predicate(plugin):
            raise KeyError(name)
        return plugin

    def __iter__(self) -> Iterator[str]:
        return (n for n, p in self._registry.items() if self._predicate(p))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (one of ``KINDS``), loaded."""
    try:
        target = KINDS[kind]
    except KeyError:
        raise PluginError(f"unknown plug-in kind {kind!r}: one of {', '.join(KINDS)}") from None
    module, _, attr = target.partition(":")
    reg: Registry[Any] = getattr(import_module(module), attr)
    return reg.load()


def describe(kinds: Iterable[str] | None = None) -> list[PluginInfo]:
    """Every plug-in of every kind (or of ``kinds``): what ``unbacked plugins`` lists."""
    return [info for kind in (kinds or KINDS) for info in registry(kind).describe()]


__all__ = [
    "DISABLE_AUTOLOAD",
    "KINDS",
    "DuplicatePluginError",
    "Origin",
    "PluginError",
    "PluginInfo",
    "Registry",
    "RegistryView",
    "Unavailable",
    "describe",
    "entry_points",
    "import_module",
    "installed_plugin_packages",
    "missing_modules",
    "refresh_entry_points",
    "registry",
]
