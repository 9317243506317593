"""Template rendering in a Jinja2 sandbox: a template error fails loudly, never half-renders.

Layout: ``templates/<name>/subject.txt``, ``body.html``, ``body.txt`` and optionally
``preheader.txt`` (email) and ``sms.txt`` (SMS); a locale folder ``templates/<name>/<locale>/``
(e.g. ``de``) overrides any of them, falling back to the default. A send step's own ``subject`` /
``preheader`` (Jinja2 text, the same context) replace the template's; the bodies see the result as
``subject_line`` and ``preheader``. ``None`` renders as an empty string; what a template may use is
``messaging.context``.
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
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

PARTS = ("subject.txt", "body.html", "body.txt")
PREHEADER_PART = "preheader.txt"
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
    preheader: str = ""


class _Undefined(StrictUndefined):
    """Undefined values are errors, except through ``default`` (which Jinja checks via ``is defined``)."""


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


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
            finalize=_blank_none,
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

    def _has(self, template: str, locale: str | None, part: str) -> bool:
        try:
            self._source(template, locale, part)
        except TemplateRenderError:
            return False
        return True

    @lru_cache(maxsize=256)  # noqa: B019 - step subjects are few and fixed; bounded
    def _inline(self, text: str) -> Template:
        return self._env.from_string(text)

    def _render_part(self, template: str, locale: str | None, part: str, context: Mapping[str, Any]) -> str:
        name = self._source(template, locale, part)
        try:
            return self._env.get_template(name).render(**context)
        except TemplateNotFound as exc:
            raise TemplateRenderError(f"template {template!r}: {exc}") from exc
        except TemplateError as exc:
            raise TemplateRenderError(f"template {template!r}, {part}: {exc}") from exc

    def _render_inline(self, template: str, what: str, text: str, context: Mapping[str, Any]) -> str:
        try:
            return self._inline(text).render(**context)
        except TemplateError as exc:
            raise TemplateRenderError(f"template {template!r}, the step's {what}: {exc}") from exc

    def render(
        self,
        template: str,
        context: Mapping[str, Any],
        locale: str | None = None,
        *,
        subject: str | None = None,
        preheader: str | None = None,
    ) -> RenderedEmail:
        """The email of ``template``; ``subject``/``preheader``: the send step's, replacing the
        template's ``subject.txt``/``preheader.txt``."""
        if subject is not None:
            subject_text = self._render_inline(template, "subject", subject, context)
        else:
            subject_text = self._render_part(template, locale, "subject.txt", context)
        if preheader is not None:
            preheader_text = self._render_inline(template, "preheader", preheader, context)
        elif self._has(template, locale, PREHEADER_PART):
            preheader_text = self._render_part(template, locale, PREHEADER_PART, context)
        else:
            preheader_text = ""
        subject_line = _line(subject_text)[:998]
        if not subject_line:
            raise TemplateRenderError(f"template {template!r}: the subject is empty")
        body_context = {**context, "subject_line": subject_line, "preheader": _line(preheader_text)}
        html = self._render_part(template, locale, "body.html", body_context)
        text = self._render_part(template, locale, "body.txt", body_context)
        return RenderedEmail(subject=subject_line, html=html, text=text, preheader=_line(preheader_text))

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
