"""The ``flask chrononaut`` commands, loaded by the extension when one of them runs."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup
from sqlalchemy import inspect as sql_inspect

from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.interfaces.display import (
    as_text,
    change_info_text,
    column_changes,
    columns_text,
    model_label,
)
from chrononaut.interfaces.export import (
    ACTIVITY_CSV_HEADER,
    HISTORY_CSV_HEADER,
    feed_document,
    feed_rows,
    history_rows,
    timeline_document,
)
from chrononaut.interfaces.maintenance_commands import (
    erase_command,
    partitions_command,
    prune_command,
)
from chrononaut.interfaces.state import state_at
from chrononaut.interfaces.terminal import console as open_console
from chrononaut.interfaces.text import (
    MAX_ROWS,
    format_key,
    parse_key,
    parse_time,
    parse_user,
    utc,
    visible,
)
from chrononaut.interfaces.timeline import (
    FILTERABLE_KINDS,
    HIDDEN_MARKER,
    activity_feed,
    extension,
    has_been_deleted,
    object_timeline,
    table_name_of,
    versioned_model,
)
from chrononaut.maintenance.conversion import HistoryModelDataConverter

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

#: The commands; the extension adds them to ``app.cli`` as ``flask chrononaut``, with
#: its help text.
chrononaut_cli = AppGroup("chrononaut")

_format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json or csv for scripts.",
)


def _model_argument(name: str) -> type[Versioned]:
    try:
        return versioned_model(name)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _table(*headings: str) -> Table:
    from rich.table import Table

    table = Table()
    for heading in headings:
        # In a terminal too narrow for a value, it is folded onto more lines, never cut.
        table.add_column(heading, overflow="fold")
    return table


def _text(value: str, style: str = "") -> Text:
    """Everything printed in a table goes through here, already made visible: a stored
    value could otherwise move the cursor, clear the screen or reorder a line, and rich
    would read "[...]" in a plain string as markup."""
    from rich.text import Text

    return Text(value, style=style)


def _cell(value: Any) -> Text:
    return _text(as_text(value), style="dim" if value is None else "")


def _write_csv(header: Iterable[str], rows: Iterable[list[str]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _write_json(document: dict[str, Any]) -> None:
    # ensure_ascii: every control character and bidirectional override is a \u escape.
    click.echo(json.dumps(document, indent=2))


def _parsed_option(parse: Callable[[str], Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None

    return callback


@chrononaut_cli.command("history")
@click.argument("model_name", metavar="MODEL")
@click.argument("key")
@_format_option
def history_command(model_name: str, key: str, output_format: str) -> None:
    """Print every version of one object and what changed in each.

    MODEL is a versioned model's class or table name. KEY is the object's primary key:
    the value for a one-column key, else a JSON object such as
    '{"locale": "en", "slug": "intro"}'. Hidden columns are shown as changed, never
    with a value.
    """
    model = _model_argument(model_name)
    try:
        parsed_key = parse_key(model, key)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="KEY") from None
    entries = object_timeline(extension().session(), model, parsed_key)
    shown_key = visible(format_key(parsed_key))
    if not entries:
        raise click.ClickException(f"{model.__name__} {shown_key} has no recorded history.")
    if output_format == "json":
        _write_json(timeline_document(model, parsed_key, entries))
        return
    if output_format == "csv":
        _write_csv(HISTORY_CSV_HEADER, history_rows(entries))
        return
    console = open_console()
    for entry in entries:
        heading = [
            f"Version {entry.version}",
            f"{entry.kind} ({entry.undo})" if entry.undo else entry.kind,
            f"{utc(entry.changed):%Y-%m-%d %H:%M:%S} UTC",
            f"user: {as_text(entry.user_id)}",
            f"address: {as_text(entry.remote_addr)}",
        ]
        info = change_info_text(entry)
        console.print(_text(" | ".join([*heading, info] if info else heading), style="bold"))
        table = _table("Column", "Before", "After")
        for change in column_changes(entry):
            table.add_row(_text(as_text(change.column)), _cell(change.before), _cell(change.after))
        for column in entry.hidden_changed:
            table.add_row(_text(as_text(column)), _text(""), _text(HIDDEN_MARKER, style="italic"))
        if not entry.changes and not entry.hidden_changed:
            table.add_row(_text("(no tracked column changed)", style="dim"))
        console.print(table)
    if has_been_deleted(entries):
        console.print(_text(f"{model.__name__} {shown_key} has been deleted."))


@chrononaut_cli.command("as-of")
@click.argument("model_name", metavar="MODEL")
@click.argument("at", metavar="TIME", callback=_parsed_option(parse_time))
@click.option("--limit", type=click.IntRange(min=1, max=MAX_ROWS), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0, max=MAX_ROWS), default=0, show_default=True)
@_format_option
def as_of_command(
    model_name: str, at: datetime, limit: int, offset: int, output_format: str
) -> None:
    """Print the objects of a model as they were at TIME, ordered by key.

    MODEL is a versioned model's class or table name; TIME an ISO 8601 time, UTC unless
    it names a zone. A change made exactly at TIME is included. Hidden and untracked
    columns are not shown.
    """
    model = _model_argument(model_name)
    try:
        page = state_at(extension().session(), model, at, limit=limit, offset=offset)
    except ChrononautException as error:
        raise click.ClickException(str(error)) from None
    header = [*page.columns, "since"]
    if output_format == "json":
        _write_json(
            {
                "model": model.__name__,
                "at": utc(at).isoformat(),
                "objects": [
                    {
                        **dict(zip(page.columns, values, strict=True)),
                        "since": utc(changed).isoformat(),
                    }
                    for _, values, changed in page.rows
                ],
                "more": page.has_next,
            }
        )
        return
    if output_format == "csv":
        _write_csv(
            header,
            (
                [*(as_text(value) for value in values), utc(changed).isoformat()]
                for _, values, changed in page.rows
            ),
        )
        return
    console = open_console()
    console.print(_text(f"{model.__name__} at {utc(at):%Y-%m-%d %H:%M:%S} UTC", style="bold"))
    table = _table(*header)
    for _, values, changed in page.rows:
        table.add_row(
            *(_cell(value) for value in values), _text(f"{utc(changed):%Y-%m-%d %H:%M:%S}")
        )
    console.print(table)
    if not page.rows:
        console.print(_text(f"No {model.__name__} existed then."))
    elif page.has_next:
        console.print(_text(f"More objects follow: --offset {offset + limit}.", style="dim"))


@chrononaut_cli.command("activity")
@click.option(
    "--since", callback=_parsed_option(parse_time), help="Only changes at or after this ISO time."
)
@click.option(
    "--until", callback=_parsed_option(parse_time), help="Only changes at or before this ISO time."
)
@click.option("--model", "model_name", help="Only changes of this model (class or table name).")
@click.option(
    "--user", callback=_parsed_option(parse_user), help="Only changes made by this user id."
)
@click.option("--kind", type=click.Choice(FILTERABLE_KINDS), help="Only changes of this kind.")
@click.option("--limit", type=click.IntRange(min=1, max=MAX_ROWS), default=50, show_default=True)
@_format_option
def activity_command(
    since: datetime | None,
    until: datetime | None,
    model_name: str | None,
    user: str | None,
    kind: str | None,
    limit: int,
    output_format: str,
) -> None:
    """Print the latest changes of all versioned models, newest first.

    Times without a time zone are taken as UTC.
    """
    db = extension()
    table_name = table_name_of(_model_argument(model_name)) if model_name else None
    entries = activity_feed(
        db.session(),
        db.activity_cls,
        since=since,
        until=until,
        table_name=table_name,
        user_id=user,
        kind=kind,
        limit=limit,
    )
    if output_format == "json":
        _write_json(feed_document(entries))
        return
    if output_format == "csv":
        _write_csv(ACTIVITY_CSV_HEADER, feed_rows(entries))
        return
    console = open_console()
    table = _table(
        "Changed (UTC)",
        "Kind",
        "Model",
        "Key",
        "Version",
        "Columns",
        "User",
        "Address",
        "Change info",
    )
    for entry in entries:
        columns = columns_text(entry)
        table.add_row(
            _text(f"{utc(entry.changed):%Y-%m-%d %H:%M:%S}"),
            _text(f"{entry.kind} ({entry.undo})" if entry.undo else entry.kind),
            _text(as_text(model_label(entry))),
            _text(as_text(format_key(dict(entry.snapshot.chrononaut_key)))),
            _text(str(entry.version)),
            _text(columns, style="") if columns else _cell(None),
            _cell(entry.user_id),
            _cell(entry.remote_addr),
            _text(change_info_text(entry)),
        )
    console.print(table)
    console.print(f"{len(entries)} change{'' if len(entries) == 1 else 's'} shown.")


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
    versions are skipped, so the command can be run again after an interruption. At
    the end it prints the objects looked at, converted and already complete, the
    snapshots written and the 0.1 history rows read.
    """
    model = _model_argument(model_name)
    key_names = [column.name for column in sql_inspect(model).primary_key]
    converter = HistoryModelDataConverter(model, id_column=key_names)
    session = extension().session()
    try:
        total = converter.count(session)
        with click.progressbar(length=total, label=f"Converting {model.__name__}") as progress:
            while True:
                seen = converter.objects_seen
                converted = converter.convert(session, limit=chunk)
                progress.update(converter.objects_seen - seen)
                if not converted:
                    break
    except ChrononautException as error:
        raise click.ClickException(str(error)) from None

    def counted(number: int, noun: str) -> str:
        return f"{number} {noun}{'' if number == 1 else 's'}"

    # The rows read let a user check the sum over the models against the 0.1 tables.
    click.echo(
        f"{model.__name__}: {counted(converter.objects_seen, 'object')} looked at, "
        f"{converter.objects_converted} converted, "
        f"{converter.objects_already_complete} already complete; "
        f"{counted(converter.snapshots_written, 'snapshot')} written from "
        f"{counted(converter.legacy_rows_read, 'row')} of "
        f"{' joined with '.join(converter.legacy_table_names)}."
    )
    for subclass in converter.subclasses_left:
        name = subclass.__name__
        click.echo(
            f"{name} has a table of its own: convert it with `flask chrononaut convert {name}`."
        )


# The commands that remove history on purpose live in a module of their own.
chrononaut_cli.add_command(prune_command)
chrononaut_cli.add_command(erase_command)
chrononaut_cli.add_command(partitions_command)
