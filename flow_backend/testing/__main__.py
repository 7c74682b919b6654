"""``python -m flow_backend.testing`` (and ``flow fake-mithril``): run a fake Mithril API until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from flow_backend.cli.fake_mithril import add_arguments
from flow_backend.testing.fake_mithril import FakeMithril

__all__ = ["main", "serve"]


def serve(args: argparse.Namespace) -> int:
    """Start the fake, print how to point ``flow`` at it, serve until Ctrl-C or SIGTERM."""
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    if args.provisioning_delay < 0:
        print(
            f"error: --provisioning-delay must not be negative, got {args.provisioning_delay}",
            file=sys.stderr,
        )
        return 2
    try:
        fake = FakeMithril(
            args.work_dir,
            api_key=args.api_key,
            ssh_destination=args.ssh_destination,
            provisioning_delay=args.provisioning_delay,
            port=args.port,
        )
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    except ValueError as error:  # e.g. no sshd on this machine for the instances
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake:
        print(f"Fake Mithril API at {fake.url}", flush=True)
        for name, value in fake.env.items():
            print(f"export {name}={value}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    print("Fake Mithril stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m flow_backend.testing",
        description="Run a fake Mithril Compute API on loopback that executes tasks locally.",
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
