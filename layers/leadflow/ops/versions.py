"""A journey's published versions and who is running on each (``leadflow journeys versions``).

Every deploy publishes a journey's definition as a Step Functions state machine version (its
description: the journey id and the definition's sha256) and points the alias (``live``) at it;
an execution keeps the version it started on. This reads, with any Step Functions client (boto3
against a stage, or the local runtime's moto), each version's number, creation time, description
and share of the alias's routing, and the RUNNING executions started on it (``ListExecutions``
with the version ARN). Executions started before the journey had versions (on the state machine
itself) are listed apart as ``unversioned``. Read-only: ``states:ListStateMachineVersions``,
``states:DescribeStateMachine``, ``states:DescribeStateMachineAlias``, ``states:ListExecutions``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from leadflow.platform.paging import token_pages

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

NAMES_SHOWN = 20
"""Running execution names printed per version (all of them are in the JSON)."""


@dataclass
class VersionRow:
    version: int | None
    """The version number; None for executions started on the unversioned state machine."""
    arn: str
    created: str | None
    description: str
    alias_weight: int
    """Percent of the alias's new executions routed to this version (0: none)."""
    running: list[str] = field(default_factory=list)
    """Names of the RUNNING executions started on this version."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "running_count": len(self.running)}


def _running(sfn: SFNClient, arn: str) -> list[str]:
    return sorted(
        e["name"]
        for e in token_pages(
            sfn, "list_executions", "executions", stateMachineArn=arn, statusFilter="RUNNING"
        )
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


def journey_versions(sfn: SFNClient, state_machine_arn: str, alias: str) -> list[VersionRow]:
    """Newest version first; the alias's routing and the running executions per version."""
    weights: dict[str, int] = {}
    try:
        described = sfn.describe_state_machine_alias(stateMachineAliasArn=f"{state_machine_arn}:{alias}")
        weights = {
            str(r["stateMachineVersionArn"]): int(r["weight"]) for r in described["routingConfiguration"]
        }
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFound":
            raise
    rows: list[VersionRow] = []
    for item in token_pages(
        sfn, "list_state_machine_versions", "stateMachineVersions", stateMachineArn=state_machine_arn
    ):
        arn = str(item["stateMachineVersionArn"])
        version = sfn.describe_state_machine(stateMachineArn=arn)
        rows.append(
            VersionRow(
                version=int(arn.rsplit(":", 1)[1]),
                arn=arn,
                created=_iso(item.get("creationDate") or version.get("creationDate")),
                description=str(version.get("description") or ""),
                alias_weight=weights.get(arn, 0),
                running=_running(sfn, arn),
            )
        )
    rows.sort(key=lambda r: r.version or 0, reverse=True)
    unversioned = [
        str(e["name"])
        for e in token_pages(
            sfn, "list_executions", "executions", stateMachineArn=state_machine_arn, statusFilter="RUNNING"
        )
        if not e.get("stateMachineVersionArn")
    ]
    if unversioned:
        rows.append(VersionRow(None, state_machine_arn, None, "unversioned", 0, sorted(unversioned)))
    return rows


def render(journey_id: str, alias: str, rows: list[VersionRow]) -> list[str]:
    """The human-readable table."""
    lines = [
        f"journey {journey_id}: {_count(len([r for r in rows if r.version is not None]), 'version')} (alias {alias})"
    ]
    for row in rows:
        label = f"v{row.version}" if row.version is not None else "unversioned"
        routed = f"{alias} {row.alias_weight}%" if row.alias_weight else "-"
        lines.append(
            f"  {label:<12} {row.created or '-':<32} {routed:<10} running {len(row.running):>5}  {row.description}"
        )
        shown = row.running[:NAMES_SHOWN]
        if shown:
            more = f" (+{len(row.running) - len(shown)} more)" if len(row.running) > len(shown) else ""
            lines.append(f"      {', '.join(shown)}{more}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
