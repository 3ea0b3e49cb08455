"""The ``flask chrononaut`` command group."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chrononaut.interfaces.timeline import versioned_model


def test_group_is_registered_on_the_app(app, db):
    result = app.test_cli_runner().invoke(args=["chrononaut", "--help"])
    assert result.exit_code == 0, result.output
    assert "Inspect and migrate Chrononaut history." in result.output
    for command in ("activity", "convert", "history"):
        assert command in result.output


def test_importing_the_package_and_registering_it_loads_neither_cli_nor_viewer():
    # A web process pays for neither; rich is an extra that it need not install.
    # (click itself is always loaded: Flask imports it.)
    probe = (
        "import sys, flask, chrononaut\n"
        "app = flask.Flask('probe')\n"
        "app.config['SQLALCHEMY_DATABASE_URI'] = 'postgresql+psycopg2://unused/probe'\n"
        "db = chrononaut.VersionedSQLAlchemy(app)\n"
        "loaded = [name for name in sys.modules if name == 'rich' or name.startswith("
        "('chrononaut.interfaces', 'chrononaut.views', 'chrononaut.maintenance'))]\n"
        "print(loaded)"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_versioned_model_by_class_or_table_name(db, models):
    assert versioned_model("Todo") is models.Todo
    assert versioned_model(models.Todo.__table__.name) is models.Todo


@pytest.mark.parametrize("name", ["Nope", "chrononaut_activity"])
def test_versioned_model_refuses_unknown_and_unversioned_names(db, models, name):
    with pytest.raises(ValueError, match="no versioned model named") as error:
        versioned_model(name)
    assert "Todo" in str(error.value)
