"""The history viewer: a blueprint with an object's timeline and the activity feed.

Register it with a permission callback; without one every page answers 403::

    from flask_login import current_user
    from chrononaut.views import history_blueprint

    app.register_blueprint(
        history_blueprint(lambda: current_user.is_authenticated and current_user.is_admin),
        url_prefix="/history",
    )
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.serialization import UTC
from chrononaut.interfaces.display import (
    MISSING,
    MISSING_LABEL,
    column_changes,
    model_label,
    readable_state,
)
from chrononaut.interfaces.state import state_at
from chrononaut.interfaces.text import (
    format_key,
    parse_key,
    parse_page,
    parse_time,
    parse_user,
    utc,
    visible,
)
from chrononaut.interfaces.timeline import (
    FILTERABLE_KINDS,
    HIDDEN_MARKER,
    TimelineEntry,
    activity_feed,
    extension,
    has_been_deleted,
    newest_life,
    object_timeline,
    parse_kind,
    table_name_of,
    versioned_model,
    versioned_models,
)

# The query parameters of the feed that its page links keep.
_FILTERS = ("model", "kind", "user", "since", "until")


def history_blueprint(
    permission: Callable[[], bool] | None = None,
    *,
    name: str = "chrononaut",
    per_page: int = 25,
) -> Blueprint:
    """Make the blueprint of the history viewer.

    Its pages: ``/`` lists the versioned models, ``/activity`` is the activity feed
    (filters ``model``, ``kind``, ``user``, ``since``, ``until``; paging with ``page``),
    and ``/objects/<model>?key=<key>`` is the timeline of one object, with the model
    given by class or table name and the key as
    :func:`chrononaut.interfaces.text.parse_key` reads it. Its stylesheet, under
    ``/static/``, is public: it holds no data.

    :param permission: called without arguments on every request for a page, inside the
        request context; the page is shown only when it returns true. ``None`` (the
        default) refuses every page with 403, so history is never shown by accident.
    :param name: the blueprint name, for registering more than one viewer.
    :param per_page: how many changes one page of the activity feed shows, and how
        many objects one page of a model's state at a time.
    :return: a blueprint to pass to :meth:`flask.Flask.register_blueprint`.
    :raises ValueError: ``per_page`` is less than 1.
    """
    if per_page < 1:
        raise InvalidArgumentError(f"per_page must be at least 1, not {per_page}")
    blueprint = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static/chrononaut",
        static_url_path="/static",
    )

    @blueprint.before_request
    def check_permission() -> None:
        # The stylesheet is the same for everyone, so that the 403 page and an app's
        # own pages that link it are styled before anyone signs in.
        if request.endpoint == f"{request.blueprint}.static":
            return
        if permission is None or not permission():
            abort(403)

    @blueprint.errorhandler(403)
    @blueprint.errorhandler(404)
    def error_page(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        return render_template("chrononaut/error.html", error=error, code=code), code

    @blueprint.app_template_filter("chrononaut_time")
    def format_time(moment: datetime) -> str:
        return utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")

    @blueprint.app_template_filter("chrononaut_visible")
    def show_visibly(text: str) -> str:
        # Line breaks stay: a page shows them inside the value's own cell.
        return "\n".join(visible(line) for line in str(text).split("\n"))

    @blueprint.context_processor
    def marks() -> dict[str, Any]:
        return {
            "missing": MISSING,
            "missing_label": MISSING_LABEL,
            "hidden_marker": HIDDEN_MARKER,
            "change_anchor": change_anchor,
        }

    @blueprint.route("/")
    def index() -> str:
        return render_template("chrononaut/index.html", models=versioned_models())

    @blueprint.route("/activity")
    def activity() -> tuple[str, int]:
        return _activity_page(per_page)

    @blueprint.route("/objects/<model_name>")
    def timeline(model_name: str) -> str:
        return _timeline_page(model_name)

    @blueprint.route("/objects/<model_name>/as-of")
    def state(model_name: str) -> tuple[str, int]:
        return _state_page(model_name, per_page)

    return blueprint


def change_anchor(entry: TimelineEntry) -> str:
    """The id of an entry's heading on the timeline page, which the feed links to:
    unlike version numbers, which start again when a key is used again, it names one
    change."""
    return f"change-{entry.snapshot.chrononaut_activity_id}"


def _timeline_page(model_name: str) -> str:
    try:
        model = versioned_model(model_name)
    except ValueError as error:
        abort(404, str(error))
    raw_key = request.args.get("key", "")
    try:
        key = parse_key(model, raw_key)
    except ValueError as error:
        abort(404, str(error))
    entries = object_timeline(extension().session(), model, key)
    if not entries:
        abort(404, f"{model.__name__} {visible(raw_key)} has no recorded history.")
    return render_template(
        "chrononaut/timeline.html",
        model=model,
        key=key,
        entries=[
            (entry, column_changes(entry), readable_state(entry)) for entry in reversed(entries)
        ],
        # The newest entries, those of the object that has the key now (or had it
        # last), are also reachable as #v<version>: in earlier lives, numbers repeat.
        newest_life=len(newest_life(entries)),
        deleted=has_been_deleted(entries),
    )


def _state_page(model_name: str, per_page: int) -> tuple[str, int]:
    try:
        model = versioned_model(model_name)
    except ValueError as error:
        abort(404, str(error))
    args = request.args
    errors = []
    at = datetime.now(UTC)
    if args.get("at"):
        try:
            at = parse_time(args["at"])
        except ValueError as error:
            errors.append(f"at: {error}")
    try:
        number = parse_page(args.get("page", "1"), per_page)
    except ValueError as error:
        errors.append(f"page: {error}")
        number = 1
    page = None
    if not errors:
        try:
            page = state_at(
                extension().session(), model, at, limit=per_page, offset=(number - 1) * per_page
            )
        except ChrononautException as error:
            # A table made before the time-travel columns: the message names the migration.
            errors.append(str(error))
    query: dict[str, Any] = {"at": utc(at).isoformat()}
    html = render_template(
        "chrononaut/state.html",
        model=model,
        at=at,
        page=page,
        rows=[
            (values, changed, url_for(".timeline", model_name=model.__name__, key=format_key(key)))
            for key, values, changed in (page.rows if page else [])
        ],
        errors=errors,
        number=number,
        previous_url=url_for(".state", model_name=model.__name__, page=number - 1, **query)
        if number > 1
        else None,
        next_url=url_for(".state", model_name=model.__name__, page=number + 1, **query)
        if page and page.has_next
        else None,
    )
    return html, 400 if errors else 200


def _activity_page(per_page: int) -> tuple[str, int]:
    args = request.args
    filters: dict[str, Any] = {}
    errors = []
    model_name = args.get("model", "")
    if model_name:
        try:
            filters["table_name"] = table_name_of(versioned_model(model_name))
        except ValueError as error:
            errors.append(str(error))
    if args.get("kind"):
        try:
            filters["kind"] = parse_kind(args["kind"])
        except ValueError as error:
            errors.append(f"kind: {error}")
    if args.get("user"):
        try:
            filters["user_id"] = parse_user(args["user"])
        except ValueError as error:
            errors.append(f"user: {error}")
    for bound in ("since", "until"):
        if args.get(bound):
            try:
                filters[bound] = parse_time(args[bound])
            except ValueError as error:
                errors.append(f"{bound}: {error}")
    try:
        number = parse_page(args.get("page", "1"), per_page)
    except ValueError as error:
        errors.append(f"page: {error}")
        number = 1

    entries = []
    if not errors:
        db = extension()
        # One row more than a page tells whether there is a next page without a COUNT.
        entries = activity_feed(
            db.session(),
            db.activity_cls,
            limit=per_page + 1,
            offset=(number - 1) * per_page,
            **filters,
        )
    has_next = len(entries) > per_page
    # Only the filters: other names could be url_for's own arguments (_external...).
    query: dict[str, Any] = {name: args[name] for name in _FILTERS if args.get(name)}
    html = render_template(
        "chrononaut/activity.html",
        changes=[_feed_row(entry) for entry in entries[:per_page]],
        models=versioned_models(),
        kinds=FILTERABLE_KINDS,
        args=args,
        errors=errors,
        page=number,
        previous_url=url_for(".activity", page=number - 1, **query) if number > 1 else None,
        next_url=url_for(".activity", page=number + 1, **query) if has_next else None,
    )
    return html, 400 if errors else 200


def _feed_row(entry: TimelineEntry) -> dict[str, Any]:
    key = format_key(dict(entry.snapshot.chrononaut_key))
    url = None
    if entry.model is not None:
        url = url_for(
            ".timeline", model_name=entry.model.__name__, key=key, _anchor=change_anchor(entry)
        )
    return {"entry": entry, "model": model_label(entry), "key": key, "url": url}
