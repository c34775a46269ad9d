"""The SQLite task store, now the SQL store of :mod:`workflow.sql_store` on a SQLite file (kept for importers)."""

from __future__ import annotations

from .sql_store import SQLiteTaskStore

__all__ = ["SQLiteTaskStore"]
