"""Template rendering in a Jinja2 sandbox: a template error fails loudly, never half-renders.

Layout: ``templates/<name>/subject.txt``, ``body.html``, ``body.txt`` (email) and ``sms.txt`` (SMS);
a locale folder ``templates/<name>/<locale>/`` (e.g. ``de``) overrides any of them, falling back to
the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

PARTS = ("subject.txt", "body.html", "body.txt")
SMS_PART = "sms.txt"
_LOCALE = re.compile(r"^[a-z]{2}(?:[-_][A-Za-z]{2})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SMS_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]+")  # newlines stay


class TemplateRenderError(Exception):
    """A template is missing, malformed or uses an undefined value."""


class RenderedEmail(BaseModel):
    subject: str
    html: str
    text: str


class _Undefined(StrictUndefined):
    """Undefined values are errors, except through ``default`` (which Jinja checks via ``is defined``)."""


class EmailRenderer:
    def __init__(self, templates_dir: Path) -> None:
        self._dir = Path(templates_dir)
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self._dir)),
            autoescape=select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=_Undefined,
            auto_reload=False,
            keep_trailing_newline=True,
        )

    @lru_cache(maxsize=256)  # noqa: B019 - renderer lives for the process; bounded
    def _source(self, template: str, locale: str | None, part: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", template):
            raise TemplateRenderError(f"template name {template!r} is not valid")
        candidates = []
        if locale and _LOCALE.match(locale):
            candidates += [f"{template}/{locale.replace('_', '-')}/{part}", f"{template}/{locale[:2]}/{part}"]
        candidates.append(f"{template}/{part}")
        for name in candidates:
            if (self._dir / name).is_file():
                return name
        raise TemplateRenderError(f"template {template!r} has no {part}")

    def render(self, template: str, context: Mapping[str, Any], locale: str | None = None) -> RenderedEmail:
        rendered: dict[str, str] = {}
        for part in PARTS:
            name = self._source(template, locale, part)
            try:
                rendered[part] = self._env.get_template(name).render(**context)
            except TemplateNotFound as exc:
                raise TemplateRenderError(f"template {template!r}: {exc}") from exc
            except TemplateError as exc:
                raise TemplateRenderError(f"template {template!r}, {part}: {exc}") from exc
        subject = _CONTROL.sub(" ", rendered["subject.txt"]).strip()[:998]
        if not subject:
            raise TemplateRenderError(f"template {template!r}: the subject is empty")
        return RenderedEmail(subject=subject, html=rendered["body.html"], text=rendered["body.txt"])

    def render_sms(self, template: str, context: Mapping[str, Any], locale: str | None = None) -> str:
        """The text of ``templates/<name>/sms.txt``: control characters other than newlines become a
        space, surrounding whitespace goes. An empty text is a template error."""
        name = self._source(template, locale, SMS_PART)
        try:
            text = self._env.get_template(name).render(**context)
        except TemplateError as exc:
            raise TemplateRenderError(f"template {template!r}, {SMS_PART}: {exc}") from exc
        text = _SMS_CONTROL.sub(" ", text.replace("\r\n", "\n")).strip()
        if not text:
            raise TemplateRenderError(f"template {template!r}: the SMS text is empty")
        return text
