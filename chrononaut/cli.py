"""The ``flask chrononaut`` command group, registered on the app by the extension."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import inspect as sql_inspect

from chrononaut.data_converters import HistoryModelDataConverter
from chrononaut.exceptions import ChrononautException
from chrononaut.timeline import (
    HIDDEN_MARKER,
    activity_feed,
    extra_of,
    format_key,
    object_exists,
    object_timeline,
    parse_key,
    parse_time,
    table_name_of,
    utc,
)
from chrononaut.versioned import Versioned

chrononaut_cli = AppGroup("chrononaut", help="Inspect and migrate Chrononaut history.")


def extension() -> Any:
    """Return the app's :class:`~chrononaut.VersionedSQLAlchemy`."""
    return current_app.extensions["chrononaut"]


def versioned_models() -> list[type[Versioned]]:
    """Return the versioned models of the app's ``db.Model``, sorted by class name."""
    return sorted(
        (
            mapper.class_
            for mapper in extension().Model.registry.mappers
            if issubclass(mapper.class_, Versioned)
        ),
        key=lambda model: model.__name__,
    )


def versioned_model(name: str) -> type[Versioned]:
    """Return the versioned model named ``name`` (class name or table name).

    :raises click.BadParameter: no versioned model of the app's ``db.Model`` has that name.
    """
    models = versioned_models()
    for model in models:
        if name in (model.__name__, table_name_of(model)):
            return model
    known = ", ".join(model.__name__ for model in models) or "none"
    raise click.BadParameter(f"no versioned model named {name!r} (known: {known})")


def _cell(value: Any) -> Text:
    # Text objects, never plain strings: rich would read "[...]" in stored values as markup.
    if value is None:
        return Text("null", style="dim italic")
    return Text(value if isinstance(value, str) else json.dumps(value))


def _time_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _change_info(extra: dict[str, Any], hidden_changed: bool) -> Text:
    parts = [f"{name}: {_cell(value)}" for name, value in extra.items()]
    if hidden_changed:
        parts.append("hidden columns changed")
    return Text("; ".join(parts))


@chrononaut_cli.command("history")
@click.argument("model_name", metavar="MODEL")
@click.argument("key")
def history_command(model_name: str, key: str) -> None:
    """Print every version of one object and what changed in each.

    MODEL is a versioned model's class or table name. KEY is the object's primary key:
    the value for a one-column key, else a JSON object such as
    '{"locale": "en", "slug": "intro"}'. Hidden columns are shown as changed, never
    with a value.
    """
    model = versioned_model(model_name)
    try:
        parsed_key = parse_key(model, key)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="KEY") from None
    session = extension().session
    entries = object_timeline(session, model, parsed_key)
    if not entries:
        raise click.ClickException(f"{model.__name__} {key} has no recorded history.")
    console = Console(highlight=False)
    for entry in entries:
        heading = [f"Version {entry.version}", f"{utc(entry.changed):%Y-%m-%d %H:%M:%S} UTC"]
        heading += [str(part) for part in (entry.user_id, entry.remote_addr) if part]
        heading += [f"{name}: {_cell(value)}" for name, value in entry.extra.items()]
        console.print(Text(" | ".join(heading), style="bold"))
        table = Table()
        table.add_column("Column")
        table.add_column("Before")
        table.add_column("After")
        for column, (old, new) in sorted(entry.changes.items()):
            table.add_row(Text(column), _cell(old), _cell(new))
        for column in entry.hidden_changed:
            table.add_row(Text(column), Text(""), Text(HIDDEN_MARKER, style="italic"))
        if not entry.changes and not entry.hidden_changed:
            table.add_row(Text("(no tracked column changed)", style="dim"), "", "")
        console.print(table)
    if not object_exists(session, model, parsed_key):
        console.print(f"{model.__name__} {key} has been deleted.")


@chrononaut_cli.command("activity")
@click.option("--since", callback=_time_option, help="Only changes at or after this ISO time.")
@click.option("--until", callback=_time_option, help="Only changes at or before this ISO time.")
@click.option("--model", "model_name", help="Only changes of this model (class or table name).")
@click.option("--user", help="Only changes made by this user id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def activity_command(
    since: datetime | None,
    until: datetime | None,
    model_name: str | None,
    user: str | None,
    limit: int,
) -> None:
    """Print the latest changes of all versioned models, newest first.

    Times without a time zone are taken as UTC.
    """
    db = extension()
    table_name = table_name_of(versioned_model(model_name)) if model_name else None
    changes = activity_feed(
        db.session,
        db.activity_cls,
        since=since,
        until=until,
        table_name=table_name,
        user_id=user,
        limit=limit,
    )
    table = Table()
    for heading in ("Changed (UTC)", "Table", "Key", "Version", "User", "Address", "Change info"):
        table.add_column(heading)
    for change in changes:
        meta = change.chrononaut_meta
        table.add_row(
            f"{utc(meta['changed']):%Y-%m-%d %H:%M:%S}",
            Text(meta["table_name"]),
            Text(format_key(change._key)),
            str(change._version),
            _cell(meta["user_info"].get("user_id")),
            _cell(meta["user_info"].get("remote_addr")),
            _change_info(extra_of(change), bool(meta["extra_info"].get("hidden_cols_changed"))),
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(f"{len(changes)} change{'' if len(changes) == 1 else 's'} shown.")


@chrononaut_cli.command("convert")
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Objects converted per transaction.",
)
def convert_command(model_name: str, chunk: int) -> None:
    """Move the Chrononaut 0.1 history of MODEL into chrononaut_activity.

    Each chunk of objects is committed on its own; objects that already have their
    versions are skipped, so the command can be run again after an interruption.
    """
    model = versioned_model(model_name)
    key_names = [column.name for column in sql_inspect(model).primary_key]
    converter = HistoryModelDataConverter(model, id_column=key_names)
    session = extension().session
    converted = 0
    try:
        total = converter.count(session)
        with click.progressbar(length=total, label=f"Converting {model.__name__}") as progress:
            while True:
                seen = converter.objects_seen
                chunk_converted = converter.convert(session, limit=chunk)
                progress.update(converter.objects_seen - seen)
                if not chunk_converted:
                    break
                converted += chunk_converted
    except ChrononautException as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{model.__name__}: {converted} of {total} objects converted, "
        f"{converter.snapshots_written} snapshots written "
        f"(from {', '.join(converter.legacy_table_names)})."
    )
