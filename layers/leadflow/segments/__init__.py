"""Segments: declarative definitions (files in ``segments/`` or the admin API), membership kept live
from the event stream by the lead engine, full re-evaluation, counts, export and broadcasts."""

from leadflow.segments.definitions import Segment, SegmentError, load_segments, parse_segment
from leadflow.segments.store import SHARDS, SegmentMembership, shard_of

__all__ = [
    "SHARDS",
    "Segment",
    "SegmentError",
    "SegmentMembership",
    "load_segments",
    "parse_segment",
    "shard_of",
]
