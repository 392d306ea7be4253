"""``seawall contract``: export a system's AsyncAPI 3.0 document, check two for compatibility.

``seawall contract export MODULE:ATTR [-o asyncapi.json]`` prints (or writes)
the document :func:`seawall.contract.export` makes. ``seawall contract check
OLD NEW`` compares two contracts, each a JSON file or a ``MODULE:ATTR`` target,
prints every change and exits 1 when one is breaking: a step for CI, against
the document committed with the last release.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .._exceptions import SeawallError
from .._runtime.target import load_system
from ..contract import compare, export

__all__ = ["contract"]


@click.group()
def contract() -> None:
    """The system's published messaging contract (AsyncAPI 3.0)."""


def _exported(target: str, title: str | None, version: str, transport: str | None) -> Any:
    sys.path.insert(0, ".")
    try:
        system = load_system(target, transport="memory://", grace=0.0)
        return export(system, title=title, version=version, transport=transport)
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc


@contract.command("export")
@click.argument("target")
@click.option("--title", default=None, help="info.title (default: names the services).")
@click.option("--version", "version", default="1.0.0", show_default=True, help="info.version.")
@click.option(
    "--transport", default=None, help="Transport URL whose server and bindings to describe."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here.")
def export_command(
    target: str, title: str | None, version: str, transport: str | None, output: str | None
) -> None:
    """Print the AsyncAPI 3.0 document of TARGET (MODULE:ATTR)."""
    text = json.dumps(_exported(target, title, version, transport), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)


def _load(source: str) -> Any:
    path = Path(source)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise click.ClickException(f"{source} is not a JSON document: {exc}") from exc
    if ":" in source:
        return _exported(source, None, "1.0.0", None)
    raise click.ClickException(
        f"{source!r} is neither a file nor a MODULE:ATTR target; give the AsyncAPI JSON "
        "that `seawall contract export` wrote, or the target to export"
    )


@contract.command("check")
@click.argument("old")
@click.argument("new")
def check(old: str, new: str) -> None:
    """Fail when NEW breaks OLD without a major version bump (each a file or MODULE:ATTR)."""
    try:
        changes = compare(_load(old), _load(new))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for change in changes:
        click.echo(str(change))
    breaking = [c for c in changes if c.breaking]
    if breaking:
        raise click.ClickException(
            f"{len(breaking)} breaking change(s) without a major version bump; keep the old "
            "fields (add new ones with defaults), or raise the type's major version"
        )
    click.echo(f"compatible: {len(changes)} change(s), none breaking")
