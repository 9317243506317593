"""``leadflow`` command line: ``leadflow journeys validate FILE...``, ``leadflow journeys compile FILE``,
``leadflow journeys graph FILE [-o OUT.svg]``,
``leadflow journeys versions ID [--stage STAGE | --url URL] [--json]``,
``leadflow journeys apply-changes --stage STAGE`` (a re-run of what ``cdk deploy``'s journey_changes
function does: each journey's ``on_change``),
``leadflow ops redrive [--stage dev] [--streams] [--executions] [--since ISO] [--dry-run]``,
``leadflow ops smoke [--stage STAGE | --url URL] [--key KEY] [--timeout S]``,
``leadflow ops backfill-event-times [--stage dev]`` (once, after upgrading to the events' by_time index),
``leadflow contacts import FILE [--url URL] [--key ADMIN_KEY] [--chunk-rows 2000]``,
``leadflow journeys simulate``, ``leadflow report``.

The commands are one table (``COMMANDS``: group, name, function, help, arguments); ``parser``
builds argparse from it, so adding a command is adding a row."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadflow.journeys import JourneyError, compile_journey, load_journey


def _content_root(path: Path) -> Path:
    """Where ``templates/`` and ``leads.yaml`` are for a journey file: the folder above its
    ``journeys/`` folder when that has ``templates/``, else the working directory."""
    above = path.resolve().parent.parent
    return above if (above / "templates").is_dir() else Path.cwd()


def _validate(args: argparse.Namespace) -> int:
    """Every problem of the files (the language, the templates the sends use and the variables
    those use, each naming file, step and problem); ``ok`` for each file without one."""
    from leadflow.journeys.checks import check_files

    paths = [Path(p) for p in args.files]
    root = _content_root(paths[0]) if paths else Path.cwd()
    templates = Path(args.templates) if args.templates else root / "templates"
    leads = Path(args.leads) if args.leads else root / "leads.yaml"
    problems = check_files(paths, templates, leads)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    for path in paths:
        if not any(p.startswith(f"{path}:") for p in problems):
            print(f"ok: {path} (journey '{load_journey(path).id}')")
    return 1 if problems else 0


def _compile(args: argparse.Namespace) -> int:
    """The definition as deployed: each send names its template's version (the content folder's
    ``templates/``, when there is one)."""
    templates = _content_root(Path(args.file)) / "templates"
    try:
        journey = load_journey(Path(args.file))
        definition = compile_journey(journey, templates_dir=templates if templates.is_dir() else None)
    except JourneyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(definition)
    return 0


GRAPH_EXTRA = "leadflow[graph]"
"""The optional extra with the diagrams' layout library (``pyproject.toml``; dev installs have it)."""


def _graph(args: argparse.Namespace) -> int:
    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() == ".png":
        print(
            "error: PNG needs an SVG converter, which leadflow does not ship; write an .svg and convert "
            f"it, e.g. rsvg-convert {out.with_suffix('.svg')} -o {out}",
            file=sys.stderr,
        )
        return 2
    try:
        journey = load_journey(Path(args.file))
    except JourneyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from leadflow.journeys.graph import render_svg

    try:
        svg = render_svg(journey)
    except ModuleNotFoundError as exc:  # the layout library is an optional extra
        if (exc.name or "").split(".")[0] != "grandalf":
            raise
        print(f"error: journey diagrams need grandalf: pip install '{GRAPH_EXTRA}'", file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.write(svg)
    else:
        out.write_text(svg, encoding="utf-8")
        print(f"wrote {out} (journey '{journey.id}')")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from leadflow.local.simulate import SimulationError, compare, read_contacts, read_events, render, simulate

    if (args.events is None) == (args.from_stage is None):
        print("error: give either --events FILE or --from-stage STAGE (with --since)", file=sys.stderr)
        return 2
    try:
        if args.from_stage is not None:
            events, contacts = _stage_history(args)
        else:
            events = read_events(Path(args.events))
            contacts = read_contacts(Path(args.contacts)) if args.contacts else None
        result = simulate(Path(args.file), events, contacts)
        old = simulate(Path(args.compare), events, contacts) if args.compare else None
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if old is None:
        print("\n".join(render(result)))
        document: dict[str, Any] = result.summary()
    else:
        lines, document = compare(old, result)
        print("\n".join([*render(old), "", *render(result), "", *lines]))
    if args.json:
        print(json.dumps(document, sort_keys=False))
    return 0


def _versions(args: argparse.Namespace) -> int:
    """A journey's versions, the alias, and the running executions per version: of a deployed
    stage (``--stage``, boto3 with your credentials, read-only) or of ``make run`` (``--url``)."""
    from leadflow.ops.versions import VersionRow, render

    if args.stage:
        from leadflow.ops.versions import journey_versions

        try:
            machine = _stack_outputs(args.stage, args.region)[_journey_output(args.id)]
        except Exception as exc:
            print(f"error: no journey {args.id!r} in stack leadflow-{args.stage}: {exc}", file=sys.stderr)
            return 2
        rows = journey_versions(_client("stepfunctions", args.region), machine, args.alias)
        document = {"journey": args.id, "alias": args.alias, "versions": [r.to_dict() for r in rows]}
    else:
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{args.url.rstrip('/')}/_local/journey/versions?{urllib.parse.urlencode({'id': args.id})}"
        if not url.startswith(("http://", "https://")):
            print(f"error: --url must be an http(s) URL, not {args.url!r}", file=sys.stderr)
            return 2
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (http(s) only, checked above)
                document = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            print(f"error: {exc.read().decode(errors='replace')[:500]}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot reach the local system at {args.url} (make run): {exc}", file=sys.stderr)
            return 2
        rows = [
            VersionRow(**{k: v for k, v in row.items() if k != "running_count"})
            for row in document["versions"]
        ]
    print("\n".join(render(args.id, document["alias"], rows)))
    if args.json:
        print(json.dumps(document))
    return 0


def _event_retention_days(stage: str) -> int:
    """The stage's ``event_retention_days`` from ``cdk.json`` (the TTL of the events it records)."""
    try:
        context = json.loads(Path("cdk.json").read_text(encoding="utf-8"))["context"]
    except (OSError, ValueError, KeyError):
        return 400
    days = context.get("stages", {}).get(stage, {}).get("event_retention_days")
    return int(days or context.get("stage_defaults", {}).get("event_retention_days") or 400)


def _apply_changes(args: argparse.Namespace) -> int:
    """Each journey's ``on_change`` for the contacts in flight on its older versions, as the
    deploy's ``journey_changes`` function does (``leadflow.ops.changes.apply_changes``): a re-run
    after ``cdk deploy``, e.g. for executions reported ``busy``; a report line per journey and
    one JSON line. Exit 1 when a journey's change failed."""
    from leadflow.events.store import EventStore
    from leadflow.journeys import load_journeys
    from leadflow.journeys.runtime.enrollments import JourneyStore
    from leadflow.ops.changes import apply_changes

    try:
        outputs = _stack_outputs(args.stage, args.region)
        contacts, events_table = outputs["ContactsTable"], outputs["EventsTable"]
    except Exception as exc:
        print(f"error: cannot read stack leadflow-{args.stage}: {exc}", file=sys.stderr)
        return 2
    journeys = load_journeys(Path(args.journeys))
    machines = {j.id: outputs.get(_journey_output(j.id)) for j in journeys}
    for journey_id, machine in machines.items():
        if machine is None:
            print(f"error: journey {journey_id!r} is not deployed in leadflow-{args.stage}", file=sys.stderr)
            return 2
    ddb, sfn = _client("dynamodb", args.region), _client("stepfunctions", args.region)
    changes = apply_changes(
        sfn,
        journeys,
        lambda journey_id: str(machines[journey_id]),
        args.alias,
        store=JourneyStore(ddb, contacts_table=contacts, events_table=events_table),
        events=EventStore(ddb, events_table, args.event_retention_days or _event_retention_days(args.stage)),
    )
    print("\n".join(changes.lines()))
    print(json.dumps({"stage": args.stage, **changes.to_dict()}))
    return 1 if changes.failed else 0


def _stage_history(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The deployed stage's history (read-only), as simulate's input."""
    import tempfile

    from leadflow.local.history_export import export_history
    from leadflow.local.simulate import read_events

    since = datetime.now(UTC) - args.since if isinstance(args.since, timedelta) else args.since
    exported = export_history(_client("dynamodb", args.region), args.from_stage, since)
    for kind, count in sorted(exported.left_out.items()):
        print(f"note: {count} {kind} events are not replayed", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in exported.events), encoding="utf-8")
        events = read_events(path)
    contacts = "".join(json.dumps(c) + "\n" for c in exported.contacts) or None
    return events, contacts


def _window(value: str) -> datetime | timedelta:
    """``30d``, ``12h`` (back from now) or an ISO 8601 time."""
    if value[:-1].isdigit() and value[-1:] in ("d", "h"):
        return timedelta(**{"days" if value.endswith("d") else "hours": int(value[:-1])})
    return _since(value)


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def _stack_outputs(stage: str, region: str | None) -> dict[str, str]:
    """The outputs of the stage's stack ``leadflow-<stage>`` (its table names, journey ARNs...)."""
    stack = _client("cloudformation", region).describe_stacks(StackName=f"leadflow-{stage}")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Stacks"][0].get("Outputs", [])}


def _journey_output(journey_id: str) -> str:
    """The stack output with a journey's state machine ARN."""
    return f"Journey{journey_id.replace('-', '').capitalize()}Arn"


def _backfill_event_times(args: argparse.Namespace) -> int:
    """Once per stage after upgrading to the events table's ``by_time`` index: older events get
    their ``at`` so history reads (``did … within``, timeline, hand-offs) see them."""
    from leadflow.events.store import backfill_event_times

    table = f"leadflow-{args.stage}-events"
    updated = backfill_event_times(_client("dynamodb", args.region), table)
    print(f"{table}: {updated} events given their time key (by_time index)")
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from leadflow.ops.redrive import redrive, skipped_by_reason, stage_resources, totals

    do_streams, do_executions = args.streams, args.executions
    if not do_streams and not do_executions:
        do_streams = do_executions = True
    try:
        resources = stage_resources(_client("cloudformation", args.region), args.stage)
    except Exception as exc:
        print(f"error: cannot read stack leadflow-{args.stage}: {exc}", file=sys.stderr)
        return 2
    summaries = redrive(
        resources,
        sqs=_client("sqs", args.region),
        streams=_client("dynamodbstreams", args.region),
        lambda_=_client("lambda", args.region),
        sfn=_client("stepfunctions", args.region),
        do_streams=do_streams,
        do_executions=do_executions,
        since=args.since,
        dry_run=args.dry_run,
        delete_expired=args.delete_expired,
    )
    for summary in summaries:
        print(
            f"{summary.name}: {summary.redriven} redriven, {summary.still_failing} still failing, "
            f"{summary.expired} expired"
            + (f", {summary.pending} to redrive (dry run)" if args.dry_run else "")
            + "".join(
                f", {count} skipped ({reason}: stopped on purpose)"
                for reason, count in sorted(summary.skipped_by_reason.items())
            )
        )
        for item in summary.items:
            if item["outcome"] != "redriven":
                where = (
                    item.get("execution_arn")
                    or f"{item.get('shard_id')} {item.get('start')}..{item.get('end')}"
                )
                print(f"  {item['outcome']}: {where} {item.get('reason', '')}".rstrip())
    total = totals(summaries)
    print(
        json.dumps(
            {
                "stage": args.stage,
                "dry_run": args.dry_run,
                **total,
                "skipped_by_reason": skipped_by_reason(summaries),
                "summaries": [s.to_dict() for s in summaries],
            },
            default=str,
        )
    )
    return 1 if total["still_failing"] or total["expired"] else 0


MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""Below the API's MAX_IMPORT_BYTES (5 MB): a chunk is sent before it grows past this."""


def _chunks(path: Path, chunk_rows: int) -> Any:
    """(content type, body, rows) per chunk of the file: CSV chunks repeat the header row; blank
    lines are skipped and not counted, like the API counts rows."""
    import csv
    import io

    from leadflow.contacts.importing import blank

    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        lines = [line for line in text.splitlines() if line.strip()]
        for start in range(0, len(lines), chunk_rows):
            part = lines[start : start + chunk_rows]
            yield "application/x-ndjson", "\n".join(part) + "\n", len(part)
        return
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return
    out, writer, rows = io.StringIO(), None, 0

    def new_chunk() -> tuple[io.StringIO, Any]:
        buffer = io.StringIO()
        w = csv.writer(buffer, lineterminator="\n")
        w.writerow(header)
        return buffer, w

    out, writer = new_chunk()
    for record in reader:
        if blank(record):
            continue
        writer.writerow(record)
        rows += 1
        if rows >= chunk_rows or out.tell() >= MAX_CHUNK_BYTES:
            yield "text/csv", out.getvalue(), rows
            (out, writer), rows = new_chunk(), 0
    if rows:
        yield "text/csv", out.getvalue(), rows


def _post(url: str, body: str, content_type: str, key: str | None, region: str | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    data = body.encode("utf-8")
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    else:  # AWS: IAM authorization (SigV4 for execute-api) with the caller's credentials
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = boto3.Session(region_name=region)
        host = url.split("/")[2]
        region_name = region or (host.split(".")[2] if ".execute-api." in host else session.region_name)
        request = AWSRequest(method="POST", url=url, data=data, headers=headers)
        SigV4Auth(session.get_credentials(), "execute-api", region_name).add_auth(request)
        headers = dict(request.headers)
    if not url.startswith(("https://", "http://")):
        raise SystemExit(f"error: --url must be an http(s) URL, not {url!r}")
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(req, timeout=900) as resp:  # noqa: S310 (http(s) only, checked above)
            result: dict[str, Any] = json.loads(resp.read().decode())
            return result
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:2000]
        raise SystemExit(f"error: the API answered {exc.code}: {detail}") from exc
    except OSError as exc:  # refused, unresolvable, timed out: the API is not at --url
        raise SystemExit(f"error: cannot reach the API at {url} (--url; make run's PORT): {exc}") from exc


def _import_contacts(args: argparse.Namespace) -> int:
    import os
    import time

    path = Path(args.file)
    if not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    key = args.key or os.environ.get("LEADFLOW_ADMIN_KEY") or os.environ.get("LEADFLOW_LOCAL_ADMIN_KEY")
    url = args.url.rstrip("/") + "/admin/contacts/import"
    totals = {"rows": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}
    errors: list[dict[str, Any]] = []
    started = time.perf_counter()
    for content_type, body, rows in _chunks(path, args.chunk_rows):
        report = _post(url, body, content_type, key, args.region)
        for error in report.get("errors", []):
            errors.append({**error, "row": int(error["row"]) + totals["rows"]})
        for name in totals:
            totals[name] += int(report.get(name, 0)) if name != "rows" else rows
        rate = totals["rows"] / max(time.perf_counter() - started, 1e-9)
        print(
            f"rows {totals['rows']}  created {totals['created']}  updated {totals['updated']}  "
            f"failed {totals['failed']}  {rate:,.0f} rows/s",
            file=sys.stderr,
        )
    for error in errors:
        print(f"row {error['row']}: {error['field']}: {error['message']}")
    print(json.dumps(totals))
    return 1 if totals["failed"] else 0


def _smoke(args: argparse.Namespace) -> int:
    import os
    from urllib.parse import urlsplit

    from leadflow.ops.smoke import AwsTarget, LocalTarget, Target, smoke

    local_url = args.url and urlsplit(args.url).hostname in ("localhost", "127.0.0.1", "::1")
    target: Target
    if args.stage == "local" or (args.stage is None and local_url):
        key = args.key or os.environ.get("LEADFLOW_LOCAL_ADMIN_KEY") or os.environ.get("LEADFLOW_ADMIN_KEY")
        if not key:
            print(
                "error: the local admin key is needed (--key, or LEADFLOW_LOCAL_ADMIN_KEY)", file=sys.stderr
            )
            return 2
        target = LocalTarget(args.url or "http://127.0.0.1:8080", key)
    else:
        import boto3

        stage = args.stage or "dev"
        try:
            target = AwsTarget.from_stack(stage, boto3.Session(region_name=args.region), args.url)
        except Exception as exc:
            print(f"error: cannot read stack leadflow-{stage}: {exc}", file=sys.stderr)
            return 2
    result = smoke(target, timeout=args.timeout)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def _report(args: argparse.Namespace) -> int:
    from leadflow.reporting import render
    from leadflow.reporting.consumer import DEFAULT_GOALS
    from leadflow.reporting.reports import ReportReader
    from leadflow.reporting.store import ReportTable

    table = args.table
    if table is None:
        table = _stack_outputs(args.stage, args.region)["ReportsTable"]
    goals = (args.goal,) if args.goal else DEFAULT_GOALS
    reader = ReportReader(ReportTable(_client("dynamodb", args.region), table), goals)
    journeys = [reader.journey(j, args.goal) for j in args.journey]
    messages = [reader.message(t) for t in args.template]
    attribution = reader.attribution()
    if args.json:
        print(
            json.dumps(
                {
                    "journeys": [j.model_dump() for j in journeys],
                    "messages": [m.model_dump() for m in messages],
                    "attribution": attribution.model_dump(),
                },
                indent=1,
            )
        )
        return 0
    for j in journeys:
        print(render.journey_text(j))
    for m in messages:
        print(render.message_text(m))
    print(render.attribution_text(attribution))
    return 0


Argument = tuple[tuple[str, ...], dict[str, Any]]
"""An argument of a command: ``add_argument``'s flags (or name) and options."""


def _arg(*flags: str, **options: Any) -> Argument:
    return flags, options


REGION = _arg("--region", default=None, help="AWS region (default: the AWS configuration's)")
ALIAS = _arg("--alias", default="live", help="the journeys' alias (default live)")
LOCAL_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Command:
    """One command of the table: ``leadflow GROUP NAME`` (``name`` None: the group itself runs)."""

    group: str
    name: str | None
    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: tuple[Argument, ...]
    description: str | None = None


GROUPS = {
    "journeys": "validate, compile and draw journey files",
    "ops": "operate a deployed stage",
    "contacts": "contacts: bulk import",
}
"""The groups of commands (``leadflow GROUP COMMAND``), with their help."""

COMMANDS = (
    Command(
        "journeys",
        "validate",
        _validate,
        "check journey files, print every problem",
        (
            _arg("files", nargs="+", metavar="FILE"),
            _arg("--templates", help="templates folder (default: templates/ beside journeys/)"),
            _arg("--leads", help="leads.yaml with the custom attributes (default: beside journeys/)"),
        ),
    ),
    Command(
        "journeys",
        "compile",
        _compile,
        "print the Step Functions definition (ASL) of a journey",
        (_arg("file", metavar="FILE"),),
    ),
    Command(
        "journeys",
        "graph",
        _graph,
        "draw a journey as a flowchart (SVG)",
        (
            _arg("file", metavar="FILE"),
            _arg("-o", "--output", metavar="OUT.svg", help="write here (default: standard output)"),
        ),
    ),
    Command(
        "journeys",
        "simulate",
        _simulate,
        "replay a history of events through a journey on the local runtime (nothing leaves the machine)",
        (
            _arg("file", metavar="JOURNEY.yaml"),
            _arg("--events", metavar="EVENTS.jsonl", help="the history to replay"),
            _arg(
                "--from-stage",
                metavar="STAGE",
                help="replay a deployed stage's history instead (boto3, read-only)",
            ),
            _arg(
                "--since",
                type=_window,
                default=timedelta(days=30),
                help="with --from-stage: 30d, 12h or an ISO time",
            ),
            _arg("--region", default=None, help="with --from-stage: AWS region"),
            _arg(
                "--contacts",
                metavar="CONTACTS.jsonl",
                help="contacts to import first (the admin import's JSON Lines rows)",
            ),
            _arg("--compare", metavar="OLD.yaml", help="replay through this version too and compare"),
            _arg("--json", action="store_true", help="also print the result as the final JSON line"),
        ),
        'Each line of EVENTS.jsonl is a POST /events body plus "at" (ISO 8601): virtual time '
        "moves to it and the event arrives as the real system would receive it; then the clock runs "
        "until the journey is done. Prints entries, paths, sends, skips, exits, send times and the "
        "orchestration cost per contact (the model of make bench). See journeys/README.md.",
    ),
    Command(
        "journeys",
        "versions",
        _versions,
        "a journey's published versions and the running executions on each",
        (
            _arg("id", metavar="ID", help="journey id"),
            _arg("--stage", default=None, help="a deployed stage (stack leadflow-<stage>), via boto3"),
            _arg("--url", default=LOCAL_URL, help="the local system (make run)"),
            ALIAS,
            REGION,
            _arg("--json", action="store_true", help="also the document as one JSON line"),
        ),
        "Every deploy publishes a version of each changed journey and moves its alias "
        "(live) to it; running executions keep theirs. Lists the versions (newest first: number, "
        "created, the alias's share, the definition's hash) and the RUNNING executions per version.",
    ),
    Command(
        "journeys",
        "apply-changes",
        _apply_changes,
        "re-run what cdk deploy did: each journey's on_change for the contacts on its older versions",
        (
            _arg("--stage", required=True, help="the deployed stage (stack leadflow-<stage>)"),
            _arg("--journeys", default="journeys", help="the journey files deployed (default journeys/)"),
            ALIAS,
            _arg(
                "--event-retention-days", type=int, default=None, help="default: the stage's, from cdk.json"
            ),
            REGION,
        ),
        "cdk deploy runs this itself (the journey_changes function); run it again for "
        "executions reported busy or a journey reported failed: for each journey of journeys/, the "
        "RUNNING executions on versions the alias no longer routes to are left (on_change: "
        "finish_on_old), ended on purpose (on_change: exit) or moved onto the live version at "
        "the mapped step (on_change: {move_to_new: {OLD_STEP: NEW_STEP}}). Idempotent.",
    ),
    Command(
        "ops",
        "redrive",
        _redrive,
        "re-process failed stream batches (on-failure queues) and failed journey executions",
        (
            _arg("--stage", default="dev", help="stage to redrive (stack leadflow-<stage>)"),
            REGION,
            _arg("--streams", action="store_true", help="redrive the stream consumers' failures"),
            _arg("--executions", action="store_true", help="redrive failed journey executions"),
            _arg(
                "--since",
                type=_since,
                default=None,
                metavar="ISO",
                help="only executions that ended at or after",
            ),
            _arg("--dry-run", action="store_true", help="report what would be redriven, change nothing"),
            _arg(
                "--delete-expired",
                action="store_true",
                help="delete queue messages whose records the stream no longer holds (after reporting them)",
            ),
        ),
        "Stream batches are read back from the stream and given to their consumer again; a "
        "queue message is deleted only when the consumer succeeds. FAILED, TIMED_OUT and ABORTED journey "
        "executions are redriven (same execution, so no email is sent twice). Neither --streams nor "
        "--executions means both. Exit status 1 when something is still failing or expired.",
    ),
    Command(
        "ops",
        "backfill-event-times",
        _backfill_event_times,
        "once after the upgrade to the by_time index: give older events their time key",
        (_arg("--stage", default="dev", help="stage (table leadflow-<stage>-events)"), REGION),
    ),
    Command(
        "ops",
        "smoke",
        _smoke,
        "post-deploy smoke test: sign-up to welcome email, bounce and complaint feedback, IAM, erasure",
        (
            _arg("--stage", default=None, help="stage (stack leadflow-<stage>); local: `make run`"),
            _arg("--url", default=None, help="API base URL (default: the stack's ApiUrl output)"),
            _arg("--key", default=None, help="local admin key (default: $LEADFLOW_LOCAL_ADMIN_KEY)"),
            REGION,
            _arg("--timeout", type=float, default=180.0, help="seconds per awaited outcome (180)"),
        ),
        "Form posts for SES's mailbox simulator (success, bounce, complaint), then checks the "
        "contact and its event, the welcome journey's execution, the email accepted and delivered, the "
        "bounce and complaint suppressed through SES -> SNS -> feedback, and that admin routes need IAM; "
        "everything it created is erased at the end. One line per step, then one JSON line; exit "
        "status 1 on any failure. --stage local (or a --url on localhost) runs it against `make run`.",
    ),
    Command(
        "contacts",
        "import",
        _import_contacts,
        "import contacts from a CSV (header row) or JSON Lines (.jsonl) file",
        (
            _arg("file", metavar="FILE"),
            _arg("--url", default=LOCAL_URL, help="base URL of the API"),
            _arg("--key", default=None, help="local admin key (default: $LEADFLOW_ADMIN_KEY)"),
            _arg("--region", default=None, help="AWS region for SigV4 (default: from the URL)"),
            _arg("--chunk-rows", type=int, default=2000, help="rows per request (default 2000)"),
        ),
        "Posts the file in chunks to POST /admin/contacts/import and prints progress per "
        "chunk (stderr), then every bad row with its row number in the file (1-based data row; the "
        "header and blank lines are not counted). Locally pass the admin key `make run` prints; "
        "without a key the request is signed with your AWS credentials (SigV4, IAM). "
        "Exit status 1 when a row failed.",
    ),
    Command(
        "report",
        None,
        _report,
        "print the reporting figures of a deployed stage",
        (
            _arg("--stage", default="dev", help="stage (stack leadflow-<stage>)"),
            REGION,
            _arg("--table", default=None, help="the reports table name (default: from the stack)"),
            _arg("--journey", action="append", default=[], help="journey id (repeatable)"),
            _arg("--template", action="append", default=[], help="template name (repeatable)"),
            _arg("--goal", default=None, help="goal event type of journey reports"),
            _arg("--json", action="store_true", help="JSON instead of text"),
        ),
        "Reads the reporting counters (the ReportsTable output of stack leadflow-<stage>) "
        "through boto3: a fixed number of reads, whatever the number of contacts. Locally, "
        "/_local/report shows the same figures as charts.",
    ),
)
"""Every command, in the order ``--help`` lists them."""


def parser() -> argparse.ArgumentParser:
    """The parser of ``COMMANDS``: each command's arguments, with its function as ``run``."""
    root = argparse.ArgumentParser(prog="leadflow", description="leadflow command line")
    groups = root.add_subparsers(dest="group", required=True)
    subcommands: dict[str, Any] = {}
    for command in COMMANDS:
        if command.name is None:
            found = groups.add_parser(command.group, help=command.help, description=command.description)
        else:
            if command.group not in subcommands:
                group = groups.add_parser(command.group, help=GROUPS[command.group])
                subcommands[command.group] = group.add_subparsers(dest="command", required=True)
            found = subcommands[command.group].add_parser(
                command.name, help=command.help, description=command.description
            )
        for flags, options in command.arguments:
            found.add_argument(*flags, **options)
        found.set_defaults(run=command.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
