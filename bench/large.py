"""``python -m bench large``: the partitioned layout against the plain one, on a large
history (issue 18). Not run by ``--quick`` nor by CI: at the full size it writes
10,000,000 activity rows per layout, which takes a while and several GB of disk.

For each layout, a fresh database gets ``--rows`` activity rows spread evenly over the
24 months before now (one partition each in the partitioned layout, which gets them
all created first), written server-side in the format Chrononaut records: one row in
ten belongs to the ``ticket`` model (``--rows / 10 / 10,000`` versions for each of
10,000 tickets), the others to seven other tables. After ``VACUUM ANALYZE`` it times
``version_at()`` and ``versions()`` of one ticket, one page of 50 tickets of
``Ticket.as_of()`` and the whole ``Ticket.as_of()``, each at a random time of the
history; then writes: commits of one update and commits of 100 updates, recorded as
an application records them. It prints the medians, the rows written per second, and
the bytes each activity row takes with its indexes.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import click
from flask import Flask
from sqlalchemy import String, select, text
from sqlalchemy.orm import Mapped, mapped_column

from bench.server import fresh_database
from chrononaut import Versioned, VersionedSQLAlchemy
from chrononaut.embedded import embedded_server
from chrononaut.history.partitions import INTERVALS, partition_ddl, partition_name

#: The tickets; every tenth activity row is one of theirs.
TICKETS = 10_000
#: The months the history spans.
MONTHS = 24
LAYOUTS = {"plain": None, "partitioned": "monthly"}

_FILL = """
INSERT INTO chrononaut_activity
    (table_name, changed, version, key, data, user_info, extra_info, operation, transaction_id)
SELECT CASE WHEN n % 10 = 0 THEN 'ticket' ELSE 'other_' || n % 7 END,
       CAST(:start AS timestamptz) + CAST(:span AS interval) * (CAST(n AS float8) / :rows),
       n / 10 / :tickets,
       jsonb_build_object('id', (n / 10) % :tickets + 1),
       CASE WHEN n % 10 = 0
            THEN jsonb_build_object('id', (n / 10) % :tickets + 1,
                                    'title', 'ticket state ' || n / 10 / :tickets,
                                    'version', n / 10 / :tickets)
            ELSE jsonb_build_object('name', repeat('x', 60), 'version', n / 10 / :tickets)
       END,
       '{"user_id": null, "remote_addr": null}', '{}',
       CASE WHEN n / 10 / :tickets = 0 THEN 'insert' ELSE 'update' END,
       n
FROM generate_series(0, :rows - 1) AS n
"""

_LIVE = """
INSERT INTO ticket (id, title, version)
SELECT object, 'ticket state ' || :last, :last FROM generate_series(1, :tickets) AS object
"""

_PARTITIONS = """
SELECT c.relname FROM pg_partition_tree('chrononaut_activity') JOIN pg_class c ON c.oid = relid
"""

# A partitioned table's own size is 0, and a plain table has no partition tree.
_SIZE = """
SELECT pg_total_relation_size('chrononaut_activity')
       + coalesce(sum(pg_total_relation_size(relid)), 0)
FROM pg_partition_tree('chrononaut_activity')
"""


def _app(database_url: str, partitions: str | None) -> tuple[Flask, VersionedSQLAlchemy, Any]:
    app = Flask("bench-large")
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    app.config["CHRONONAUT_ACTIVITY_PARTITIONS"] = partitions
    db = VersionedSQLAlchemy(app)

    class Ticket(db.Model, Versioned):  # type: ignore[name-defined, misc]
        __tablename__ = "ticket"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column(String(80))

    return app, db, Ticket


def _median_ms(read: Callable[[], object], repetitions: int) -> float:
    read()  # warms the caches: the plan, the pages, SQLAlchemy's
    timings = []
    for _ in range(repetitions):
        started = time.perf_counter()
        read()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def run(server_url: str, layout: str, rows: int, repetitions: int) -> dict[str, Any]:
    """Build the history in ``layout`` on a fresh database and time reads and writes."""
    rng = random.Random(0)
    now = datetime.now(timezone.utc)
    monthly = INTERVALS["monthly"]
    first = monthly.start(now)
    for _ in range(MONTHS - 1):
        first = monthly.start(first - timedelta(days=1))
    span = now - first
    result: dict[str, Any] = {"layout": layout, "rows": rows}
    with fresh_database(server_url) as url:
        app, db, Ticket = _app(url.render_as_string(hide_password=False), LAYOUTS[layout])
        with app.app_context():
            db.create_all()
            session = db.session
            table = db.activity_cls.__table__
            if LAYOUTS[layout]:
                existing = set(session.scalars(text(_PARTITIONS)))
                for start in monthly.starts(first, MONTHS):
                    if partition_name(table, monthly, start) not in existing:
                        session.execute(text(partition_ddl(table, monthly, start)))
            started = time.perf_counter()
            session.execute(
                text(_FILL),
                {"start": first, "span": span, "rows": rows, "tickets": TICKETS},
            )
            last = (rows - 1) // 10 // TICKETS
            session.execute(text(_LIVE), {"last": last, "tickets": TICKETS})
            session.commit()
            result["fill_rows_per_second"] = rows / (time.perf_counter() - started)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
                admin.exec_driver_sql("VACUUM ANALYZE")
                result["bytes_per_row"] = admin.execute(text(_SIZE)).scalar_one() / rows
                result["server"] = admin.exec_driver_sql("SHOW server_version").scalar()

            def moment() -> datetime:
                return first + span * rng.random()

            def ticket() -> Any:
                return session.get(Ticket, rng.randint(1, TICKETS))

            timings = {
                "version_at() of one ticket": _median_ms(
                    lambda: ticket().version_at(moment()), repetitions
                ),
                "versions() of one ticket": _median_ms(lambda: ticket().versions(), repetitions),
            }

            def page() -> object:
                dated = Ticket.as_of(moment())
                return session.execute(select(dated).order_by(dated.c.id).limit(50)).all()

            def whole() -> object:
                return session.execute(select(Ticket.as_of(moment()))).all()

            timings["as_of(): a page of 50 tickets by key"] = _median_ms(page, repetitions)
            timings["as_of(): every ticket"] = _median_ms(whole, max(repetitions // 10, 1))
            session.commit()
            result["milliseconds"] = timings
            result["rows_written_per_second"] = {
                "commits of 1 update": _writes(session, Ticket, rng, 1, repetitions * 10),
                "commits of 100 updates": _writes(session, Ticket, rng, 100, repetitions),
            }
            session.remove()
            db.engine.dispose()
    return result


def _writes(session: Any, model: Any, rng: random.Random, per_commit: int, commits: int) -> float:
    """Activity rows recorded per second by ``commits`` commits of ``per_commit``
    updates each."""
    started = time.perf_counter()
    for _ in range(commits):
        for key in rng.sample(range(1, TICKETS + 1), per_commit):
            session.get(model, key).title = f"changed {rng.random()}"
        session.commit()
    return per_commit * commits / (time.perf_counter() - started)


@contextmanager
def _server(database_url: str | None) -> Iterator[str]:
    if database_url:
        yield database_url
        return
    with embedded_server("postgresql+psycopg2", durable=False) as url:
        yield url.render_as_string(hide_password=False)


@click.command()
@click.option(
    "--database-url",
    help="An existing PostgreSQL server to make the benchmark databases on "
    "(default: start an embedded one).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=10 * TICKETS),
    default=10_000_000,
    show_default=True,
    help="Activity rows of each layout.",
)
@click.option("--repetitions", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--layout", "layouts", type=click.Choice(list(LAYOUTS)), multiple=True, help="Only these."
)
def main(database_url: str | None, rows: int, repetitions: int, layouts: tuple[str, ...]) -> None:
    """Time reads and writes at a large history, partitioned (24 monthly partitions)
    against plain."""
    with _server(database_url) as server_url:
        results = []
        for layout in layouts or tuple(LAYOUTS):
            click.echo(f"{layout}: filling {rows:,} activity rows", err=True)
            results.append(run(server_url, layout, rows, repetitions))
    for result in results:
        click.echo(
            f"{result['layout']} (PostgreSQL {result['server']}, {result['rows']:,} rows): "
            f"{result['bytes_per_row']:.0f} bytes per activity row with its indexes, "
            f"filled at {result['fill_rows_per_second']:,.0f} rows/s"
        )
        for name, milliseconds in result["milliseconds"].items():
            click.echo(f"  {name:<40} {milliseconds:9.2f} ms (median)")
        for name, per_second in result["rows_written_per_second"].items():
            click.echo(f"  {name:<40} {per_second:9.0f} rows/s")
