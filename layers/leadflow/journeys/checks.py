"""Checks a journey needs beyond its own file: the templates its send steps use exist, and every
variable they use can exist.

What a template may use is ``messaging.context`` (the full template context). The check reads the
Jinja2 syntax tree of every part a send can render — ``subject.txt``, ``preheader.txt``,
``body.html``, ``body.txt``, ``sms.txt``, their locale variants and the layouts they extend or
include — and the step's own ``subject``/``preheader``, and follows every ``contact.…`` and
``entry.…`` path:

- ``contact.<field>``: a profile field (``CONTACT_FIELDS``);
- ``contact.attributes.<name>``: a custom attribute declared in ``leads.yaml`` or set by a
  journey's ``update_contact``;
- ``entry.type``/``entry.occurred_at``; ``entry.properties.<anything>`` only when the journey is
  entered by an event (any property may exist); for a stage, score, segment or manual entry there
  are no entry properties;
- any other top-level name: ``salutation``, ``unsubscribe_url``, ``subject_line``, ``preheader``
  (and ``confirm_url`` in a ``confirmation`` email), or one the template sets itself.

Every problem names the journey file, the send step, the template part and the variable.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from leadflow.journeys.model import (
    Journey,
    JourneyError,
    SendEmailStep,
    SendSmsStep,
    UpdateContactStep,
    load_journey,
)
from leadflow.messaging.context import CONFIRMATION_ONLY, CONTACT_FIELDS, ENTRY_FIELDS, TOP_LEVEL
from leadflow.messaging.render import LOCALE_FOLDER, PREHEADER_PART, SMS_PART
from leadflow.messaging.render import PARTS as EMAIL_PARTS  # the template folder's files, as rendered


def missing_templates(journey: Journey, templates_dir: Path) -> list[str]:
    """Problems like ``step 'welcome': template 'welcome' has no subject.txt`` (empty when fine).

    An email template needs ``subject.txt`` and at least one of ``body.html``/``body.txt``; an SMS
    template needs ``sms.txt`` (the default-locale files: locale folders only override them)."""
    problems = []
    for step in journey.walk():
        if isinstance(step, SendEmailStep):
            folder = templates_dir / step.send_email.template
            where = f"step {step.send_email.id!r}: template {step.send_email.template!r}"
            if not folder.is_dir():
                problems.append(f"{where} does not exist in {templates_dir}")
            elif not (folder / "subject.txt").is_file():
                problems.append(f"{where} has no subject.txt")
            elif not any((folder / part).is_file() for part in EMAIL_PARTS[1:]):
                problems.append(f"{where} has neither body.html nor body.txt")
        elif isinstance(step, SendSmsStep):
            folder = templates_dir / step.send_sms.template
            where = f"step {step.send_sms.id!r}: template {step.send_sms.template!r}"
            if not folder.is_dir():
                problems.append(f"{where} does not exist in {templates_dir}")
            elif not (folder / SMS_PART).is_file():
                problems.append(f"{where} has no {SMS_PART}")
    return problems


# --- template variables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """What one send's templates may use."""

    attributes: Collection[str]
    entry_properties: str | None
    """None when the entry is an event (any property may exist), else why there are none."""
    confirmation: bool


_ENV = SandboxedEnvironment(autoescape=True)


def _close(name: str, options: Iterable[str]) -> str:
    found = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _path(node: nodes.Node) -> tuple[str, list[str]] | None:
    """``contact.attributes.plan`` → ("contact", ["attributes", "plan"]): the constant part of an
    attribute/item chain from a context name; None when the chain does not start at a name."""
    keys: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            keys.append(node.arg.value)
        else:
            keys = []  # a computed key: only what comes before it is checked
        node = node.node
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return node.name, list(reversed(keys))
    return None


def _path_problem(root: str, keys: list[str], scope: _Scope) -> str | None:
    if not keys:
        return None
    shown = ".".join([root, *keys])
    if root == "contact":
        field = keys[0]
        if field not in CONTACT_FIELDS:
            return f"{shown}: {field!r} is not a contact field{_close(field, CONTACT_FIELDS)}"
        if field == "attributes" and len(keys) > 1 and keys[1] not in scope.attributes:
            return (
                f"{shown}: {keys[1]!r} is not a custom attribute{_close(keys[1], scope.attributes)}; "
                "declare it under 'attributes' in leads.yaml"
            )
        return None
    if root == "entry":
        field = keys[0]
        if field not in ENTRY_FIELDS:
            return f"{shown}: {field!r} is not a field of the entry event{_close(field, ENTRY_FIELDS)}"
        if field == "properties" and scope.entry_properties is not None:
            return f"{shown}: {scope.entry_properties}"
    return None


def _references(ast: nodes.Template) -> Iterator[str]:
    """The templates ``ast`` extends, includes or imports (constant names only)."""
    for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        template = getattr(node, "template", None)
        if isinstance(template, nodes.Const) and isinstance(template.value, str):
            yield template.value


def _source_problems(source: str, scope: _Scope) -> tuple[list[str], nodes.Template | None]:
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [f"line {exc.lineno}: {exc.message}"], None
    problems = []
    context_names = meta.find_undeclared_variables(ast)
    allowed = TOP_LEVEL | (CONFIRMATION_ONLY if scope.confirmation else frozenset())
    for name in sorted(context_names - allowed):
        hint = (
            " (only a confirmation email has it)"
            if name in CONFIRMATION_ONLY
            else _close(name, allowed) or f" (a template may use: {', '.join(sorted(allowed))})"
        )
        problems.append(f"{name}: not a template variable{hint}")
    seen = set()
    chains = [
        n
        for n in ast.find_all((nodes.Getattr, nodes.Getitem))
        if isinstance(n, nodes.Getattr | nodes.Getitem)
    ]
    inner = {id(node.node) for node in chains}  # only whole chains: contact.a.b, not also contact.a
    for node in chains:
        if id(node) in inner:
            continue
        found = _path(node)
        if found is None or found[0] not in ("contact", "entry") or found[0] not in context_names:
            continue
        problem = _path_problem(found[0], found[1], scope)
        if problem is not None and problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems, ast


def _template_files(folder: Path, parts: Iterable[str]) -> Iterator[Path]:
    for part in parts:
        if (folder / part).is_file():
            yield folder / part
    if folder.is_dir():
        for locale in sorted(p for p in folder.iterdir() if p.is_dir() and LOCALE_FOLDER.match(p.name)):
            for part in parts:
                if (locale / part).is_file():
                    yield locale / part


def _file_problems(path: Path, templates_dir: Path, scope: _Scope, done: set[Path]) -> list[str]:
    """Problems of one template file and of the layouts it uses (each checked once per scope)."""
    if path in done:
        return []
    done.add(path)
    shown = path.relative_to(templates_dir).as_posix()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{shown}: cannot read: {exc}"]
    problems, ast = _source_problems(source, scope)
    out = [f"{shown}: {p}" for p in problems]
    if ast is not None:
        for name in _references(ast):
            target = (templates_dir / name).resolve()
            if not target.is_relative_to(templates_dir.resolve()) or not target.is_file():
                out.append(f"{shown}: uses {name!r}, which does not exist in {templates_dir}")
            else:
                out += _file_problems(templates_dir / name, templates_dir, scope, done)
    return out


def _entry_properties(journey: Journey) -> str | None:
    if journey.entry.event_types:
        return None
    return (
        f"this journey is not entered by an event ({journey.entry.kind} entry): there are no entry properties"
    )


def set_attributes(journeys: Iterable[Journey]) -> set[str]:
    """The attribute names journeys write with ``update_contact.set`` (templates may read them)."""
    names: set[str] = set()
    for journey in journeys:
        for step in journey.walk():
            if isinstance(step, UpdateContactStep):
                names.update(step.update_contact.set)
    return names


def template_variable_problems(
    journey: Journey, templates_dir: Path, attributes: Collection[str]
) -> list[str]:
    """Problems like ``step 'invite': webinar/body.html: contact.compnay: 'compnay' is not a
    contact field (did you mean 'company'?)`` for every send of the journey (empty when fine).
    ``attributes``: the custom attribute names that may exist (``leads.yaml`` and journeys)."""
    problems: list[str] = []
    entry_properties = _entry_properties(journey)
    for step in journey.walk():
        if isinstance(step, SendEmailStep):
            spec = step.send_email
            parts: tuple[str, ...] = (EMAIL_PARTS[0], PREHEADER_PART, *EMAIL_PARTS[1:])
            inline = {"subject": spec.subject, "preheader": spec.preheader}
            scope = _Scope(attributes, entry_properties, confirmation=spec.purpose == "confirmation")
            step_id, template = spec.id, spec.template
        elif isinstance(step, SendSmsStep):
            parts = (SMS_PART,)
            inline = {}
            scope = _Scope(attributes, entry_properties, confirmation=False)
            step_id, template = step.send_sms.id, step.send_sms.template
        else:
            continue
        where = f"step {step_id!r}"
        for what, text in inline.items():
            if text is not None:
                found, _ = _source_problems(text, scope)
                problems += [f"{where}: {what}: {p}" for p in found]
        done: set[Path] = set()
        for path in _template_files(templates_dir / template, parts):
            problems += [f"{where}: {p}" for p in _file_problems(path, templates_dir, scope, done)]
    return list(dict.fromkeys(problems))


def journey_problems(
    journey: Journey, source: str, templates_dir: Path, attributes: Collection[str]
) -> list[str]:
    """Every problem of a parsed journey beyond its own file, each naming the file and the step."""
    found = missing_templates(journey, templates_dir) + template_variable_problems(
        journey, templates_dir, attributes
    )
    return [f"{source}: {p}" for p in found]


def check_files(paths: Iterable[Path], templates_dir: Path, leads_file: Path | None) -> list[str]:
    """Every problem of these journey files, of their templates and of ``leads.yaml`` (the
    custom attributes): what ``leadflow journeys validate`` prints and ``make run`` refuses."""
    from leadflow.leads.model import LeadModelError, load_lead_model

    problems: list[str] = []
    declared: set[str] = set()
    if leads_file is not None and leads_file.is_file():
        try:
            declared = set(load_lead_model(leads_file).attributes)
        except LeadModelError as exc:
            problems.append(str(exc))
    loaded: list[tuple[Path, Journey]] = []
    for path in paths:
        try:
            loaded.append((path, load_journey(path)))
        except JourneyError as exc:
            problems.append(str(exc))
    ids: dict[str, Path] = {}
    for path, journey in loaded:
        if journey.id in ids:
            problems.append(f"{path}: journey id {journey.id!r} is also used by {ids[journey.id]}")
        ids.setdefault(journey.id, path)
    attributes = declared | set_attributes(j for _, j in loaded)
    for path, journey in loaded:
        problems += journey_problems(journey, str(path), templates_dir, attributes)
    return problems


def check_content(content_dir: Path) -> list[str]:
    """``check_files`` over a content folder (``journeys/*.yaml``, ``templates/``, ``leads.yaml``)."""
    return check_files(
        sorted((content_dir / "journeys").glob("*.yaml")),
        content_dir / "templates",
        content_dir / "leads.yaml",
    )
