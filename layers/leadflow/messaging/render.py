"""Template rendering in a Jinja2 sandbox: a template error fails loudly, never half-renders.

Layout: ``templates/<name>/subject.txt``, ``body.html``, ``body.txt`` and optionally
``preheader.txt`` (email) and ``sms.txt`` (SMS); a locale folder ``templates/<name>/<locale>/``
(e.g. ``de``) overrides any of them, falling back to the default. A send step's own ``subject`` /
``preheader`` (Jinja2 text, the same context) replace the template's; the bodies see the result as
``subject_line`` and ``preheader``. ``None`` renders as an empty string; what a template may use is
``messaging.context``.

A template renders from its bundle (its folder and the layouts it uses, read once per process):
the version a journey step names (``template_versions``) is the layer's, or is read from the
template archive; one found nowhere is a template error, never the current template instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    DictLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from leadflow.messaging.template_versions import (
    TEMPLATE_NAME,
    TemplateArchive,
    TemplateVersionError,
    bundle_of,
    version_of_bundle,
)

PARTS = ("subject.txt", "body.html", "body.txt")
PREHEADER_PART = "preheader.txt"
SMS_PART = "sms.txt"
LOCALE_FOLDER = re.compile(r"^[a-z]{2}(?:[-_][A-Za-z]{2})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SMS_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]+")  # newlines stay


class TemplateRenderError(Exception):
    """A template is missing, malformed or uses an undefined value."""


class RenderedEmail(BaseModel):
    subject: str
    html: str
    text: str
    preheader: str = ""


class _Undefined(StrictUndefined):
    """Undefined values are errors, except through ``default`` (which Jinja checks via ``is defined``)."""


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _sandbox(files: Mapping[str, str]) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=DictLoader(dict(files)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=_Undefined,
        auto_reload=False,
        keep_trailing_newline=True,
        finalize=_blank_none,
    )


class _Version:
    """One version of one template: its bundle in memory and the sandbox that renders it."""

    def __init__(self, template: str, files: Mapping[str, str]) -> None:
        self.template = template
        self.files = dict(files)
        self.env = _sandbox(self.files)

    def source(self, locale: str | None, part: str) -> str:
        template = self.template
        candidates = []
        if locale and LOCALE_FOLDER.match(locale):
            candidates += [f"{template}/{locale.replace('_', '-')}/{part}", f"{template}/{locale[:2]}/{part}"]
        candidates.append(f"{template}/{part}")
        for name in candidates:
            if name in self.files:
                return name
        raise TemplateRenderError(f"template {template!r} has no {part}")

    def has(self, locale: str | None, part: str) -> bool:
        try:
            self.source(locale, part)
        except TemplateRenderError:
            return False
        return True

    @lru_cache(maxsize=64)  # noqa: B019 - step subjects are few and fixed; bounded
    def inline(self, text: str) -> Template:
        return self.env.from_string(text)

    def render_part(self, locale: str | None, part: str, context: Mapping[str, Any]) -> str:
        name = self.source(locale, part)
        try:
            return self.env.get_template(name).render(**context)
        except TemplateNotFound as exc:
            raise TemplateRenderError(f"template {self.template!r}: {exc}") from exc
        except TemplateError as exc:
            raise TemplateRenderError(f"template {self.template!r}, {part}: {exc}") from exc

    def render_inline(self, what: str, text: str, context: Mapping[str, Any]) -> str:
        try:
            return self.inline(text).render(**context)
        except TemplateError as exc:
            raise TemplateRenderError(f"template {self.template!r}, the step's {what}: {exc}") from exc


class EmailRenderer:
    """Renders a template as the layer has it, or — when a journey step names another version
    of it (``leadflow.messaging.template_versions``) — as the template archive has that version."""

    def __init__(self, templates_dir: Path, archive: TemplateArchive | None = None) -> None:
        """``archive``: where versions other than the layer's are read (None: nowhere)."""
        self._dir = Path(templates_dir)
        self._archive = archive

    @lru_cache(maxsize=256)  # noqa: B019 - renderer lives for the process; bounded
    def _layer(self, template: str) -> tuple[_Version, str | None]:
        """The layer's template (read once: the version is of exactly what renders) and its version."""
        try:
            files = bundle_of(self._dir, template)
        except TemplateVersionError as exc:
            if (self._dir / template).is_dir():
                raise TemplateRenderError(str(exc)) from exc  # a file that is not UTF-8 text
            return _Version(template, {}), None  # no such template: "has no subject.txt"
        return _Version(template, files), version_of_bundle(files)

    @lru_cache(maxsize=128)  # noqa: B019 - archived versions in use are few; bounded
    def _archived(self, template: str, version: str) -> _Version:
        if self._archive is not None:
            try:
                files = self._archive.bundle(template, version)
            except ValueError as exc:
                raise TemplateRenderError(f"template {template!r}: {exc}") from exc
            if files is not None:
                return _Version(template, files)
        raise TemplateRenderError(
            f"template {template!r} version {version}: not in this deployment and not in the template archive"
        )

    def _version(self, template: str, version: str | None) -> _Version:
        if not TEMPLATE_NAME.match(template):
            raise TemplateRenderError(f"template name {template!r} is not valid")
        layer, layer_version = self._layer(template)
        if version is None or version == layer_version:
            return layer
        return self._archived(template, version)

    def version(self, template: str) -> str | None:
        """The version of ``template`` this renderer's layer has (None: it has no such template)."""
        return self._layer(template)[1]

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        locale: str | None = None,
        *,
        subject: str | None = None,
        preheader: str | None = None,
        version: str | None = None,
    ) -> RenderedEmail:
        """The email of ``template``; ``subject``/``preheader``: the send step's, replacing the
        template's ``subject.txt``/``preheader.txt``; ``version``: the template version the step
        names (None: the layer's, whatever it is)."""
        found = self._version(template, version)
        if subject is not None:
            subject_text = found.render_inline("subject", subject, context)
        else:
            subject_text = found.render_part(locale, "subject.txt", context)
        if preheader is not None:
            preheader_text = found.render_inline("preheader", preheader, context)
        elif found.has(locale, PREHEADER_PART):
            preheader_text = found.render_part(locale, PREHEADER_PART, context)
        else:
            preheader_text = ""
        subject_line = _line(subject_text)[:998]
        if not subject_line:
            raise TemplateRenderError(f"template {template!r}: the subject is empty")
        body_context = {**context, "subject_line": subject_line, "preheader": _line(preheader_text)}
        html = found.render_part(locale, "body.html", body_context)
        text = found.render_part(locale, "body.txt", body_context)
        return RenderedEmail(subject=subject_line, html=html, text=text, preheader=_line(preheader_text))

    def render_sms(
        self,
        template: str,
        context: Mapping[str, Any],
        locale: str | None = None,
        *,
        version: str | None = None,
    ) -> str:
        """The text of ``templates/<name>/sms.txt``: control characters other than newlines become a
        space, surrounding whitespace goes. An empty text is a template error. ``version``: as for
        ``render``."""
        found = self._version(template, version)
        name = found.source(locale, SMS_PART)
        try:
            text = found.env.get_template(name).render(**context)
        except TemplateError as exc:
            raise TemplateRenderError(f"template {template!r}, {SMS_PART}: {exc}") from exc
        text = _SMS_CONTROL.sub(" ", text.replace("\r\n", "\n")).strip()
        if not text:
            raise TemplateRenderError(f"template {template!r}: the SMS text is empty")
        return text
