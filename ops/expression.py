"""Flow expressions such as ``ChatOp() >> (SummarizeOp(max_words=50) | TranslateOp(to="fr"))``.

The text is parsed with :mod:`ast` and checked against a whitelist, never
evaluated: registered op names called with literal keyword arguments,
combined with ``>>`` and ``|`` and parentheses. Anything else is a
:class:`FlowExpressionError` that quotes the offending part.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import BaseOp

#: Longest expression accepted; flows are short, and ast work grows with size.
MAX_EXPRESSION_CHARS = 10_000


class FlowExpressionError(ValueError):
    """A flow expression is not a composition of registered ops."""


@dataclass(frozen=True)
class _Call:
    op: str
    kwargs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Combine:
    operator: str  # ">>" or "|"
    left: _Call | _Combine
    right: _Call | _Combine


Plan = _Call | _Combine


class FlowExpression:
    """A parsed, checked flow expression; :meth:`build` makes a fresh op tree each time.

    :param text: the expression.
    :param ops: the op classes it may use, by name (``C.ops``).
    :raises FlowExpressionError: naming the part that is not allowed.
    """

    def __init__(self, text: str, ops: Mapping[str, type[BaseOp]]) -> None:
        if not isinstance(text, str) or not text.strip():
            raise FlowExpressionError("the flow expression is empty")
        if len(text) > MAX_EXPRESSION_CHARS:
            raise FlowExpressionError(f"the flow expression is longer than {MAX_EXPRESSION_CHARS} characters")
        self.text = text.strip()
        self._ops = dict(ops)
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise FlowExpressionError(f"the flow expression is not valid syntax: {exc.msg}") from None
        self.plan = self._check(tree.body)

    def _fail(self, node: ast.AST, why: str) -> FlowExpressionError:
        part = ast.get_source_segment(self.text, node) or type(node).__name__
        return FlowExpressionError(f"{why}: `{part}`")

    def _check(self, node: ast.AST) -> Plan:
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.RShift):
                return _Combine(">>", self._check(node.left), self._check(node.right))
            if isinstance(node.op, ast.BitOr):
                return _Combine("|", self._check(node.left), self._check(node.right))
            raise self._fail(node, "only >> (sequence) and | (parallel) combine ops")
        if isinstance(node, ast.Call):
            return self._check_call(node)
        if isinstance(node, ast.Name):
            raise self._fail(node, f"call the op to use it, e.g. {node.id}()")
        if isinstance(node, ast.Attribute):
            raise self._fail(node, "attribute access is not allowed in a flow")
        raise self._fail(node, "a flow is registered ops combined with >> and |, not this")

    def _check_call(self, node: ast.Call) -> _Call:
        if not isinstance(node.func, ast.Name):
            raise self._fail(node.func, "only registered ops may be called")
        name = node.func.id
        if name not in self._ops:
            known = ", ".join(sorted(self._ops)) or "none"
            raise self._fail(node.func, f"{name!r} is not a registered op (registered: {known})")
        if node.args:
            raise self._fail(node.args[0], f"{name} takes keyword arguments only")
        kwargs = []
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self._fail(keyword, "** arguments are not allowed")
            try:
                value = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                raise self._fail(keyword.value, f"{name}({keyword.arg}=...) must be a literal value") from None
            kwargs.append((keyword.arg, value))
        return _Call(name, tuple(kwargs))

    def build(self) -> BaseOp:
        """Instantiate the ops of the expression (new instances on every call)."""
        return self._build(self.plan)

    def _build(self, plan: Plan) -> BaseOp:
        if isinstance(plan, _Call):
            cls = self._ops[plan.op]
            try:
                return cls(**dict(plan.kwargs))
            except (TypeError, ValueError) as exc:
                raise FlowExpressionError(f"{plan.op}(...) rejected its arguments: {exc}") from None
        combine: Callable[[BaseOp, BaseOp], BaseOp] = (
            (lambda a, b: a >> b) if plan.operator == ">>" else (lambda a, b: a | b)
        )
        return combine(self._build(plan.left), self._build(plan.right))

    def op_names(self) -> list[str]:
        """The op names the expression uses, in order of appearance."""
        names: list[str] = []

        def walk(plan: Plan) -> None:
            if isinstance(plan, _Call):
                names.append(plan.op)
            else:
                walk(plan.left)
                walk(plan.right)

        walk(self.plan)
        return names

    def root_op_name(self) -> str | None:
        """The op's name when the whole flow is one op, else None."""
        return self.plan.op if isinstance(self.plan, _Call) else None


def parse_flow_expression(text: str, ops: Mapping[str, type[BaseOp]] | None = None) -> BaseOp:
    """Parse ``text`` against ``ops`` (default: every registered op) and build it."""
    from .services import C

    return FlowExpression(text, C.ops if ops is None else ops).build()
