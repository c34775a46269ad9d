"""gunicorn's own log lines in the app's format: ``logger_class`` in gunicorn.conf.py.

With ``LOG_FORMAT=json`` every line gunicorn writes (master and workers, its
error log and its access log) is one JSON object like the app's, from its very
first line ("Starting gunicorn"): gunicorn builds its logger before it logs
anything, and builds it again on a configuration reload (SIGHUP).
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger

from .observability import JsonFormatter, install_record_factory

__all__ = ["GunicornLogger"]


class GunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing JSON lines when ``LOG_FORMAT=json``."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if os.environ.get("LOG_FORMAT", "").strip().lower() != "json":
            return
        install_record_factory()  # records get request_id, as the app's do
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
