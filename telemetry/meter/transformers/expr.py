"""A safe evaluator for Ceilometer's transformer expressions.

Ceilometer ``eval``s the ``scale`` of ``rate_of_change``/``unit_conversion``
and the ``expr`` of ``arithmetic`` with the sample as namespace, so anyone who
can edit ``pipeline.yaml`` can run code in the collector. Here the expression
is parsed with :mod:`ast`, every node checked against a whitelist when the
pipeline loads (a bad expression is a config error, not a runtime surprise),
and then interpreted by walking the tree: arithmetic, comparisons, ``and``/
``or``/``not``, ``x if c else y``, attribute and constant-key item access on
the sample, and a few pure functions. No ``eval``, no names outside the
namespace, no dunder attributes, and powers, products and sums are bounded so
neither ``9**9**9`` nor ``'a' * 10**9`` can stall or swell the meter stage.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Expression", "TransformExpressionError", "Namespace"]

MAX_LENGTH = 1000
MAX_EXPONENT = 256
MAX_INT_BITS = 4096
#: Longest string or list an expression may build: ``'a' * 10**9`` would take a gigabyte.
MAX_SEQUENCE = 10_000

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "float": float,
    "int": int,
    "bool": bool,
    "str": str,
    "len": len,
    "sqrt": math.sqrt,
    "log": math.log,
}


class TransformExpressionError(ValueError):
    """An expression is not allowed (at load) or failed to evaluate (per sample)."""


class Namespace:
    """Attribute access over nested dicts, as Ceilometer's ``transformer.Namespace``.

    A missing attribute yields an empty, falsy Namespace, so Ceilometer's idiom
    ``(resource_metadata.cpu_number or 1)`` works when the field is absent.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def get(self, key: str) -> Any:
        value = self._data.get(key, _MISSING) if isinstance(self._data, Mapping) else _MISSING
        if value is _MISSING:
            return Namespace({})
        return Namespace(value) if isinstance(value, Mapping) else value

    def __bool__(self) -> bool:
        return bool(self._data)

    def __repr__(self) -> str:
        return f"Namespace({self._data!r})"


_MISSING = object()


def _check(node: ast.AST, source: str) -> None:
    """Reject any node outside the whitelist, naming it."""
    allowed = (
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Constant,
        ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Call, ast.Tuple, ast.List,
        ast.And, ast.Or, ast.Pow, *_BINOPS, *_UNARY, *_COMPARE,
    )
    for sub in ast.walk(node):
        if not isinstance(sub, allowed):
            raise TransformExpressionError(f"{type(sub).__name__} is not allowed in expression {source!r}")
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("_"):
            raise TransformExpressionError(f"attribute {sub.attr!r} is not allowed in expression {source!r}")
        if isinstance(sub, ast.Name) and sub.id.startswith("__"):
            raise TransformExpressionError(f"name {sub.id!r} is not allowed in expression {source!r}")
        if isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name) or sub.func.id not in FUNCTIONS:
                raise TransformExpressionError(
                    f"only the functions {', '.join(sorted(FUNCTIONS))} may be called in {source!r}"
                )
            if sub.keywords:
                raise TransformExpressionError(f"keyword arguments are not allowed in {source!r}")
        if isinstance(sub, ast.Subscript) and not isinstance(sub.slice, ast.Constant):
            raise TransformExpressionError(f"only constant keys may be used in [...] in {source!r}")


def _sized(op: ast.operator, left: Any, right: Any) -> Any:
    """``+`` and ``*`` with their result's size checked before it is built, so no sample can stall or swell the stage."""
    if isinstance(op, ast.Mult):
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list)) and isinstance(times, int) and len(seq) * times > MAX_SEQUENCE:
                raise TransformExpressionError(f"the result of * would be longer than {MAX_SEQUENCE}")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TransformExpressionError("the result of * is too large")
    elif isinstance(op, ast.Add) and isinstance(left, (str, list)) and isinstance(right, (str, list)) \
            and len(left) + len(right) > MAX_SEQUENCE:
        raise TransformExpressionError(f"the result of + would be longer than {MAX_SEQUENCE}")
    return _BINOPS[type(op)](left, right)


def _power(base: Any, exp: Any) -> Any:
    if isinstance(exp, (int, float)) and abs(exp) > MAX_EXPONENT:
        raise TransformExpressionError(f"exponent {exp} is larger than {MAX_EXPONENT}")
    result = operator.pow(base, exp)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise TransformExpressionError("the result of ** is too large")
    return result


class Expression:
    """A checked expression, evaluated against a namespace of names."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source.strip():
            raise TransformExpressionError("an expression must be a non-empty string")
        if len(source) > MAX_LENGTH:
            raise TransformExpressionError(f"expression longer than {MAX_LENGTH} characters")
        self.source = source
        try:
            self.tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise TransformExpressionError(f"invalid expression {source!r}: {exc.msg}") from None
        _check(self.tree, source)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The value of the expression; TransformExpressionError when it cannot be computed."""
        try:
            return self._eval(self.tree.body, Namespace(names))
        except TransformExpressionError:
            raise
        except (ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise TransformExpressionError(f"{self.source!r}: {type(exc).__name__}: {exc}") from None

    def _eval(self, node: ast.AST, ns: Namespace) -> Any:
        ev = self._eval
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            return ns.get(node.id)
        if isinstance(node, ast.Attribute):
            target = ev(node.value, ns)
            if not isinstance(target, Namespace):
                raise TransformExpressionError(f"{type(target).__name__} has no attribute {node.attr!r}")
            return target.get(node.attr)
        if isinstance(node, ast.Subscript):
            target = ev(node.value, ns)
            key = node.slice.value  # type: ignore[attr-defined]  # constant, checked at load
            if isinstance(target, Namespace):
                return target.get(key)
            return target[key]
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left, ns), ev(node.right, ns)
            if isinstance(node.op, ast.Pow):
                return _power(left, right)
            return _sized(node.op, left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](ev(node.operand, ns))
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                value: Any = True
                for v in node.values:
                    value = ev(v, ns)
                    if not value:
                        return value
                return value
            value = False
            for v in node.values:
                value = ev(v, ns)
                if value:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = ev(node.left, ns)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp, ns)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body, ns) if ev(node.test, ns) else ev(node.orelse, ns)
        if isinstance(node, (ast.Tuple, ast.List)):
            return [ev(e, ns) for e in node.elts]
        if isinstance(node, ast.Call):
            func = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]  # checked at load
            return func(*(ev(a, ns) for a in node.args))
        raise TransformExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after _check
