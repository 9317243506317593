"""Segment definitions: an id, a name and a condition in the journey condition language::

    id: hot-leads
    name: Hot leads
    when:
      all:
        - {score: {gte: 50}}
        - {consent: email}
        - {did: page_viewed, where: {path: /pricing}, at_least: 3, within: {days: 14}}
        - {not: {stage: customer}}

Files live in ``segments/*.yaml``; segments defined through the admin API are stored in the
contacts table (``SEGDEFS``/``<id>``). Ids are unique across both.

Cold start: ``Segment`` is declared with ``defer_build`` (its validator is built at the first
validation); a Lambda function restores the file segments its layer's build validated
(``leadflow.precompiled``, through ``load_segments``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.journeys.conditions import SEGMENT, Condition
from leadflow.kernel.errors import describe_validation


class SegmentError(ValueError):
    """A segment definition is invalid; the message names the source, the field and the problem."""


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str = Field(pattern=SEGMENT)
    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=1000)
    when: Condition


def parse_segment(data: Any, source: str) -> Segment:
    if not isinstance(data, dict):
        raise SegmentError(f"{source}: a segment must be a mapping")
    try:
        return Segment.model_validate(data)
    except ValidationError as exc:
        raise SegmentError(f"{source}: {describe_validation(exc)}") from exc


def load_segments(directory: Path) -> list[Segment]:
    """The file segments of ``directory``: restored from its precompiled artifact when one was made
    from exactly these files (the layer's, ``leadflow.precompiled``), else read and validated
    (``read_segment_files``)."""
    from leadflow import precompiled

    restored = precompiled.load(Path(directory), list)
    return restored if restored is not None else read_segment_files(directory)


def read_segment_files(directory: Path) -> list[Segment]:
    """Every ``*.yaml`` segment file in ``directory``, validated (none if it does not exist)."""
    import yaml

    from leadflow.kernel import yaml_files

    segments = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            data = yaml_files.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SegmentError(f"{path}: cannot read YAML: {exc}") from exc
        segments.append(parse_segment(data, str(path)))
    ids = [s.id for s in segments]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SegmentError(f"{directory}: segment ids used by more than one file: {', '.join(duplicates)}")
    return segments
