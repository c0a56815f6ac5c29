"""The `batch-pipeline` command: `local-api` serves the local Batch API, `demo` runs the samples."""

from __future__ import annotations

import argparse
import sys

from batch_pipeline.local_api.settings import add_settings_arguments, settings_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local_api = commands.add_parser("local-api", help="serve the local Batch API at http://HOST:PORT/v1")
    local_api.add_argument("--host", default="127.0.0.1")
    local_api.add_argument("--port", type=int, default=8000)
    local_api.add_argument("--data-dir", required=True, help="where its SQLite state and files live")
    local_api.add_argument("--api-key", default=None, help="require this key (401 otherwise)")
    add_settings_arguments(local_api)

    demo = commands.add_parser("demo", help="run every sample use case end to end")
    demo.add_argument("--warehouse", default=None, help="warehouse root (default ./warehouse)")
    demo.add_argument(
        "--base-url", default=None, help="use this Batch API (key from OPENAI_API_KEY) instead of the embedded one"
    )

    args = parser.parse_args(argv)
    if args.command == "local-api":
        from batch_pipeline.local_api import serve

        serve(args.host, args.port, args.data_dir, api_key=args.api_key, settings=settings_from_args(args))
        return 0
    from batch_pipeline.demo import run_demo

    return run_demo(args.warehouse, args.base_url)


if __name__ == "__main__":
    sys.exit(main())
