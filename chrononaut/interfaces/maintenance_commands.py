"""The ``flask chrononaut prune`` and ``erase`` commands, which remove history on
purpose: what the retention rules let go, and the values of one object; and
``partitions``, which creates the activity table's partitions ahead of time.

They print no stored value: prune prints counts, erase the names of the columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from flask.cli import with_appcontext

from chrononaut.capture.acting import acting_as
from chrononaut.exceptions import ChrononautException
from chrononaut.history.retention import Retention
from chrononaut.interfaces.terminal import console as open_console
from chrononaut.interfaces.text import format_key, parse_key, visible
from chrononaut.interfaces.timeline import extension, versioned_model
from chrononaut.maintenance.erasure import allow_erasure, erase
from chrononaut.maintenance.partitions import MAX_AHEAD, create_partitions
from chrononaut.maintenance.retention import PruneReport, prune

if TYPE_CHECKING:
    from rich.console import Console

_actor_option = click.option(
    "--actor",
    help="Who runs the command, recorded with it (as `acting_as` records an actor).",
)


@contextmanager
def _acting(actor: str | None) -> Iterator[None]:
    if actor is None:
        yield
        return
    try:
        block = acting_as(actor)
    except ChrononautException as error:
        raise click.BadParameter(str(error), param_hint="--actor") from None
    with block:
        yield


def _rule_text(retention: Retention) -> str:
    parts = []
    if retention.versions is not None:
        parts.append(f"newest {retention.versions} versions")
    if retention.days is not None:
        parts.append(f"{retention.days} days")
    if retention.keep_deletes:
        parts.append("deletes")
    return ", ".join(parts)


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows deleted per transaction.",
)
@_actor_option
@with_appcontext
def prune_command(dry_run: bool, batch_size: int, actor: str | None) -> None:
    """Remove the history rows that the models' retention rules let go.

    Models declare their rules with __chrononaut_retention__; the others keep
    everything. Rows are deleted in short transactions of one batch each, and the
    run is recorded in the activity table (table_name 'chrononaut_prune').
    """
    db = extension()
    console = open_console()
    with _acting(actor):
        try:
            report = prune(db, dry_run=True, batch_size=batch_size)
            if not dry_run and report.rows:
                report = _prune_with_progress(db, console, report.rows, batch_size)
            elif not dry_run:
                report = prune(db, batch_size=batch_size)
        except ChrononautException as error:
            raise click.ClickException(str(error)) from None
    _print_report(console, report)


def _prune_with_progress(db: object, console: Console, total: int, batch_size: int) -> PruneReport:
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Pruning history", total=total)
        return prune(
            db,
            batch_size=batch_size,
            progress=lambda entry, rows: progress.advance(task, rows),
        )


def _print_report(console: Console, report: PruneReport) -> None:
    from rich.table import Table
    from rich.text import Text

    if not report.models:
        console.print("No model declares a retention rule: nothing to prune.")
        return
    heading = "Rows to remove" if report.dry_run else "Rows removed"
    table = Table()
    for column in ("Model", "Keeps", "Exact since (UTC)", heading):
        table.add_column(column, overflow="fold")
    for entry in report.models:
        cutoff = "" if entry.cutoff is None else f"{entry.cutoff:%Y-%m-%d %H:%M:%S}"
        table.add_row(
            Text(visible(entry.model.__name__)),
            Text(_rule_text(entry.retention)),
            Text(cutoff),
            Text(str(entry.rows)),
        )
    console.print(table)
    if report.partitions:
        dropped = "would be dropped whole" if report.dry_run else "dropped whole"
        names = ", ".join(visible(name) for name in report.partitions)
        console.print(f"Partitions {dropped}: {names}.")
    rows = f"{report.rows} row{'' if report.rows == 1 else 's'}"
    if report.dry_run:
        console.print(f"Dry run: {rows} would be removed.")
    else:
        console.print(f"{rows} removed; the run is recorded in the activity table.")


@click.command("erase")
@click.argument("model_name", metavar="MODEL")
@click.argument("key")
@click.option(
    "--column",
    "columns",
    multiple=True,
    help="A column to erase; repeat for more. Default: every stored value.",
)
@click.option("--reason", required=True, help="Why, recorded with the erasure.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_actor_option
@with_appcontext
def erase_command(
    model_name: str,
    key: str,
    columns: tuple[str, ...],
    reason: str,
    yes: bool,
    actor: str | None,
) -> None:
    """Erase the values of columns from every snapshot of one object.

    MODEL is a versioned model's class or table name; KEY is the object's primary key
    as `flask chrononaut history` takes it. The versions, their times and authors
    stay; the erasure is recorded (table_name 'chrononaut_erasure'). The live row
    is not changed.
    """
    try:
        model = versioned_model(model_name)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="MODEL") from None
    try:
        parsed_key = parse_key(model, key)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="KEY") from None
    shown = f"{model.__name__} {visible(format_key(parsed_key))}"
    which = ", ".join(visible(column) for column in columns) or "every stored value"
    if not yes:
        click.confirm(f"Erase {which} from the history of {shown}?", abort=True)
    with _acting(actor), allow_erasure():
        try:
            erasure = erase(model, parsed_key, columns or None, reason=reason)
        except ChrononautException as error:
            raise click.ClickException(str(error)) from None
    erased = ", ".join(visible(column) for column in erasure.columns) or "nothing"
    snapshots = f"{erasure.snapshots} snapshot{'' if erasure.snapshots == 1 else 's'}"
    click.echo(f"Erased {erased} from {snapshots} of {shown}; the erasure is recorded.")


@click.command("partitions")
@click.option(
    "--ahead",
    type=click.IntRange(min=0, max=MAX_AHEAD),
    default=3,
    show_default=True,
    help="Intervals after the current one to create partitions for.",
)
@with_appcontext
def partitions_command(ahead: int) -> None:
    """Create the activity table's partitions of the current and the coming intervals.

    Only in the partitioned layout (CHRONONAUT_ACTIVITY_PARTITIONS). Partitions that
    exist are left alone; rows the default partition holds for a new partition are
    moved into it. Run it daily, so that writes never go to the default partition.
    """
    db = extension()
    console = open_console()
    try:
        report = create_partitions(db, ahead=ahead)
    except ChrononautException as error:
        raise click.ClickException(str(error)) from None
    if not report.created:
        console.print("Every partition is there already: nothing created.")
        return
    for name in report.created:
        console.print(f"Created {visible(name)}.")
    rows = f"{report.moved} row{'' if report.moved == 1 else 's'}"
    console.print(f"{rows} moved from the default partition.")
