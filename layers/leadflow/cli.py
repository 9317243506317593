"""``leadflow`` command line: ``leadflow journeys validate FILE...``, ``leadflow journeys compile FILE``,
``leadflow journeys graph FILE [-o OUT.svg]``,
``leadflow ops redrive [--stage dev] [--streams] [--executions] [--since ISO] [--dry-run]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadflow.journeys import JourneyError, compile_journey, load_journey


def _validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            journey = load_journey(Path(path))
        except JourneyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"ok: {path} (journey '{journey.id}')")
    return status


def _compile(args: argparse.Namespace) -> int:
    try:
        journey = load_journey(Path(args.file))
    except JourneyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(compile_journey(journey))
    return 0


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

    svg = render_svg(journey)
    if out is None:
        sys.stdout.write(svg)
    else:
        out.write_text(svg, encoding="utf-8")
        print(f"wrote {out} (journey '{journey.id}')")
    return 0


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def _redrive(args: argparse.Namespace) -> int:
    from leadflow.ops.redrive import redrive, stage_resources, totals

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
                "summaries": [s.to_dict() for s in summaries],
            },
            default=str,
        )
    )
    return 1 if total["still_failing"] or total["expired"] else 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="leadflow", description="leadflow command line")
    groups = root.add_subparsers(dest="group", required=True)
    journeys = groups.add_parser("journeys", help="validate, compile and draw journey files")
    commands = journeys.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check journey files, print every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(run=_validate)
    compile_ = commands.add_parser("compile", help="print the Step Functions definition (ASL) of a journey")
    compile_.add_argument("file", metavar="FILE")
    compile_.set_defaults(run=_compile)
    graph = commands.add_parser("graph", help="draw a journey as a flowchart (SVG)")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("-o", "--output", metavar="OUT.svg", help="write here (default: standard output)")
    graph.set_defaults(run=_graph)

    ops = groups.add_parser("ops", help="operate a deployed stage")
    ops_commands = ops.add_subparsers(dest="command", required=True)
    redrive = ops_commands.add_parser(
        "redrive",
        help="re-process failed stream batches (on-failure queues) and failed journey executions",
        description="Stream batches are read back from the stream and given to their consumer again; a "
        "queue message is deleted only when the consumer succeeds. FAILED, TIMED_OUT and ABORTED journey "
        "executions are redriven (same execution, so no email is sent twice). Neither --streams nor "
        "--executions means both. Exit status 1 when something is still failing or expired.",
    )
    redrive.add_argument("--stage", default="dev", help="stage to redrive (stack leadflow-<stage>)")
    redrive.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
    redrive.add_argument("--streams", action="store_true", help="redrive the stream consumers' failures")
    redrive.add_argument("--executions", action="store_true", help="redrive failed journey executions")
    redrive.add_argument(
        "--since", type=_since, default=None, metavar="ISO", help="only executions that ended at or after"
    )
    redrive.add_argument(
        "--dry-run", action="store_true", help="report what would be redriven, change nothing"
    )
    redrive.add_argument(
        "--delete-expired",
        action="store_true",
        help="delete queue messages whose records the stream no longer holds (after reporting them)",
    )
    redrive.set_defaults(run=_redrive)

    report = groups.add_parser(
        "report",
        help="print the reporting figures of a deployed stage",
        description="Reads the reporting counters (the ReportsTable output of stack leadflow-<stage>) "
        "through boto3: a fixed number of reads, whatever the number of contacts. Locally, "
        "/_local/report shows the same figures as charts.",
    )
    report.add_argument("--stage", default="dev", help="stage (stack leadflow-<stage>)")
    report.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
    report.add_argument("--table", default=None, help="the reports table name (default: from the stack)")
    report.add_argument("--journey", action="append", default=[], help="journey id (repeatable)")
    report.add_argument("--template", action="append", default=[], help="template name (repeatable)")
    report.add_argument("--goal", default=None, help="goal event type of journey reports")
    report.add_argument("--json", action="store_true", help="JSON instead of text")
    report.set_defaults(run=_report)
    return root


def _report(args: argparse.Namespace) -> int:
    from leadflow.reporting import render
    from leadflow.reporting.consumer import DEFAULT_GOALS
    from leadflow.reporting.counters import ReportTable
    from leadflow.reporting.reports import ReportReader

    table = args.table
    if table is None:
        stack = _client("cloudformation", args.region).describe_stacks(StackName=f"leadflow-{args.stage}")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Stacks"][0].get("Outputs", [])}
        table = outputs["ReportsTable"]
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
