"""Celery tasks that record who queued them, and why.

Queueing a task copies the open ``acting_as`` / ``extra_change_info`` blocks into a
header of its message; the worker runs the task in the Flask application context,
inside the same blocks.
"""

from typing import Any

from celery import Celery, Task
from celery.signals import before_task_publish
from flask import Flask

import chrononaut

#: The message header that carries the change context.
CHANGE_CONTEXT_HEADER = "chrononaut_change_context"


@before_task_publish.connect
def send_change_context(headers: dict[str, Any], **kwargs: Any) -> None:
    # Runs in the process that queues the task, inside the caller's blocks.
    context = chrononaut.current_change_context()
    if context is not None:
        headers[CHANGE_CONTEXT_HEADER] = context


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            # The worker turns the message's headers into attributes of the request.
            context = self.request.get(CHANGE_CONTEXT_HEADER)
            with app.app_context(), chrononaut.resume_change_context(context):
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
