"""The `batch-pipeline` command: `local-api` serves the local Batch API, `demo` runs the samples,
`intents` resolves a blocked submission, `webhooks` receives OpenAI's batch webhooks."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import version

from batch_pipeline.local_api.settings import (
    SECRET_VARIABLES,
    add_settings_arguments,
    settings_from_args,
)

# The key clients of `local-api` must send; a variable, never a flag (a command line shows in `ps`).
API_KEY_VARIABLE = "BATCH_PIPELINE_LOCAL_API_KEY"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-pipeline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('batch_pipeline')}")
    commands = parser.add_subparsers(dest="command", required=True)

    local_api = commands.add_parser(
        "local-api", help="serve the local Batch API at http://HOST:PORT/v1",
        epilog=f"Secrets come from the environment, never the command line: {API_KEY_VARIABLE} (set: clients "
        f"must send this key, 401 otherwise), {SECRET_VARIABLES['upstream_api_key']} (the key sent to --upstream-url), "
        f"{SECRET_VARIABLES['webhook_secret']} (the whsec_ secret --webhook-url deliveries are signed with).",
    )
    local_api.add_argument("--host", default="127.0.0.1")
    local_api.add_argument("--port", type=int, default=8000)
    local_api.add_argument("--data-dir", required=True, help="where its SQLite state and files live")
    add_settings_arguments(local_api)

    demo = commands.add_parser("demo", help="run every sample use case end to end")
    demo.add_argument(
        "--warehouse", default=None, help="warehouse root: a folder (default ./warehouse) or a URL (s3://bucket/wh)"
    )
    demo.add_argument(
        "--base-url", default=None,
        help="use this Batch API (key from OPENAI_API_KEY; with --provider azure, the Azure endpoint and "
        "AZURE_OPENAI_API_KEY; anthropic: ANTHROPIC_API_KEY; gemini: GEMINI_API_KEY) instead of the embedded one",
    )
    demo.add_argument(
        "--provider", choices=("openai", "azure", "anthropic", "gemini"), default=None,
        help="whose Batch API to speak (default $BATCH_PIPELINE_PROVIDER, else openai); without --base-url "
        "the embedded local Batch API answers as that provider",
    )
    demo.add_argument("--use-case", action="append", default=[], metavar="NAME",
                      help="run only this use case (repeat for several)")
    demo.add_argument("--partition", action="append", default=[], metavar="KEY",
                      help="run only this partition (repeat for several)")
    demo.add_argument(
        "--module", default="assets.demo",
        help="module with run_demo(warehouse, base_url), importable from the working directory (default assets.demo)",
    )
    _intents_parser(commands)
    webhooks = commands.add_parser(
        "webhooks", help="receive OpenAI's batch webhooks at http://HOST:PORT/webhooks/openai for the batch monitor",
        epilog="The signing secret comes from OPENAI_WEBHOOK_SECRET (never the command line), the Dagster "
        "instance from DAGSTER_HOME (the daemon's). Serve it behind an HTTPS proxy: README, section Webhooks.",
    )
    webhooks.add_argument("--host", default="127.0.0.1")
    webhooks.add_argument("--port", type=int, default=8010)
    return parser


def _intents_parser(commands: argparse._SubParsersAction) -> None:
    """`intents list|resolve|release`: how an operator unblocks a partition whose submission was
    interrupted between a paid create and recording its batch id (docs/provider-port.md)."""
    intents = commands.add_parser("intents", help="look at or resolve a partition's submission intents")
    actions = intents.add_subparsers(dest="action", required=True)
    for action, text in (("list", "print each intent: key, time, batch id"),
                         ("resolve", "record BATCH_ID as the batch of intent KEY"),
                         ("release", "forget intent KEY: none of the candidates is its batch")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--warehouse", required=True, help="the warehouse root (folder or URL)")
        sub.add_argument("use_case")
        sub.add_argument("partition")
        if action != "list":
            sub.add_argument("key")
        if action == "resolve":
            sub.add_argument("batch_id")


def _intents(args: argparse.Namespace) -> int:
    from batch_pipeline.state.intent import intents_of
    from batch_pipeline.warehouse.storage import Warehouse

    log = intents_of(Warehouse(args.warehouse), args.use_case, args.partition)
    if args.action == "list":
        for key, intent in sorted(log.recorded(log.keys()).items()):
            print(f"{key}\t{intent.at:.0f}\t{intent.batch_id or '-'}")
        return 0
    if args.key not in log.keys():
        print(f"{args.use_case} {args.partition}: no intent {args.key}", file=sys.stderr)
        return 1
    if args.action == "resolve":
        log.resolve({args.key: args.batch_id})
    else:
        log.release(args.key)
    return 0


def _webhooks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Serve the receiver; refused before it starts without the secret or a Dagster home."""
    from batch_pipeline.local_api import LocalAPIExtraMissing, require_web_stack

    try:
        require_web_stack(server=True)
    except LocalAPIExtraMissing as exc:
        parser.exit(2, f"{parser.prog} webhooks: {exc}\n")
    from batch_pipeline.dagster.webhook_receiver import SECRET_VARIABLE, serve_webhooks

    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        parser.exit(2, f"{parser.prog} webhooks: set {SECRET_VARIABLE} to the endpoint's signing secret (whsec_...)\n")
    if not os.environ.get("DAGSTER_HOME"):
        parser.exit(2, f"{parser.prog} webhooks: set DAGSTER_HOME to the Dagster instance the daemon uses\n")
    serve_webhooks(args.host, args.port, secret)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "local-api":
        from batch_pipeline.local_api import LocalAPIExtraMissing, require_web_stack

        try:
            require_web_stack(server=True)
        except LocalAPIExtraMissing as exc:
            parser.exit(2, f"{parser.prog} local-api: {exc}\n")
        from batch_pipeline.local_api import serve

        serve(args.host, args.port, args.data_dir, api_key=os.environ.get(API_KEY_VARIABLE) or None,
              settings=settings_from_args(args))
        return 0
    if args.command == "intents":
        return _intents(args)
    if args.command == "webhooks":
        return _webhooks(parser, args)
    # The demo runner lives beside the sample use cases, outside the library: found by name.
    sys.path.insert(0, os.getcwd())
    chosen = {"provider": args.provider} if args.provider else {}  # a runner of one's own may not take it
    return importlib.import_module(args.module).run_demo(
        args.warehouse, args.base_url, only=args.use_case, partitions=args.partition, **chosen
    )


if __name__ == "__main__":
    sys.exit(main())
