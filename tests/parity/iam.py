"""A small IAM policy evaluator: is this (action, resource) allowed by these statements?

What AWS does for an identity policy within one account: an explicit ``Deny`` that matches wins;
otherwise a matching ``Allow`` allows; otherwise the request is implicitly denied. Actions match
case-insensitively with ``*``/``?`` wildcards; resources match with wildcards, case-sensitively;
``NotAction``/``NotResource`` match everything they do not list. Conditions: a ``StringEquals``
on a context key the request carries (``Request.context``, e.g. ``states:StateMachineQualifier`` of a
StartExecution on an alias) is evaluated; any other condition is not: an ``Allow`` with one never
counts (so a pass never depends on a condition this tier cannot see), a ``Deny`` with one always does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes: ``action`` (``service:Action``) on ``resource`` (an ARN, or
    ``*`` for actions without resource-level permissions)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    """Condition keys of the request (key, value) this tier can evaluate."""


@cache
def _pattern(text: str, case_sensitive: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{regex}$", 0 if case_sensitive else re.IGNORECASE)


def matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    return bool(_pattern(pattern, case_sensitive).match(value))


def _listed(statement: Mapping[str, Any], key: str) -> list[str]:
    value = statement.get(key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def statement_matches(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        action_ok = any(
            matches(a, request.action, case_sensitive=False) for a in _listed(statement, "Action")
        )
    else:
        action_ok = not any(
            matches(a, request.action, case_sensitive=False) for a in _listed(statement, "NotAction")
        )
    if not action_ok:
        return False
    if "Resource" in statement:
        return any(matches(r, request.resource) for r in _listed(statement, "Resource"))
    if "NotResource" in statement:
        return not any(matches(r, request.resource) for r in _listed(statement, "NotResource"))
    return False


def condition_holds(condition: Mapping[str, Any] | None, request: Request) -> bool:
    """Every operator is a ``StringEquals`` on a key the request carries, and each holds (a key
    the request does not carry is absent: ``StringEquals`` on it is false, as in AWS)."""
    if not condition:
        return True
    context = dict(request.context)
    for operator, tests in condition.items():
        if operator != "StringEquals":
            return False
        for key, expected in tests.items():
            values = [expected] if isinstance(expected, str) else list(expected)
            if context.get(key) not in values:
                return False
    return True


def decide(statements: Iterable[Mapping[str, Any]], request: Request) -> str:
    """``"allow"``, ``"explicit deny"`` or ``"implicit deny"``."""
    allowed = False
    for statement in statements:
        if not statement_matches(statement, request):
            continue
        if statement.get("Effect") == "Deny":
            return "explicit deny"
        if statement.get("Effect") == "Allow" and condition_holds(statement.get("Condition"), request):
            allowed = True
    return "allow" if allowed else "implicit deny"


def allowed(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return decide(statements, request) == "allow"


def principal_named(statement: Mapping[str, Any], *, aws: Iterable[str] = (), service: str = "") -> bool:
    """A resource-policy statement names one of the ``aws`` principals (ARNs) or the service."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    names = set(aws)
    for value in _listed(principal, "AWS"):
        if value == "*" or value in names:
            return True
    return bool(service) and service in _listed(principal, "Service")
