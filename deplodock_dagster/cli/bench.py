"""`deplodock bench`: benchmark recipes through the same Dagster asset job the UI runs.

    deplodock bench tiny-cpu                         one recipe, every variant
    deplodock bench GLM-4.6-FP8 Qwen3-Coder-480B-A35B-Instruct-AWQ --variants 8xH200
    deplodock bench tiny-cpu --dry-run               plan the groups, provision nothing
    deplodock bench tiny-cpu --submit                queue it on a running Dagster instance

In process (the default), the run lives in $DAGSTER_HOME's instance when set, else in a
temporary one; groups run in parallel, one process each (`--max-workers` caps them). Dagster
is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deplodock_dagster.errors import ConfigError


def register(subparsers) -> None:
    """Add the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="plan, provision, deploy, benchmark, tear down, delete; then report",
        description=(
            "Benchmark recipes: plan their tasks into groups (one VM each), provision the "
            "VMs, deploy and benchmark every task, delete the VMs, store the results and "
            "rebuild the report. Runs the Dagster benchmark job; a failed task fails the "
            "command at the end, after every result is stored and every VM deleted."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipes", nargs="+", metavar="RECIPE",
                        help="recipe name (folder under the recipes dir) or recipe folder")
    parser.add_argument("--variants", nargs="+", default=[], metavar="V",
                        help="only these variants (default: every variant)")
    parser.add_argument("--force", action="store_true",
                        help="run tasks again even when a result is stored")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan and print the groups; provision and run nothing")
    parser.add_argument("--max-workers", type=int, metavar="N",
                        help="groups run at once (default: one per CPU)")
    parser.add_argument("--recipes-dir", metavar="DIR",
                        help="folder holding the recipes (default: $DEPLODOCK_RECIPES_DIR or "
                             "the repository's recipes/)")
    parser.add_argument("--results", metavar="DIR",
                        help="result store (default: $DEPLODOCK_RESULTS_DIR or ./results)")
    parser.add_argument("--reports", metavar="DIR",
                        help="report folder (default: $DEPLODOCK_REPORTS_DIR or ./reports)")
    parser.add_argument("--submit", action="store_true",
                        help="queue one run on a running Dagster webserver instead; it covers "
                             "the partition range from the first to the last RECIPE")
    parser.add_argument("--url", default=os.environ.get("DAGSTER_URL", "http://127.0.0.1:3000"),
                        help="webserver for --submit (default: $DAGSTER_URL or %(default)s)")
    parser.set_defaults(func=run_bench)


def _recipe_keys(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """Partition keys (folder names) and the recipes dir they live in."""
    recipes_dir = args.recipes_dir
    keys, parents = [], set()
    for item in args.recipes:
        path = Path(item)
        if path.name == "recipe.yaml":
            path = path.parent
        if path.is_dir() and (path / "recipe.yaml").is_file() and (
                len(path.parts) > 1 or recipes_dir is None):
            parents.add(path.resolve().parent)
            keys.append(path.name)
        else:
            keys.append(item)
    if parents:
        if len(parents) > 1 or (recipes_dir and Path(recipes_dir).resolve() not in parents):
            raise ConfigError(
                "recipe folders given as paths must share one parent folder (the recipes "
                f"dir); got {', '.join(sorted(map(str, parents)))}"
            )
        recipes_dir = str(parents.pop())
    if recipes_dir is None:
        from deplodock_dagster.recipe import default_recipes_dir

        recipes_dir = str(default_recipes_dir())
    missing = [key for key in keys if not (Path(recipes_dir) / key / "recipe.yaml").is_file()]
    if missing:
        raise ConfigError(
            f"no recipe named {', '.join(missing)} in {recipes_dir} "
            "(see `deplodock recipes list`, or pass --recipes-dir)"
        )
    return list(dict.fromkeys(keys)), recipes_dir


def run_bench(args: argparse.Namespace) -> int:
    """Handler of `deplodock bench`."""
    if args.max_workers is not None and args.max_workers < 1:
        raise ConfigError("--max-workers must be at least 1")
    keys, recipes_dir = _recipe_keys(args)
    if args.submit:
        return _submit(args, keys)

    from deplodock_dagster.orchestration.launch import run_benchmarks

    runs = run_benchmarks(
        keys,
        recipes_dir=recipes_dir,
        results_dir=args.results,
        reports_dir=args.reports,
        variants=args.variants,
        force=args.force,
        dry_run=args.dry_run,
        max_workers=args.max_workers,
    )
    failed = [run for run in runs if not run.success]
    for run in runs:
        state = "succeeded" if run.success else "FAILED"
        print(f"run {run.run_id} ({', '.join(run.recipes)}): {state}")
        for failure in run.failures:
            print(f"  {failure.splitlines()[0]}")
        if run.report_summary:
            print()
            print(run.report_summary.rstrip())
            print()
            print(f"report: {run.report_workbook}")
    if not args.dry_run:
        results = args.results or os.environ.get("DEPLODOCK_RESULTS_DIR", "results")
        print(f"results in {Path(results).resolve()}")
    return 1 if failed else 0


def _submit(args: argparse.Namespace, keys: list[str]) -> int:
    """Queue one run over `keys` on a running webserver (the keys must be one range)."""
    from urllib.parse import urlparse

    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    from deplodock_dagster.orchestration.jobs import BENCHMARK_JOB_NAME, partition_range_tags
    from deplodock_dagster.orchestration.launch import run_config

    url = urlparse(args.url)
    client = DagsterGraphQLClient(url.hostname or "127.0.0.1", port_number=url.port,
                                  use_https=url.scheme == "https")
    config = run_config(variants=args.variants, force=args.force, dry_run=args.dry_run,
                        max_workers=args.max_workers)
    try:
        run_id = client.submit_job_execution(
            BENCHMARK_JOB_NAME, run_config=config, tags=partition_range_tags(keys[0], keys[-1])
        )
    except DagsterGraphQLClientError as error:
        raise ConfigError(f"{args.url}: could not submit the run: {error}") from error
    print(f"queued run {run_id} over recipes {keys[0]}..{keys[-1]} on {args.url}")
    return 0
