"""The part of AWS IoT SQL (version 2016-03-23) that Loupe's topic rules use, evaluated as IoT Core documents it.

moto stores topic rules but evaluates none of them, so the local router needs its own evaluator. Supported:

- ``SELECT`` items: ``*`` (the whole JSON payload), field paths (``a``, ``a.b``), literals, ``topic()``,
  ``topic(n)``, ``timestamp()``, each with an optional ``AS alias``. Items are applied left to right, so an
  explicit item (``SELECT *, topic(2) AS thing``) replaces a payload key of the same name. An item whose value is
  Undefined (a missing field, ``topic(9)`` of a shorter topic) is left out of the output.
- ``FROM '<topic filter>'``.
- ``WHERE`` with ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``, ``AND``, ``OR``, ``NOT`` and parentheses. A
  comparison involving Undefined is Undefined and a ``WHERE`` that is not ``true`` drops the message.

Anything else is refused when the rule is added (a clear error rather than a rule that silently does something
else). References: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-select.html, iot-sql-where.html,
iot-sql-operators.html, iot-sql-functions.html#iot-function-topic.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class IotSqlError(ValueError):
    """The statement is not valid IoT SQL, or uses a feature the local evaluator does not implement."""


class _Undefined:
    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED: Any = _Undefined()

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<op><>|<=|>=|=|<|>)"
    r"|(?P<punct>[(),*])|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*))"
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE"}
_FUNCTIONS = {"topic", "timestamp"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(sql: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    sql = sql.rstrip()
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if not match or match.end() == pos:
            raise IotSqlError(f"cannot parse IoT SQL near {sql[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "name" and text.upper() in _KEYWORDS:
            kind, text = "kw", text.upper()
        out.append(_Tok(kind, text))
    return out


# Expressions are tuples: ("lit", v) ("path", [parts]) ("star",) ("fn", name, [args]) ("cmp", op, a, b)
# ("and", a, b) ("or", a, b) ("not", a)
Expr = tuple


@dataclass(frozen=True)
class IotSql:
    items: list[tuple[Expr, str | None]]
    topic_filter: str
    where: Expr | None

    def evaluate(self, topic: str, payload: bytes) -> tuple[bool, Any]:
        """``(matched, output)``: matched is False when WHERE is not true; output is the outgoing payload (a dict,
        or the raw bytes for ``SELECT *`` of a payload that is not a JSON object)."""
        import json

        try:
            document: Any = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            document = UNDEFINED  # a binary payload: fields are Undefined, SELECT * passes the bytes through
        context = _Context(topic, document)
        if self.where is not None and _eval(self.where, context) is not True:
            return False, None
        if len(self.items) == 1 and self.items[0][0] == ("star",) and not isinstance(document, dict):
            return True, payload if document is UNDEFINED else document
        out: dict[str, Any] = {}
        for expr, alias in self.items:
            if expr == ("star",):
                if isinstance(document, dict):
                    out.update(document)
                continue
            value = _eval(expr, context)
            if value is not UNDEFINED:
                out[alias or _default_name(expr)] = value
        return True, out


@dataclass
class _Context:
    topic: str
    document: Any


def parse(sql: str) -> IotSql:
    parser = _Parser(_tokens(sql))
    parser.expect("kw", "SELECT")
    items = [parser.select_item()]
    while parser.accept("punct", ","):
        items.append(parser.select_item())
    parser.expect("kw", "FROM")
    source = parser.next()
    if source.kind != "string":
        raise IotSqlError("FROM takes a quoted topic filter: FROM 'a/+/b'")
    where = None
    if parser.accept("kw", "WHERE"):
        where = parser.condition()
    if parser.pos != len(parser.toks):
        raise IotSqlError(f"unexpected {parser.toks[parser.pos].text!r} in IoT SQL")
    return IotSql(items=items, topic_filter=source.text[1:-1].replace("''", "'"), where=where)


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise IotSqlError("IoT SQL ends too early")
        self.pos += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        if tok and tok.kind == kind and (text is None or tok.text == text):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, text: str) -> None:
        if not self.accept(kind, text):
            found = self.peek()
            raise IotSqlError(f"expected {text} in IoT SQL, found {found.text if found else 'the end'!r}")

    def select_item(self) -> tuple[Expr, str | None]:
        if self.accept("punct", "*"):
            return ("star",), None
        expr = self.operand()
        alias = None
        if self.accept("kw", "AS"):
            tok = self.next()
            if tok.kind != "name" or "." in tok.text:
                raise IotSqlError(f"AS needs a plain name, not {tok.text!r}")
            alias = tok.text
        elif expr[0] not in ("path",):
            raise IotSqlError(f"give {_describe(expr)} a name with AS (the local evaluator names only fields)")
        return expr, alias

    def condition(self) -> Expr:
        left = self.conjunction()
        while self.accept("kw", "OR"):
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.accept("kw", "AND"):
            left = ("and", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.accept("kw", "NOT"):
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        tok = self.peek()
        if tok and tok.kind == "op":
            self.pos += 1
            return ("cmp", tok.text, left, self.operand())
        return left

    def operand(self) -> Expr:
        tok = self.next()
        if tok.kind == "string":
            return ("lit", tok.text[1:-1].replace("''", "'"))
        if tok.kind == "number":
            return ("lit", Decimal(tok.text))
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE"):
            return ("lit", tok.text == "TRUE")
        if tok.kind == "punct" and tok.text == "(":
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        if tok.kind == "name":
            if self.accept("punct", "("):
                name = tok.text.lower()
                if name not in _FUNCTIONS:
                    raise IotSqlError(f"IoT SQL function {tok.text}() is not implemented locally")
                args: list[Expr] = []
                if not self.accept("punct", ")"):
                    args.append(self.operand())
                    while self.accept("punct", ","):
                        args.append(self.operand())
                    self.expect("punct", ")")
                return ("fn", name, args)
            return ("path", tok.text.split("."))
        raise IotSqlError(f"unexpected {tok.text!r} in IoT SQL")


def _describe(expr: Expr) -> str:
    return f"{expr[1]}()" if expr[0] == "fn" else "an expression"


def _default_name(expr: Expr) -> str:
    return expr[1][-1]


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _eval(expr: Expr, ctx: _Context) -> Any:
    kind = expr[0]
    if kind == "lit":
        return _json_value(expr[1])
    if kind == "path":
        value = ctx.document
        for part in expr[1]:
            if not isinstance(value, dict) or part not in value:
                return UNDEFINED
            value = value[part]
        return value
    if kind == "fn":
        return _call(expr[1], [_eval(a, ctx) for a in expr[2]], ctx)
    if kind == "cmp":
        return _compare(expr[1], _eval(expr[2], ctx), _eval(expr[3], ctx))
    # AND / OR / NOT take Booleans or the strings "true"/"false" (any case); anything else gives Undefined
    if kind == "not":
        value = _boolean(_eval(expr[1], ctx))
        return UNDEFINED if value is UNDEFINED else not value
    left, right = _boolean(_eval(expr[1], ctx)), _boolean(_eval(expr[2], ctx))
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    return (left and right) if kind == "and" else (left or right)


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return UNDEFINED


def _call(name: str, args: list[Any], ctx: _Context) -> Any:
    if name == "timestamp":
        return int(time.time() * 1000)
    # topic(): the whole topic; topic(n): its n-th level, 1-based (iot-sql-functions.html#iot-function-topic)
    if not args:
        return ctx.topic
    n = args[0]
    if isinstance(n, bool) or not isinstance(n, int | float) or int(n) != n or n < 1:
        return UNDEFINED
    levels = ctx.topic.split("/")
    return levels[int(n) - 1] if int(n) <= len(levels) else UNDEFINED


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):  # iot-sql-operators.html: a String operand is converted to a number if it can be
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _compare(op: str, left: Any, right: Any) -> Any:
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    if op in ("=", "<>"):
        if isinstance(left, bool) or isinstance(right, bool):
            equal = type(left) is type(right) and left == right
        elif isinstance(left, int | float) and isinstance(right, int | float):
            equal = _number(left) == _number(right)
        else:
            equal = type(left) is type(right) and left == right
        return equal if op == "=" else not equal
    a, b = _number(left), _number(right)
    if a is None or b is None:
        return UNDEFINED
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
