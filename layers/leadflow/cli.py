"""``leadflow`` command line: ``leadflow journeys validate FILE...``, ``leadflow journeys compile FILE``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="leadflow", description="leadflow command line")
    groups = root.add_subparsers(dest="group", required=True)
    journeys = groups.add_parser("journeys", help="validate and compile journey files")
    commands = journeys.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check journey files, print every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(run=_validate)
    compile_ = commands.add_parser("compile", help="print the Step Functions definition (ASL) of a journey")
    compile_.add_argument("file", metavar="FILE")
    compile_.set_defaults(run=_compile)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
