"""Template versions: a template's content hash over every file it renders from, and the archive
of every deployed version.

A template's *bundle* is every file a send of it can read, as ``{path relative to templates/:
text}``: the text files of its folder ``templates/<name>/**`` (every part and every locale; an
image or other binary file there is never rendered and left out) and,
transitively, what those extend, include or import (``_layout/base.html``, ...). A reference that
is not a constant name (``{% include some_variable %}``) cannot be followed: the bundle then takes
every shared folder (``templates/_*/**``) as well. Its *version* is the first 16 hex digits of a
SHA-256 over the bundle's paths and bytes. So a change to any file a template renders from changes
its version, and a change to anything else (another template, a layout it does not use) does not.

Invariants:

- the compiler writes each send's version into the state machine definition
  (``"template_version"``), so a template change is a definition change: a running execution keeps
  the definition, and with it the versions, it started with;
- every deployed version is archived, content-addressed and never pruned, as one JSON document per
  version (``archive_key``: ``templates/<name>/<version>.json``, the whole bundle at once: a
  version is either archived whole or not at all, and one read fetches it);
- ``send`` renders the version its step names: from the layer when that is the layer's own (no
  AWS call), else from the archive, whose bundle must hash to the version it is filed under. A
  version found nowhere is a template error, never the current template rendered instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from jinja2 import Environment, TemplateSyntaxError, meta

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION = re.compile(r"^[0-9a-f]{16}$")
VERSION_PATTERN = VERSION.pattern
ARCHIVE_PREFIX = "templates/"
SHARED_PREFIX = "_"
"""Folders of ``templates/`` whose name starts with this hold shared files (layouts, partials)."""
_PARSER = Environment(autoescape=False)  # noqa: S701 - parses only, never renders


class TemplateVersionError(Exception):
    """The template has no folder (or its name is not a template name), or a file of it is not
    UTF-8 text."""


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts)


def _files_under(templates_dir: Path, folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and _visible(path, templates_dir):
            yield path.relative_to(templates_dir).as_posix()


def _read(templates_dir: Path, relative: str) -> str:
    path = templates_dir / relative
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateVersionError(f"{relative}: not UTF-8 text ({exc})") from exc


def _is_text(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _references(source: str) -> tuple[set[str], bool]:
    """The constant template names ``source`` extends, includes or imports, and whether it also
    has a reference that is not a constant (or cannot be parsed: then nothing is known)."""
    try:
        found = list(meta.find_referenced_templates(_PARSER.parse(source)))
    except TemplateSyntaxError:
        return set(), False  # renders as a template error whatever else the bundle holds
    return {name for name in found if name is not None}, None in found


def _inside(templates_dir: Path, name: str) -> str | None:
    """``name`` as a path relative to ``templates_dir`` when it is a file inside it, else None."""
    if any(part in ("", ".", "..") for part in name.split("/")):
        return None  # Jinja's loaders refuse these too
    path = templates_dir / name
    return name if path.is_file() and _visible(path, templates_dir) else None


def bundle_of(templates_dir: Path, name: str) -> dict[str, str]:
    """Every file template ``name`` renders from: ``{relative path: text}`` (see the module)."""
    templates_dir = Path(templates_dir)
    folder = templates_dir / name
    if not TEMPLATE_NAME.match(name) or not folder.is_dir():
        raise TemplateVersionError(f"template {name!r} does not exist in {templates_dir}")
    pending = list(_files_under(templates_dir, folder))
    binary = {relative for relative in pending if not _is_text(templates_dir / relative)}
    pending = [relative for relative in pending if relative not in binary]  # never rendered
    files: dict[str, str] = {}
    shared_added = False
    while pending:
        relative = pending.pop()
        if relative in files:
            continue
        files[relative] = _read(templates_dir, relative)  # a referenced file must be text
        names, dynamic = _references(files[relative])
        pending += [found for found in (_inside(templates_dir, n) for n in names) if found]
        if dynamic and not shared_added:
            shared_added = True
            for shared in sorted(templates_dir.glob(f"{SHARED_PREFIX}*")):
                if shared.is_dir():
                    pending += list(_files_under(templates_dir, shared))
    return dict(sorted(files.items()))


def version_of_bundle(files: Mapping[str, str]) -> str:
    """The version of a bundle: 16 hex digits of SHA-256 over its sorted paths and contents."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        content = files[relative].encode("utf-8")
        digest.update(f"{relative}\x00{len(content)}\x00".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


def version_of(templates_dir: Path, name: str) -> str:
    """The version of template ``name`` as it is in ``templates_dir`` now."""
    return version_of_bundle(bundle_of(templates_dir, name))


def template_names(templates_dir: Path) -> list[str]:
    """Every template of ``templates_dir`` (its folders that are not shared ones)."""
    return sorted(
        p.name
        for p in Path(templates_dir).iterdir()
        if p.is_dir() and TEMPLATE_NAME.match(p.name) and not p.name.startswith(SHARED_PREFIX)
    )


# --- the archive ----------------------------------------------------------------------------------


def archive_key(name: str, version: str) -> str:
    """The archive object of one version of a template."""
    return f"{ARCHIVE_PREFIX}{name}/{version}.json"


def archive_document(files: Mapping[str, str]) -> bytes:
    """The archived form of a bundle (JSON, keys sorted: the same bundle is the same bytes)."""
    return json.dumps(dict(files), sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")


def archive_contents(templates_dir: Path) -> dict[str, bytes]:
    """``{archive key: document}`` of every template as it is in ``templates_dir`` now."""
    found = {}
    for name in template_names(templates_dir):
        files = bundle_of(templates_dir, name)
        found[archive_key(name, version_of_bundle(files))] = archive_document(files)
    return found


def stage_archive(templates_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write ``archive_contents`` under ``out_dir`` (what a deploy uploads); ``{name: version}``."""
    versions = {}
    for key, document in archive_contents(templates_dir).items():
        path = Path(out_dir) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(document)
        name, version = key.removeprefix(ARCHIVE_PREFIX).removesuffix(".json").split("/")
        versions[name] = version
    return versions


def upload_archive(s3: S3Client, bucket: str, templates_dir: Path) -> list[str]:
    """Put every template version of ``templates_dir`` into the archive bucket (the local
    runtime's deploy); versions already there are the same bytes. The keys written."""
    keys = []
    for key, document in archive_contents(templates_dir).items():
        s3.put_object(Bucket=bucket, Key=key, Body=document, ContentType="application/json")
        keys.append(key)
    return keys


class TemplateArchive:
    """Reads archived template versions (S3, ``s3:GetObject``), each once per process. The client
    is made on first use: a function that only renders its layer's templates never makes one."""

    CACHED = 128

    def __init__(self, s3: Callable[[], Any], bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._found: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    def bundle(self, name: str, version: str) -> dict[str, str] | None:
        """The files of that version, or None when the archive does not have it (a miss is not
        remembered: a version archived later is found). A document whose content does not hash
        to its version is refused (``ValueError``)."""
        if not TEMPLATE_NAME.match(name) or not VERSION.match(version):
            return None
        if (name, version) in self._found:
            self._found.move_to_end((name, version))
            return self._found[(name, version)]
        files = self._fetch(name, version)
        if files is not None:
            self._found[(name, version)] = files
            if len(self._found) > self.CACHED:
                self._found.popitem(last=False)
        return files

    def _fetch(self, name: str, version: str) -> dict[str, str] | None:
        try:
            response = self._s3().get_object(Bucket=self._bucket, Key=archive_key(name, version))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        files = json.loads(response["Body"].read().decode("utf-8"))
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError(f"archived template {name!r} version {version} is not a bundle")
        if version_of_bundle(files) != version:
            raise ValueError(f"archived template {name!r} version {version} does not hash to its version")
        return dict(files)
