"""Bulk import: ``POST /admin/contacts/import`` with CSV (a header row) or JSON Lines.

Every row is validated like an upsert (``ContactIn``; a national phone number is read in the
row's ``country``, else in the stored contact's, as for the admin API); the report names exactly
the bad rows (``{row, field, message}``, ``row`` 1-based among the data rows: the CSV header and blank lines
are not counted) and nothing of a bad row is stored. Good rows are upserted in order (the same
address twice: the later row updates the earlier), several per transaction (``upsert_many``).
Re-importing a file changes nothing and creates nothing: unchanged rows are not written.

CSV columns: the fields of ``ContactIn`` (case-insensitive), ``tags`` separated by ``|`` or ``;``,
custom attributes as ``attributes.<name>`` or by their bare declared name. An unknown column
refuses the whole file (400 naming the column) before anything is stored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from leadflow.contacts.model import ContactIn, ContactInvalid, parse_contact
from leadflow.contacts.service import ContactService
from leadflow.kernel.errors import InvalidInput
from leadflow.leads.model import AttributeSpec

MAX_IMPORT_ROWS = 10_000
"""Rows per request (the CLI sends chunks of 2,000 by default)."""
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
JSONL_TYPES = (
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-lines",
)
CONTACT_FIELDS = tuple(name for name in ContactIn.model_fields if name != "attributes")


class RowError(BaseModel):
    row: int = Field(description="1-based data row (CSV header and blank lines not counted).")
    field: str
    message: str


class ImportReport(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int
    failed: int
    errors: list[RowError]


def _row_errors(row: int, fields: list[dict[str, str]]) -> list[RowError]:
    return [RowError(row=row, field=f["field"], message=f["message"]) for f in fields]


def blank(record: list[str]) -> bool:
    """A blank CSV line (skipped, not counted as a row; the CLI counts rows the same way)."""
    return len(record) <= 1 and not "".join(record).strip()


def _csv_columns(header: list[str], schema: Mapping[str, AttributeSpec]) -> list[tuple[str, str]]:
    """(kind, name) per column: ("field", email) or ("attribute", company_size)."""
    columns: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    fields = {f.lower(): f for f in CONTACT_FIELDS}
    for raw in header:
        name = raw.strip().lstrip("\ufeff")
        lower = name.lower()
        if lower in fields:
            column = ("field", fields[lower])
        elif lower.startswith("attributes.") and name[len("attributes.") :] in schema:
            column = ("attribute", name[len("attributes.") :])
        elif name in schema:
            column = ("attribute", name)
        else:
            known = ", ".join([*CONTACT_FIELDS, *sorted(schema)])
            raise InvalidInput(f"columns.{name[:64] or '(empty)'}", f"unknown column (known: {known})")
        if column in seen:
            raise InvalidInput(f"columns.{name[:64]}", "appears more than once")
        seen.add(column)
        columns.append(column)
    if ("field", "email") not in seen:
        raise InvalidInput("columns.email", "an email column is required")
    return columns


def parse_csv(text: str, schema: Mapping[str, AttributeSpec]) -> list[tuple[int, dict[str, Any] | str]]:
    """(row, data) per data row; data is an error message when the row is malformed."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise InvalidInput("body", "the CSV has no header row") from exc
    except csv.Error as exc:
        raise InvalidInput("body", f"is not CSV: {exc}") from exc
    columns = _csv_columns(header, schema)
    rows: list[tuple[int, dict[str, Any] | str]] = []
    number = 0
    try:
        for record in reader:
            if blank(record):
                continue
            number += 1
            if len(record) > len(columns):
                rows.append((number, f"has {len(record)} cells, the header {len(columns)}"))
                continue
            data: dict[str, Any] = {}
            attributes: dict[str, Any] = {}
            for (kind, name), cell in zip(columns, record, strict=False):
                if kind == "field":
                    data[name] = cell
                else:
                    attributes[name] = cell
            if attributes:
                data["attributes"] = attributes
            rows.append((number, data))
    except csv.Error as exc:
        rows.append((number + 1, f"is not valid CSV: {exc}"))
    return rows


def parse_jsonl(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    number = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        number += 1
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((number, f"is not valid JSON: {exc.msg}"))
            continue
        rows.append((number, data if isinstance(data, dict) else "must be a JSON object"))
    return rows


def parse_body(
    text: str, content_type: str, schema: Mapping[str, AttributeSpec]
) -> list[tuple[int, dict[str, Any] | str]]:
    kind = content_type.split(";")[0].strip().lower()
    if kind in CSV_TYPES:
        rows = parse_csv(text, schema)
    elif kind in JSONL_TYPES:
        rows = parse_jsonl(text)
    else:
        raise InvalidInput("content-type", "use text/csv (with a header row) or application/x-ndjson")
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput("body", f"more than {MAX_IMPORT_ROWS} rows; send the file in chunks")
    return rows


class ContactImporter:
    def __init__(self, service: ContactService) -> None:
        self._service = service

    def run(self, text: str, content_type: str, *, source: str = "import") -> ImportReport:
        schema = self._service.model.attributes
        errors: list[RowError] = []
        valid: list[tuple[int, ContactIn]] = []
        parsed = parse_body(text, content_type, schema)
        for number, data in parsed:
            if isinstance(data, str):
                errors.append(RowError(row=number, field="row", message=data))
                continue
            try:
                valid.append((number, parse_contact(data, schema)))
            except ContactInvalid as exc:
                errors += _row_errors(number, exc.fields)
        results, failures = self._service.upsert_many(valid, source=source)
        errors += [error for number, fields in failures.items() for error in _row_errors(number, fields)]
        failed_rows = {e.row for e in errors}
        return ImportReport(
            rows=len(parsed),
            created=sum(1 for r in results.values() if r.created),
            updated=sum(1 for r in results.values() if not r.created and r.changed),
            unchanged=sum(1 for r in results.values() if not r.changed),
            failed=len(failed_rows),
            errors=sorted(errors, key=lambda e: e.row),
        )
