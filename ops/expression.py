"""Flow expressions such as ``ChatOp() >> (SummarizeOp(max_words=50) | TranslateOp(to="fr"))``.

The text is parsed with :mod:`ast` and checked against a whitelist, never
evaluated: registered op names called with literal keyword arguments,
combined with ``>>`` (in sequence), ``|`` (concurrently) and ``<<`` (attach
sub-ops, e.g. an agent's tools: ``ReactAgentOp() << [SearchOp(), ThinkToolOp()]``,
``AgentOp() << {"search": SearchOp()}``), and parentheses.

As in flowllm, a flow may take several lines: every line but the last is an
assignment (``op = ContainerOp()``, ``op.ops.search = SearchOp()``,
``op.ops["find"] = FindOp()``) or an expression kept for its effect
(``op << {"find": FindOp()}``); the last line is the flow. A name stands for
the op assigned to it (the same op each time it is used, as in Python).
Anything else is a :class:`FlowExpressionError` that quotes the offending part.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from .base import BaseOp
from .context import BaseContext

#: Longest expression accepted; flows are short, and ast work grows with size.
MAX_EXPRESSION_CHARS = 10_000


class FlowExpressionError(ValueError):
    """A flow expression is not a composition of registered ops."""


@dataclass(frozen=True)
class _Call:
    op: str
    kwargs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Var:
    name: str


@dataclass(frozen=True)
class _Combine:
    operator: str  # ">>" or "|"
    left: Plan
    right: Plan


@dataclass(frozen=True)
class _Attach:
    """``target << items``; a key is the sub-op's name (``None``: the op's own name)."""

    target: Plan
    items: tuple[tuple[str | None, Plan], ...]


Plan = Union[_Call, _Var, _Combine, _Attach]


@dataclass(frozen=True)
class _Assign:
    """``name = value`` (``key`` None) or ``name.ops.key = value``."""

    name: str
    key: str | None
    value: Plan


Statement = Union[_Assign, Plan]


class FlowExpression:
    """A parsed, checked flow expression; :meth:`build` makes a fresh op tree each time.

    :param text: the expression (one line, or several as described in the module doc).
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
        #: each variable assigned so far → the root op name of its value (see root_op_name)
        self._roots: dict[str, str | None] = {}
        try:
            tree = ast.parse(self.text, mode="exec")
        except SyntaxError as exc:
            raise FlowExpressionError(f"the flow expression is not valid syntax: {exc.msg} (line {exc.lineno})") from None
        except (RecursionError, MemoryError):
            raise FlowExpressionError("the flow expression is nested too deeply") from None
        try:
            self.statements: tuple[Statement, ...] = tuple(self._check_statement(s) for s in tree.body[:-1])
            self.plan: Plan = self._check_last(tree.body[-1])
            self._root = self._root_of(self.plan)
        except RecursionError:
            raise FlowExpressionError("the flow expression is nested too deeply") from None

    def _fail(self, node: ast.AST, why: str) -> FlowExpressionError:
        part = ast.get_source_segment(self.text, node) or type(node).__name__
        return FlowExpressionError(f"{why}: `{part}`")

    # -- checking ----------------------------------------------------------------------------

    def _check_last(self, node: ast.stmt) -> Plan:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            raise self._fail(node, "the last line must be the flow itself (an expression), not an assignment")
        if not isinstance(node, ast.Expr):
            raise self._fail(node, "a flow is registered ops combined with >>, | and <<, not this")
        return self._check(node.value)

    def _check_statement(self, node: ast.stmt) -> Statement:
        if isinstance(node, ast.Expr):
            return self._check(node.value)
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            raise self._fail(node, "lines before the last may only assign ops (name = Op()) or attach sub-ops")
        target = node.targets[0]
        if isinstance(target, ast.Name):
            if target.id in self._ops:
                raise self._fail(target, f"{target.id!r} is a registered op; choose another variable name")
            value = self._check(node.value)  # before the name is (re)bound: x = x >> Op() uses the old x
            self._roots[target.id] = self._root_of(value)
            return _Assign(target.id, None, value)
        name, key = self._sub_op_target(target)
        return _Assign(name, key, self._check(node.value))

    def _sub_op_target(self, target: ast.expr) -> tuple[str, str]:
        """``name.ops.key`` or ``name.ops["key"]`` → (name, key)."""
        if isinstance(target, ast.Attribute):
            holder, key = target.value, target.attr
        elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) \
                and isinstance(target.slice.value, str):
            holder, key = target.value, target.slice.value
        else:
            raise self._fail(target, "only a variable or a sub-op (name.ops.key) can be assigned")
        if not (isinstance(holder, ast.Attribute) and holder.attr == "ops" and isinstance(holder.value, ast.Name)):
            raise self._fail(target, "only a variable or a sub-op (name.ops.key) can be assigned")
        self._check_var(holder.value)
        return holder.value.id, key

    def _check(self, node: ast.AST) -> Plan:
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.RShift):
                return _Combine(">>", self._check(node.left), self._check(node.right))
            if isinstance(node.op, ast.BitOr):
                return _Combine("|", self._check(node.left), self._check(node.right))
            if isinstance(node.op, ast.LShift):
                return _Attach(self._check(node.left), self._check_attachment(node.right))
            raise self._fail(node, "only >> (sequence), | (parallel) and << (attach sub-ops) combine ops")
        if isinstance(node, ast.Call):
            return self._check_call(node)
        if isinstance(node, ast.Name):
            return self._check_var(node)
        if isinstance(node, ast.Attribute):
            raise self._fail(node, "attribute access is not allowed in a flow")
        raise self._fail(node, "a flow is registered ops combined with >>, | and <<, not this")

    def _check_attachment(self, node: ast.AST) -> tuple[tuple[str | None, Plan], ...]:
        """The right side of ``<<``: an op, a list (or tuple) of ops, or a {"name": op} dict."""
        if isinstance(node, (ast.List, ast.Tuple)):
            return tuple((None, self._check(element)) for element in node.elts)
        if isinstance(node, ast.Dict):
            items = []
            for key, value in zip(node.keys, node.values):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise self._fail(key or value, "sub-op names in a << {...} must be strings")
                items.append((key.value, self._check(value)))
            return tuple(items)
        return ((None, self._check(node)),)

    def _check_var(self, node: ast.Name) -> _Var:
        if node.id in self._roots:
            return _Var(node.id)
        if node.id in self._ops:
            raise self._fail(node, f"call the op to use it, e.g. {node.id}()")
        raise self._fail(node, f"{node.id!r} is neither a registered op nor a variable assigned on an earlier line")

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

    # -- building ----------------------------------------------------------------------------

    def build(self) -> BaseOp:
        """Instantiate the ops of the expression (new instances on every call)."""
        variables: dict[str, BaseOp] = {}
        try:
            for statement in self.statements:
                if not isinstance(statement, _Assign):
                    self._build(statement, variables)
                elif statement.key is None:
                    variables[statement.name] = self._build(statement.value, variables)
                else:
                    self._set_sub_op(variables[statement.name], statement, self._build(statement.value, variables))
            return self._build(self.plan, variables)
        except RecursionError:
            raise FlowExpressionError("the flow expression is nested too deeply") from None

    @staticmethod
    def _set_sub_op(holder: BaseOp, statement: _Assign, op: BaseOp) -> None:
        if not isinstance(holder.ops, BaseContext):
            raise FlowExpressionError(
                f"{statement.name}.ops.{statement.key} = ...: {statement.name} is a {type(holder).__name__}, "
                "whose ops are its members; name sub-ops on a single op"
            )
        holder.ops[statement.key] = op

    def _build(self, plan: Plan, variables: dict[str, BaseOp]) -> BaseOp:
        if isinstance(plan, _Var):
            return variables[plan.name]
        if isinstance(plan, _Call):
            cls = self._ops[plan.op]
            try:
                return cls(**dict(plan.kwargs))
            except (TypeError, ValueError) as exc:
                raise FlowExpressionError(f"{plan.op}(...) rejected its arguments: {exc}") from None
        if isinstance(plan, _Attach):
            target = self._build(plan.target, variables)
            items = [(key, self._build(item, variables)) for key, item in plan.items]
            try:
                for key, op in items:
                    target << ({key: op} if key else op)
            except (TypeError, ValueError) as exc:
                raise FlowExpressionError(f"<< failed: {exc}") from None
            return target
        left, right = self._build(plan.left, variables), self._build(plan.right, variables)
        return left >> right if plan.operator == ">>" else left | right

    # -- introspection -----------------------------------------------------------------------

    def op_names(self) -> list[str]:
        """The op names the expression uses, in order of appearance."""
        names: list[str] = []

        def walk(plan: Statement) -> None:
            if isinstance(plan, _Call):
                names.append(plan.op)
            elif isinstance(plan, _Combine):
                walk(plan.left)
                walk(plan.right)
            elif isinstance(plan, _Attach):
                walk(plan.target)
                for _key, item in plan.items:
                    walk(item)
            elif isinstance(plan, _Assign):
                walk(plan.value)

        for statement in (*self.statements, self.plan):
            walk(statement)
        return names

    def root_op_name(self) -> str | None:
        """The op's name when the flow is one op (sub-ops attached with ``<<`` included), else None."""
        return self._root

    def _root_of(self, plan: Plan) -> str | None:
        if isinstance(plan, _Call):
            return plan.op
        if isinstance(plan, _Attach):
            return self._root_of(plan.target)
        if isinstance(plan, _Var):
            return self._roots[plan.name]
        return None


def parse_flow_expression(text: str, ops: Mapping[str, type[BaseOp]] | None = None) -> BaseOp:
    """Parse ``text`` against ``ops`` (default: every registered op) and build it."""
    from .services import C

    return FlowExpression(text, C.ops if ops is None else ops).build()
