"""The `deplodock` command tree, over the same library the Dagster ops call.

    deplodock deploy local|ssh|cloud   put an engine on a host (and benchmark it)
    deplodock bench RECIPE...          plan, provision, deploy, benchmark, tear down
    deplodock report                   Excel workbooks and $/Mtok from stored results
    deplodock vm create|delete ...     manage cloud VMs by hand

Each area registers its own subcommands (cli/deploy.py, cli/bench.py, ...). Errors the
library raises on purpose are printed as one clear message, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from deplodock_dagster.errors import DeplodockError
from deplodock_dagster.secrets import install_log_redaction, redact

SUBCOMMAND_MODULES = ("deploy", "bench", "report", "vm", "recipes")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each area module adds its subcommands."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="deplodock",
        description="Deploy LLM inference engines on GPU machines, benchmark them, report.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show commands and API calls")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"deplodock_dagster.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"deplodock_dagster.cli.{module_name}":
                raise
            continue  # area not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `deplodock` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    install_log_redaction()
    try:
        return int(args.func(args) or 0)
    except DeplodockError as error:
        print(f"deplodock: error: {redact(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("deplodock: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
