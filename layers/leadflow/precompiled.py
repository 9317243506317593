"""Precompiled content: the journeys, file segments and lead model validated ONCE, when the layer
is built, and restored at cold start without being validated again.

Validating the content files takes milliseconds; building the pydantic validators of the journey,
lead and segment models (``journeys.model``, ``leads.model``, ``segments.definitions``) takes
several times that, and a Lambda function paid both at every cold start. Those models are declared
with ``defer_build`` (validators built at their first validation), and a function restores its
content from the artifact the layer's build wrote (``write_artifacts``, called by
``infra/leadflow_infra/layer.py``): it never builds them. (The condition language's models are
built at import: other request models embed them.)

One source of truth: an artifact holds exactly what the YAML loaders (``read_journey_files``,
``read_segment_files``, ``read_lead_file``) returned at build time, with the same models. It sits
next to what it was made from (``content/journeys`` -> ``content/journeys.precompiled``) and
starts with its key: the sha256 of the artifact format, the pydantic version, the source of the
content-language modules (``LANGUAGE``), the source's name and every file it was made from (names
and bytes). The
loaders (``load_journeys``, ``load_segments``, ``load_lead_model``) use it only when that key is
the key of the files there now: a file edited, added or removed, or a model changed, and the
artifact is ignored (the YAML is read and validated). The local runtime and the CLI have no
artifacts: they always read the YAML.

Security: the artifact is a pickle, and unpickling runs code named in the file. Only artifacts
written by our own layer build are ever loaded: they ship inside the layer (read-only
``/opt/content`` in Lambda), next to the files they were made from, and are unpickled only after
their key matched those files. Nothing received at runtime is unpickled."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any, TypeVar

SUFFIX = ".precompiled"
FORMAT = b"leadflow-precompiled-content/1\n"
PICKLE_PROTOCOL = 5
PACKAGE = Path(__file__).resolve().parent
LANGUAGE = (
    "journeys/model.py",
    "journeys/conditions.py",
    "leads/model.py",
    "segments/definitions.py",
    "precompiled.py",
)
"""The modules whose models an artifact holds (and this one): a change to any of them makes every
artifact stale."""

T = TypeVar("T")


def artifact_path(source: Path) -> Path:
    """Where the artifact of ``source`` (a content folder or file) lives: next to it."""
    return source.with_name(source.name + SUFFIX)


def _files(source: Path) -> list[Path]:
    if source.is_dir():
        return sorted(source.glob("*.yaml"))
    return [source] if source.is_file() else []


def content_key(source: Path) -> bytes:
    """The key of ``source`` as it is now (see the module docstring), hex."""
    from pydantic.version import VERSION

    digest = hashlib.sha256(FORMAT)
    digest.update(f"pydantic {VERSION}\n".encode())
    for name in LANGUAGE:
        code = (PACKAGE / name).read_bytes()
        digest.update(f"{name} {len(code)}\n".encode() + code)
    digest.update(f"{'folder' if source.is_dir() else 'file'} {source.name}\n".encode())
    for path in _files(source):
        data = path.read_bytes()
        digest.update(f"{path.name} {len(data)}\n".encode() + data)
    return digest.hexdigest().encode()


def load(source: Path, kind: type[T]) -> T | None:
    """What the artifact of ``source`` holds, when there is one made from exactly the files there
    now (and of ``kind``); else None: the caller reads and validates the files."""
    try:
        blob = artifact_path(source).read_bytes()
    except OSError:
        return None
    key, _, payload = blob.partition(b"\n")
    if key != content_key(source):
        return None
    value = pickle.loads(payload)  # noqa: S301 - written by our layer build, key checked above
    return value if isinstance(value, kind) else None


def write(source: Path, value: Any) -> Path:
    """Writes the artifact of ``source`` holding ``value`` (what its YAML loader returned)."""
    path = artifact_path(source)
    path.write_bytes(content_key(source) + b"\n" + pickle.dumps(value, protocol=PICKLE_PROTOCOL))
    return path


def write_artifacts(content_dir: Path) -> list[Path]:
    """Validates the content of ``content_dir`` with the YAML loaders (an invalid file fails the
    build, naming it) and writes the artifact of each source: ``journeys/``, ``segments/`` and
    ``leads.yaml``."""
    from leadflow.journeys.model import read_journey_files
    from leadflow.leads.model import read_lead_file
    from leadflow.segments.definitions import read_segment_files

    return [
        write(content_dir / "journeys", read_journey_files(content_dir / "journeys")),
        write(content_dir / "segments", read_segment_files(content_dir / "segments")),
        write(content_dir / "leads.yaml", read_lead_file(content_dir / "leads.yaml")),
    ]
