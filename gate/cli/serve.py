"""``gate serve``: run the gate server until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError
from gate.logs import configure as configure_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sv = sub.add_parser("serve", help="run the gate server")
    sv.add_argument("--config", type=Path, help="configuration YAML (default: embedded defaults)")
    sv.add_argument("--listen", help="HOST:PORT to listen on (overrides the configuration)")
    sv.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import signal

    from gate.config import load_config
    from gate.server import GateServer

    try:
        config = load_config(args.config, listen=args.listen)
        configure_logging(args.log_level, config.log_format)
        if args.config is None:
            from gate import demo

            demo.ensure_heldout(config.data_dir / "demo")
        server = GateServer(config)
    except GateError as e:
        print(f"gate serve: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=5.0))
    dashboard = None
    try:
        server.start()
        if config.http_listen:
            from gate.dashboard import Dashboard

            dashboard = Dashboard(config)
            dashboard.start()
        server.load()
        server.wait()
    except GateError as e:
        print(f"gate serve: {e.message}", file=sys.stderr)
        server.stop(grace=None)
        return EXIT_ERROR
    except KeyboardInterrupt:
        server.stop(grace=5.0)
    finally:
        if dashboard is not None:
            dashboard.stop()
    return 0
