"""``unbacked plugins``: what is installed of every kind of plug-in, where from, and why a
plug-in is unavailable (a missing extra, an import error, a duplicate name)."""

from __future__ import annotations

import sys

import click
import orjson

from unbacked.plugins import KINDS, PluginInfo, describe


def _origin(info: PluginInfo, verbose: int) -> str:
    o = info.origin
    text = o.distribution + (f" {o.version}" if o.version else "")
    text += " (entry point)" if o.entry_point else " (builtin)"
    return f"{text} {o.target}" if verbose else text


@click.command("plugins")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(list(KINDS)),
    help="Only this kind (repeatable; default: every kind).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: one line per plug-in; json: one JSON object per plug-in and line.",
)
@click.option("-v", "--verbose", count=True, help="-v: the module and object of each plug-in.")
def command(kinds: tuple[str, ...], fmt: str, verbose: int) -> None:
    """List the installed plug-ins of every kind, where from, and why any is unusable.

    Kinds: sources (telemetry formats), detectors (rules and the baseline), renderers (output
    formats), scanners (memory scanners) and commands. Another package adds a plug-in through
    the entry-point group unbacked.<kind> (see docs/plugins.md).
    """
    infos = describe(kinds or None)
    if fmt == "json":
        for info in infos:
            click.echo(orjson.dumps(info.to_dict()).decode())
        sys.exit(0)
    width = max((len(i.name) for i in infos), default=0)
    origin_width = max((len(_origin(i, 0)) for i in infos), default=0)
    for kind in kinds or KINDS:
        mine = [i for i in infos if i.kind == kind]
        ok = sum(i.available for i in mine)
        gone = len(mine) - ok
        click.echo(f"{kind} ({ok} available" + (f", {gone} unavailable)" if gone else ")"))
        for i in mine:
            if i.available:
                line = f"  {i.name:<{width}}  {_origin(i, 0):<{origin_width}}  {i.summary}"
            else:
                line = (f"  {i.name:<{width}}  {_origin(i, 0):<{origin_width}}  unavailable: "
                        f"{i.reason}" + (f" ({i.hint})" if i.hint else ""))  # fmt: skip
            click.echo(line.rstrip())
            if verbose:
                click.echo(f"  {'':<{width}}  {_origin(i, verbose)}")
    sys.exit(0)


__all__ = ["command"]
