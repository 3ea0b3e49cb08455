"""Recipe: an audit page that only administrators may open."""

from flask import Flask
from flask_login import current_user

from chrononaut.views import history_blueprint


def may_audit() -> bool:
    # Called on every request to the viewer: history holds every past value of every
    # tracked column, so it is for administrators only.
    return bool(current_user.is_authenticated and current_user.is_admin)


def add_audit_page(app: Flask) -> None:
    app.register_blueprint(
        history_blueprint(may_audit, name="audit", per_page=50),
        url_prefix="/admin/history",
    )
