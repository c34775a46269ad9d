"""Whole-number query parameters (``?offset=``, ``?limit=``, ``?page=``), parsed strictly within bounds.

``int()`` alone takes ``" 1_0 "``, ``"١٢"`` and numbers past SQLite's 64-bit integers (whose
``OFFSET`` then overflows into a 500); :func:`int_arg` takes only plain ASCII digits (an optional
sign) and a value within the documented range, else raises :class:`QueryError` naming the
parameter and the range, which the API turns into a 400 JSON error and the pages into a 400 page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MAX_OFFSET", "QueryError", "int_arg"]

#: Largest ``offset`` of a list (far past any store's size, far below SQLite's 2**63 - 1).
MAX_OFFSET = 1_000_000_000
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: Digits beyond which a number is not converted at all (it is out of every range here).
_MAX_DIGITS = 19


class QueryError(ValueError):
    """A query parameter that is not a whole number in its range; the message says which and why."""


def int_arg(args: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """``args[name]`` as an int in ``minimum..maximum``; ``default`` when absent or empty.

    :raises QueryError: for anything else (text, a float, a number out of range).
    """
    raw = args.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    whole = _INTEGER.fullmatch(text) is not None
    if whole and len(text.lstrip("+-")) <= _MAX_DIGITS and minimum <= int(text) <= maximum:
        return int(text)
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    kind = "out of range" if whole else "not a whole number"
    raise QueryError(f"{name} must be a whole number from {minimum} to {maximum}, got {shown!r} ({kind})")
