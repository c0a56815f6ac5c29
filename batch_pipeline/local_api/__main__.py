"""``python -m batch_pipeline.local_api``: serve without the project CLI (tests start it this way)."""

from __future__ import annotations

import argparse

from batch_pipeline.local_api.server import DEFAULT_DATA_DIR, serve
from batch_pipeline.local_api.settings import add_settings_arguments, settings_from_args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m batch_pipeline.local_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--api-key", default=None)
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port, data_dir=args.data_dir, api_key=args.api_key,
          settings=settings_from_args(args))


if __name__ == "__main__":
    main()
