"""Recipe: the history of one object in a JSON API response."""

from collections.abc import Callable

from flask import Flask, abort, jsonify, request
from flask.typing import ResponseReturnValue

from chrononaut import VersionedSQLAlchemy
from chrononaut.interfaces.export import timeline_document
from chrononaut.interfaces.text import parse_key
from chrononaut.interfaces.timeline import object_timeline, versioned_model


def add_history_api(app: Flask, db: VersionedSQLAlchemy, may_read: Callable[[], bool]) -> None:
    @app.get("/api/history/<model_name>")
    def object_history(model_name: str) -> ResponseReturnValue:
        if not may_read():
            abort(403)
        try:
            model = versioned_model(model_name)  # a class or table name
            key = parse_key(model, request.args.get("key", ""))  # 7, or a JSON object
        except ValueError as error:
            abort(404, str(error))
        entries = object_timeline(db.session, model, key)
        if not entries:
            abort(404, "no recorded history")
        return jsonify(timeline_document(model, key, entries))
