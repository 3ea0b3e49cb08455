"""Alembic and the activity table: a real environment running the documented env.py
(``docs/snippets/alembic_env.py``) and index migration
(``docs/snippets/add_history_read_index.py``) against an application factory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from textwrap import dedent

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import OperationalError

SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"
APP_MODULE = "myapp"  # the name the documented env.py imports

APP_SOURCE = """
from flask import Flask

from chrononaut import Versioned, VersionedSQLAlchemy

db = VersionedSQLAlchemy()
apps = []  # for the test's clean-up


class Invoice(db.Model, Versioned):
    __tablename__ = "invoice"
    id = db.Column(db.Integer, primary_key=True)
    total = db.Column(db.Numeric(10, 2))


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = {url!r}
    db.init_app(app)
    apps.append(app)
    return app
"""

#: An env.py without the documented hooks: what autogenerate does when left alone.
PLAIN_ENV = f"""
from alembic import context

from {APP_MODULE} import create_app, db

with create_app().app_context(), db.engine.connect() as connection:
    context.configure(connection=connection, target_metadata=db.metadata)
    with context.begin_transaction():
        context.run_migrations()
"""

TABLE = "chrononaut_activity"
ORIGINAL_INDEX = "ix_chrononaut_activity_key_table_name"
READ_INDEX = "ix_chrononaut_activity_table_name_key_changed"

#: The activity table and a versioned table as Chrononaut 0.5 created them.
SCHEMA_OF_0_5 = f"""
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    changed timestamp with time zone NOT NULL,
    version integer NOT NULL,
    key jsonb DEFAULT '{{}}' NOT NULL,
    data jsonb DEFAULT '{{}}' NOT NULL,
    user_info jsonb DEFAULT '{{}}' NOT NULL,
    extra_info jsonb DEFAULT '{{}}' NOT NULL
);
CREATE INDEX {ORIGINAL_INDEX} ON {TABLE} (key, table_name);
CREATE TABLE invoice (id integer PRIMARY KEY, total numeric(10, 2), version integer);
INSERT INTO invoice VALUES (1, 10.00, 1);
INSERT INTO {TABLE} (table_name, changed, version, key, data) VALUES
    ('invoice', '2023-01-01 00:00+00', 0, '{{"id": 1}}', '{{"id": 1, "total": "9.00"}}'),
    ('invoice', '2023-01-02 00:00+00', 1, '{{"id": 1}}', '{{"id": 1, "total": "10.00"}}');
"""

#: A Chrononaut 0.1 database: the versioned table and its history table.
SCHEMA_OF_0_1 = """
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


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def alembic_env(tmp_path, database_url, monkeypatch):
    """An Alembic environment with the documented env.py, for an app made by a factory."""
    url = database_url.render_as_string(hide_password=False)
    (tmp_path / f"{APP_MODULE}.py").write_text(dedent(APP_SOURCE).format(url=url))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, APP_MODULE, raising=False)
    config = Config(str(tmp_path / "alembic.ini"))
    command.init(config, str(tmp_path / "migrations"))
    config.set_main_option("script_location", str(tmp_path / "migrations"))
    shutil.copy(SNIPPETS / "alembic_env.py", env_path(config))
    yield config
    app_module = sys.modules.pop(APP_MODULE, None)
    for app in getattr(app_module, "apps", []):
        with app.app_context():
            app_module.db.engine.dispose()


def env_path(config: Config) -> Path:
    return Path(config.get_main_option("script_location")) / "env.py"


def versions(config: Config) -> Path:
    return Path(config.get_main_option("script_location")) / "versions"


def new_script(config: Config) -> str:
    """Autogenerate a revision and return its source."""
    script = command.revision(config, message="history", autogenerate=True)
    return Path(script.path).read_text()


def remove_scripts(config: Config) -> None:
    for script in versions(config).glob("*.py"):
        script.unlink()


def operations(script: str) -> list[str]:
    """The ``op.`` lines of a generated script, upgrade and downgrade."""
    return [line.strip() for line in script.splitlines() if line.strip().startswith("op.")]


def activity_indexes(engine) -> dict[str, tuple[list[str], bool]]:
    """Each index of the activity table: its columns, and whether it is valid."""
    with engine.connect() as connection:
        names = {
            index["name"]: index["column_names"] for index in inspect(connection).get_indexes(TABLE)
        }
        valid = dict(
            connection.exec_driver_sql(
                "SELECT c.relname, i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                f" WHERE i.indrelid = '{TABLE}'::regclass AND NOT i.indisprimary"
            ).all()
        )
    return {name: (columns, valid[name]) for name, columns in names.items()}


NEW_ONLY = {READ_INDEX: (["table_name", "key", "changed", "id"], True)}
ORIGINAL_ONLY = {ORIGINAL_INDEX: (["key", "table_name"], True)}


def test_autogenerate_creates_the_activity_table_for_an_app_factory(alembic_env, engine):
    source = new_script(alembic_env)

    activity = sys.modules[APP_MODULE].db.metadata.tables[TABLE]
    assert f"op.create_table('{TABLE}'" in source
    for column in activity.columns:
        assert f"sa.Column('{column.name}'" in source
    assert {index.name for index in activity.indexes} == {READ_INDEX}
    assert (
        f"op.create_index('{READ_INDEX}', '{TABLE}', ['table_name', 'key', 'changed', 'id']"
        in source
    )
    assert "op.create_table('invoice'" in source

    command.upgrade(alembic_env, "head")
    with engine.connect() as connection:
        assert {TABLE, "invoice", "alembic_version"} <= set(inspect(connection).get_table_names())
        assert {column["name"] for column in inspect(connection).get_columns(TABLE)} == {
            column.name for column in activity.columns
        }
        # Nothing is left for the next autogenerate to find.
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, sys.modules[APP_MODULE].db.metadata) == []
    assert activity_indexes(engine) == NEW_ONLY


def test_the_documented_env_runs_in_the_context_flask_db_pushes(alembic_env, engine):
    # Flask-Migrate's `flask db upgrade` runs env.py inside the application's context.
    new_script(alembic_env)
    apps = sys.modules[APP_MODULE].apps
    app = sys.modules[APP_MODULE].create_app()
    with app.app_context():
        command.upgrade(alembic_env, "head")
    assert apps[-1] is app  # the env made no app of its own
    assert activity_indexes(engine) == NEW_ONLY


def test_upgrading_from_0_1_keeps_the_history_tables_until_step_3(alembic_env, engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(SCHEMA_OF_0_1)
    # What the migration page warns about: left alone, autogenerate drops them.
    env_path(alembic_env).write_text(PLAIN_ENV)
    assert "op.drop_table('invoice_history')" in new_script(alembic_env)
    remove_scripts(alembic_env)

    shutil.copy(SNIPPETS / "alembic_env.py", env_path(alembic_env))
    guarded = new_script(alembic_env)
    assert f"op.create_table('{TABLE}'" in guarded
    assert "invoice_history" not in guarded
    command.upgrade(alembic_env, "head")
    with engine.connect() as connection:
        assert {TABLE, "invoice_history"} <= set(inspect(connection).get_table_names())

    # Step 3, once the history is converted: emptied, the set lets the drop through.
    documented = (SNIPPETS / "alembic_env.py").read_text()
    emptied = documented.replace(
        'LEGACY_HISTORY_TABLES = {"customer_history", "invoice_history"}',
        "LEGACY_HISTORY_TABLES = set()",
    )
    assert emptied != documented
    env_path(alembic_env).write_text(emptied)
    assert operations(new_script(alembic_env))[0] == "op.drop_table('invoice_history')"
    command.upgrade(alembic_env, "head")
    with engine.connect() as connection:
        assert "invoice_history" not in inspect(connection).get_table_names()


def test_a_0_5_database_keeps_its_index_until_the_swap_migration(alembic_env, engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(SCHEMA_OF_0_5)

    # Left alone, autogenerate swaps the indexes with a blocking CREATE INDEX.
    env_path(alembic_env).write_text(PLAIN_ENV)
    assert operations(new_script(alembic_env)) == [
        f"op.drop_index(op.f('{ORIGINAL_INDEX}'), table_name='{TABLE}')",
        f"op.create_index('{READ_INDEX}', '{TABLE}', ['table_name', 'key', 'changed', 'id'], "
        "unique=False)",
        f"op.drop_index('{READ_INDEX}', table_name='{TABLE}')",
        f"op.create_index(op.f('{ORIGINAL_INDEX}'), '{TABLE}', ['key', 'table_name'], "
        "unique=False)",
    ]
    remove_scripts(alembic_env)

    # The documented env.py proposes nothing while the original index is there.
    shutil.copy(SNIPPETS / "alembic_env.py", env_path(alembic_env))
    assert operations(new_script(alembic_env)) == []
    remove_scripts(alembic_env)

    # The documented swap, as the only revision: up, down, up.
    shutil.copy(SNIPPETS / "add_history_read_index.py", versions(alembic_env))
    seen = []
    for step, target in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        getattr(command, step)(alembic_env, target)
        seen.append(activity_indexes(engine))
    assert seen == [NEW_ONLY, ORIGINAL_ONLY, NEW_ONLY]

    # Swapped: the documented env.py finds nothing more to do, and neither does a
    # comparison without any hook.
    assert operations(new_script(alembic_env)) == []
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, sys.modules[APP_MODULE].db.metadata) == []


def test_the_swap_migration_rebuilds_an_index_a_failed_build_left_invalid(
    alembic_env, engine, database_url
):
    with engine.begin() as connection:
        connection.exec_driver_sql(SCHEMA_OF_0_5)
    shutil.copy(SNIPPETS / "add_history_read_index.py", versions(alembic_env))
    database = database_url.database

    # CREATE INDEX CONCURRENTLY waits for the transactions writing to the table; one
    # that stays open makes it time out, and leaves an invalid index behind.
    with engine.begin() as connection:
        connection.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET lock_timeout = '500ms'")
    with engine.connect() as writer:
        writer.exec_driver_sql(
            f"INSERT INTO {TABLE} (table_name, changed, version) VALUES ('x', now(), 0)"
        )
        with pytest.raises(OperationalError, match="lock timeout"):
            command.upgrade(alembic_env, "head")
        writer.rollback()
    with engine.begin() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" RESET lock_timeout')
    assert activity_indexes(engine) == {
        **ORIGINAL_ONLY,
        READ_INDEX: (["table_name", "key", "changed", "id"], False),
    }

    command.upgrade(alembic_env, "head")
    assert activity_indexes(engine) == NEW_ONLY
