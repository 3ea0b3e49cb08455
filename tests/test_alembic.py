"""Alembic sees the activity table: a real environment, autogenerate and upgrade."""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

APP_MODULE = "chrononaut_alembic_test_app"

APP_SOURCE = """
from flask import Flask

from chrononaut import Versioned, VersionedSQLAlchemy

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = {url!r}
db = VersionedSQLAlchemy(app)


class Invoice(db.Model, Versioned):
    __tablename__ = "invoice"
    id = db.Column(db.Integer, primary_key=True)
    total = db.Column(db.Numeric(10, 2))
"""

ENV_SOURCE = f"""
from alembic import context

from {APP_MODULE} import app, db

# The hook of docs/migration.rst, or None.
LEGACY_HISTORY_TABLES = {{"invoice_history"}}


def keep_legacy_history(object_, name, type_, reflected, compare_to):
    return not (type_ == "table" and name in LEGACY_HISTORY_TABLES)


with app.app_context(), db.engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=db.metadata, include_object=INCLUDE_OBJECT
    )
    with context.begin_transaction():
        context.run_migrations()
"""


def write_env(config: Config, include_object: str) -> None:
    env = Path(config.get_main_option("script_location")) / "env.py"
    env.write_text(ENV_SOURCE.replace("INCLUDE_OBJECT", include_object))


def new_script(config: Config) -> str:
    """Autogenerate a revision and return its source."""
    script = command.revision(config, message="history", autogenerate=True)
    return Path(script.path).read_text()


@pytest.fixture
def alembic_env(tmp_path, database_url, monkeypatch):
    """An Alembic environment whose env.py imports a Flask app that uses the extension."""
    url = database_url.render_as_string(hide_password=False)
    (tmp_path / f"{APP_MODULE}.py").write_text(dedent(APP_SOURCE).format(url=url))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, APP_MODULE, raising=False)
    config = Config(str(tmp_path / "alembic.ini"))
    command.init(config, str(tmp_path / "migrations"))
    config.set_main_option("script_location", str(tmp_path / "migrations"))
    write_env(config, "None")
    yield config
    app_module = sys.modules.pop(APP_MODULE, None)
    if app_module is not None:
        with app_module.app.app_context():
            app_module.db.engine.dispose()


def test_autogenerate_creates_the_activity_table_and_its_indexes(alembic_env, database_url):
    source = new_script(alembic_env)

    app_module = sys.modules[APP_MODULE]
    activity = app_module.db.metadata.tables["chrononaut_activity"]
    assert "op.create_table('chrononaut_activity'" in source
    for column in activity.columns:
        assert f"sa.Column('{column.name}'" in source
    index_names = {index.name for index in activity.indexes}
    assert "ix_chrononaut_activity_table_name_key_changed" in index_names
    for index in activity.indexes:
        columns = ", ".join(f"'{column.name}'" for column in index.columns)
        assert f"op.create_index('{index.name}', 'chrononaut_activity', [{columns}]" in source
    assert "op.create_table('invoice'" in source

    command.upgrade(alembic_env, "head")
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            database = inspect(connection)
            assert {"chrononaut_activity", "invoice", "alembic_version"} <= set(
                database.get_table_names()
            )
            assert {column["name"] for column in database.get_columns("chrononaut_activity")} == {
                column.name for column in activity.columns
            }
            assert {
                index["name"] for index in database.get_indexes("chrononaut_activity")
            } == index_names
            # Nothing is left for the next autogenerate to find.
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, app_module.db.metadata) == []
    finally:
        engine.dispose()


LEGACY_SCHEMA = """
CREATE TABLE invoice (id integer PRIMARY KEY, total numeric(10, 2), version integer);
CREATE TABLE invoice_history (
    id integer NOT NULL,
    total numeric(10, 2),
    version integer NOT NULL,
    changed timestamp without time zone,
    change_info jsonb,
    PRIMARY KEY (id, version)
);
"""


def test_upgrading_from_0_1_keeps_the_history_tables_with_include_object(alembic_env, database_url):
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(LEGACY_SCHEMA)
        # What the migration page warns about: left alone, autogenerate drops them.
        unguarded = new_script(alembic_env)
        assert "op.drop_table('invoice_history')" in unguarded
        for script in (Path(alembic_env.get_main_option("script_location")) / "versions").glob(
            "*.py"
        ):
            script.unlink()

        write_env(alembic_env, "keep_legacy_history")
        guarded = new_script(alembic_env)
        assert "op.create_table('chrononaut_activity'" in guarded
        assert "invoice_history" not in guarded
        command.upgrade(alembic_env, "head")
        with engine.connect() as connection:
            assert {"chrononaut_activity", "invoice_history"} <= set(
                inspect(connection).get_table_names()
            )
    finally:
        engine.dispose()
