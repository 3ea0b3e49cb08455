"""The ``flask chrononaut`` command group, registered on the app by the extension."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from chrononaut.versioned import Versioned

chrononaut_cli = AppGroup("chrononaut", help="Inspect and migrate Chrononaut history.")


def extension() -> Any:
    """Return the app's :class:`~chrononaut.VersionedSQLAlchemy`."""
    return current_app.extensions["chrononaut"]


def versioned_model(name: str) -> type[Versioned]:
    """Return the versioned model named ``name`` (class name or table name).

    :raises click.BadParameter: no versioned model of the app's ``db.Model`` has that name.
    """
    models = [
        mapper.class_
        for mapper in extension().Model.registry.mappers
        if issubclass(mapper.class_, Versioned)
    ]
    for model in models:
        if name in (model.__name__, model.__table__.name):
            return model
    known = ", ".join(sorted(model.__name__ for model in models)) or "none"
    raise click.BadParameter(f"no versioned model named {name!r} (known: {known})")
