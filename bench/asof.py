"""``python -m bench asof``: time the dated reads of a whole model on a grown history.

One model, ``Ticket``, gets ``--objects`` objects with ten recorded states each (one
object in twenty is deleted at its last); the rest of ``--history-rows`` activity rows
belong to seven other tables, written in between, as a shared history table holds them:
their objects have ten states each too, and integer keys counted from 1 in each table.
The rows are made in SQL in the format Chrononaut records, then vacuumed and analyzed as
autovacuum would leave them. Three reads of ``Ticket.as_of(at)`` are timed, ``at`` being
when about half of the history was written: the whole model, one page of 50 objects in
key order (the first page, and one from the middle reached by key), and one object by key.
"""

from __future__ import annotations

import enum
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import click
from flask import Flask
from sqlalchemy import DateTime, Enum, Numeric, String, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, mapped_column

from bench.server import fresh_database
from chrononaut import Versioned, VersionedSQLAlchemy
from chrononaut.embedded import embedded_server

#: Recorded states of each ticket: its insert and nine updates (or eight and a delete).
STATES = 10
#: The tables whose rows fill the rest of the history.
OTHER_TABLES = 7
#: The first activity row's time; the rows are one second apart.
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Status(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _fill_sql(objects: int, history_rows: int) -> str:
    """SQL that writes the activity rows and the live tickets.

    Row ``n`` belongs to the tickets when ``n`` is a multiple of ``stride``: ticket rows
    are spread over the whole table, each on a page of its own, as in a history shared
    by busy tables. Ticket ``o`` gets its state ``v`` at row ``stride * (v * objects + o)``.
    """
    stride = max(history_rows // (objects * STATES), 1)
    return f"""
    INSERT INTO chrononaut_activity
        (table_name, changed, version, key, data, user_info, extra_info, operation,
         transaction_id)
    SELECT CASE WHEN ticket THEN 'ticket' ELSE 'other_' || (n % {OTHER_TABLES}) END,
           TIMESTAMPTZ '{START.isoformat()}' + n * INTERVAL '1 second',
           CASE WHEN ticket THEN state ELSE (n / {OTHER_TABLES}) % {STATES} END,
           jsonb_build_object('id', CASE WHEN ticket THEN object
                                         ELSE n / ({OTHER_TABLES} * {STATES}) + 1 END),
           CASE WHEN ticket THEN jsonb_build_object(
               'id', object,
               'title', 'ticket ' || object || ' state ' || state,
               'amount', to_char(object * 0.25 + state, 'FM999999990.00'),
               'status', CASE WHEN state % 2 = 0 THEN 'Status.OPEN' ELSE 'Status.CLOSED' END,
               'due_at', to_char((TIMESTAMPTZ '2025-01-01' + object * INTERVAL '1 hour')
                                 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
               'version', state)
           ELSE jsonb_build_object('name', repeat('x', 60),
                                   'version', (n / {OTHER_TABLES}) % {STATES}) END,
           '{{"user_id": null, "remote_addr": null}}',
           '{{}}',
           CASE WHEN ticket AND state = 0 THEN 'insert'
                WHEN ticket AND state = {STATES - 1} AND object % 20 = 0 THEN 'delete'
                WHEN ticket THEN 'update'
                WHEN (n / {OTHER_TABLES}) % {STATES} = 0 THEN 'insert'
                ELSE 'update' END,
           n
    FROM generate_series(0, {history_rows - 1}) AS n,
         LATERAL (SELECT n % {stride} = 0 AND n / {stride} < {objects * STATES} AS ticket,
                         (n / {stride}) % {objects} + 1 AS object,
                         (n / {stride}) / {objects} AS state) AS row_of;
    INSERT INTO ticket (id, title, amount, status, due_at, version)
    SELECT object, 'ticket ' || object || ' state {STATES - 1}',
           object * 0.25 + {STATES - 1}, 'CLOSED',
           TIMESTAMPTZ '2025-01-01' + object * INTERVAL '1 hour', {STATES - 1}
    FROM generate_series(1, {objects}) AS object WHERE object % 20 <> 0;
    """


def _app(database_url: str) -> tuple[Flask, VersionedSQLAlchemy, Any]:
    app = Flask("bench-asof")
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db = VersionedSQLAlchemy(app)

    class Ticket(db.Model, Versioned):  # type: ignore[name-defined, misc]
        __tablename__ = "ticket"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column(String(80))
        amount: Mapped[Any] = mapped_column(Numeric(12, 2))
        status: Mapped[Status | None] = mapped_column(Enum(Status))
        due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    return app, db, Ticket


def _read_all(session: Any, statement: Any) -> object:
    return session.execute(statement).all()


def _median_ms(read: Callable[[], object], repetitions: int) -> float:
    read()  # the first call warms the caches: the plan, the pages, SQLAlchemy's
    timings = []
    for _ in range(repetitions):
        started = time.perf_counter()
        read()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


@contextmanager
def _server(database_url: str | None) -> Iterator[str]:
    if database_url:
        yield database_url
        return
    with embedded_server("postgresql+psycopg2", durable=False) as url:
        yield url.render_as_string(hide_password=False)


def run(
    server_url: str, objects: int, history_rows: int, repetitions: int, explain: bool
) -> dict[str, Any]:
    """Build the data set on a fresh database of ``server_url`` and time the reads."""
    rng = random.Random(0)
    with fresh_database(server_url) as url:
        app, db, Ticket = _app(url.render_as_string(hide_password=False))
        with app.app_context():
            db.create_all()
            session = db.session
            session.execute(text(_fill_sql(objects, history_rows)))
            session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
                # Vacuum marks pages all-visible only once the commit that wrote them
                # is on disk, which a server without synchronous commits (the embedded
                # one) may not have done yet: a checkpoint sees to it, where allowed.
                admin.exec_driver_sql(
                    "DO $$ BEGIN CHECKPOINT; EXCEPTION WHEN insufficient_privilege THEN END $$"
                )
                admin.exec_driver_sql("VACUUM ANALYZE")
                version = admin.exec_driver_sql("SHOW server_version").scalar()
            stride = max(history_rows // (objects * STATES), 1)
            at = START + timedelta(seconds=stride * objects * STATES // 2)
            dated = Ticket.as_of(at)
            statements = {
                "whole model": select(dated),
                "first page of 50 by key": select(dated).order_by(dated.c.id).limit(50),
                "page of 50 by key, from the middle": select(dated)
                .where(dated.c.id > objects // 2)
                .order_by(dated.c.id)
                .limit(50),
            }
            timings = {
                name: _median_ms(partial(_read_all, session, statement), repetitions)
                for name, statement in statements.items()
            }
            keys = [rng.randint(1, objects) for _ in range(repetitions + 1)]
            timings["one object by key"] = _median_ms(
                lambda: session.execute(select(dated).where(dated.c.id == keys.pop())).all(),
                repetitions,
            )
            # As a request would: the selectable made anew. At the same time, as_of()
            # reuses the statement it made for that time; at a new time, it builds it.
            keys = [rng.randint(1, objects) for _ in range(repetitions + 1)]

            def one_made_anew() -> object:
                anew = Ticket.as_of(at)
                return session.execute(select(anew).where(anew.c.id == keys.pop())).all()

            timings["one object by key, as_of() each time"] = _median_ms(one_made_anew, repetitions)
            keys = [rng.randint(1, objects) for _ in range(repetitions + 1)]
            # Microseconds apart, where no row was written: the same objects, new times.
            times = [at + timedelta(microseconds=n) for n in range(1, repetitions + 2)]

            def one_at_a_new_time() -> object:
                anew = Ticket.as_of(times.pop())
                return session.execute(select(anew).where(anew.c.id == keys.pop())).all()

            timings["one object by key, as_of() at a new time"] = _median_ms(
                one_at_a_new_time, repetitions
            )
            rows = session.execute(select(dated)).all()
            plans = {}
            if explain:
                statements["one object by key"] = select(dated).where(dated.c.id == objects // 3)
                for name, statement in statements.items():
                    plans[name] = _explain(session, statement)
            session.remove()
            db.engine.dispose()
    return {
        "server": version,
        "objects": objects,
        "history_rows": history_rows,
        "objects_at_time": len(rows),
        "milliseconds": timings,
        "plans": plans,
    }


def _explain(session: Any, statement: Any) -> str:
    """EXPLAIN ANALYZE of ``statement``, sent as SQLAlchemy sends the statement itself."""
    connection = session.connection()

    def explain(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> Any:
        return f"EXPLAIN (ANALYZE, BUFFERS) {sql}", parameters

    event.listen(connection, "before_cursor_execute", explain, retval=True)
    try:
        # The plan's lines, read past the result processing of the statement's columns.
        return "\n".join(line for (line,) in connection.execute(statement).cursor.fetchall())
    finally:
        event.remove(connection, "before_cursor_execute", explain)


@click.command()
@click.option(
    "--database-url",
    help="An existing PostgreSQL server to make the benchmark database on "
    "(default: start an embedded one).",
)
@click.option("--quick", is_flag=True, help="Small sizes: checks the harness in seconds.")
@click.option("--objects", type=click.IntRange(min=20), help="Objects of the model.")
@click.option("--history-rows", type=click.IntRange(min=1), help="Activity rows in all.")
@click.option("--repetitions", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--explain", is_flag=True, help="Print the plan of each read (EXPLAIN ANALYZE).")
def main(
    database_url: str | None,
    quick: bool,
    objects: int | None,
    history_rows: int | None,
    repetitions: int,
    explain: bool,
) -> None:
    """Time Model.as_of() reads: the whole model, a page by key, one object by key."""
    objects = objects or (200 if quick else 10_000)
    history_rows = history_rows or (20_000 if quick else 1_000_000)
    history_rows = max(history_rows, objects * STATES)
    with _server(database_url) as server_url:
        where = make_url(server_url)
        click.echo(
            f"filling {history_rows:,} activity rows on {where.host or 'embedded'}", err=True
        )
        result = run(server_url, objects, history_rows, repetitions, explain)
    click.echo(
        f"PostgreSQL {result['server']}: {result['objects']:,} objects, "
        f"{result['history_rows']:,} activity rows, {result['objects_at_time']:,} objects at "
        "the time read"
    )
    for name, milliseconds in result["milliseconds"].items():
        click.echo(f"  {name:<42} {milliseconds:9.2f} ms (median of {repetitions})")
    for name, plan in result["plans"].items():
        click.echo(f"\n-- {name}\n{plan}")
