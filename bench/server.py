"""The PostgreSQL server the benchmark runs on, and the fresh databases it makes there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click
import psycopg2
from sqlalchemy.engine import URL, make_url

from chrononaut.embedded import embedded_server

#: The DBAPI drivers the benchmark can run on, by the name ``--driver`` takes.
DRIVERS = {"psycopg2": "postgresql+psycopg2", "psycopg": "postgresql+psycopg"}


@contextmanager
def admin_connection(server_url: URL) -> Iterator[psycopg2.extensions.connection]:
    """An autocommit connection to the server's maintenance database."""
    url = server_url.set(drivername="postgresql", database="postgres")
    connection = psycopg2.connect(url.render_as_string(hide_password=False))
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def fresh_database(server_url: URL | str) -> Iterator[URL]:
    """Create an empty, uniquely named database, yield its URL, and drop it after.

    The URL keeps the driver of ``server_url`` (psycopg2 if it names none).
    """
    server_url = make_url(server_url)
    driver = server_url.drivername if "+" in server_url.drivername else DRIVERS["psycopg2"]
    name = f"chrononaut_bench_{uuid.uuid4().hex[:12]}"
    with admin_connection(server_url) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.set(drivername=driver, database=name)
    finally:
        with admin_connection(server_url) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def server(database_url: str | None, driver: str) -> Iterator[str]:
    """The URL of the server to measure on, with ``driver``'s dialect."""
    if database_url:
        url = make_url(database_url).set(drivername=DRIVERS[driver])
        yield url.render_as_string(hide_password=False)
        return
    # Without fsync, like the test suite's server: the benchmark compares the libraries'
    # own costs, and a durable commit only adds the same disk wait to each.
    with embedded_server(DRIVERS[driver], durable=False) as url:
        yield url.render_as_string(hide_password=False)


driver_option = click.option(
    "--driver",
    type=click.Choice(list(DRIVERS)),
    default="psycopg2",
    show_default=True,
    help="The DBAPI driver SQLAlchemy talks to PostgreSQL through.",
)
