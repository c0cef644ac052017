"""``python -m skinfix_nb.local``: run the embedded server until Ctrl-C (``skinfix serve`` has more options)."""

from __future__ import annotations

import argparse
import threading

from skinfix_nb.local.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skinfix_nb.local",
        description="Run the embedded Runflow-compatible server on loopback until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8123, help="port (default: 8123; 0 picks one)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    args = parser.parse_args(argv)
    with serve(port=args.port, host=args.host) as server:
        print(f"skinfix local server on {server.url}", flush=True)
        print(f"api key: any non-empty bearer token, e.g. {server.api_key!r}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
