"""The PostgreSQL server the benchmark runs on, and the fresh databases it makes there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from sqlalchemy.engine import URL, make_url


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
    """Create an empty, uniquely named database, yield its URL, and drop it after."""
    server_url = make_url(server_url)
    name = f"chrononaut_bench_{uuid.uuid4().hex[:12]}"
    with admin_connection(server_url) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.set(drivername="postgresql+psycopg2", database=name)
    finally:
        with admin_connection(server_url) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
