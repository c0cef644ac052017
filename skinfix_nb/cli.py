"""The ``skinfix`` command: the DataFrame workflow for people outside notebooks.

A thin edge over the public API. Every library error becomes one line on stderr and an
exit code scripts can trust (see ``EXIT_CODES``); no traceback and never an API key.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from skinfix_nb import errors

if TYPE_CHECKING:
    import pandas as pd

    from skinfix_nb.client import SkinFix
    from skinfix_nb.local import LocalServer

EXIT_OK = 0
EXIT_ROWS_NOT_SUCCEEDED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_SERVICE = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    every row succeeded
  {EXIT_ROWS_NOT_SUCCEEDED}    some rows did not succeed (failed, canceled, invalid, error, or
       not_submitted: past --max-cost or out of credit); the output file says why
  {EXIT_USAGE}    usage error: bad arguments, missing input file or column
  {EXIT_SETUP}    set-up error: no or wrong API key, key not allowed (checked before
       anything is sent)
  {EXIT_SERVICE}    the service could not be reached or kept failing (try again later), or a
       file could not be read or written
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); finished runs are in the ledger, rerun with --resume
"""

_SETUP_ERRORS: tuple[type[Exception], ...] = (
    errors.ConfigurationError,
    errors.AuthenticationError,
    errors.PermissionDeniedError,
    errors.InsufficientCreditError,
)


class UsageError(Exception):
    """The command line asks for something that cannot work; the message says how to fix it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``skinfix`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except _SETUP_ERRORS as exc:
        _fail(str(exc))
        return EXIT_SETUP
    except errors.RunflowError as exc:
        _fail(str(exc))
        return EXIT_SERVICE
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_SERVICE


def build_parser() -> argparse.ArgumentParser:
    """The ``skinfix`` argument parser with its three commands."""
    from skinfix_nb import __version__

    parser = argparse.ArgumentParser(
        prog="skinfix",
        description="Retouch portraits with Runflow's Skin Fix model (runflow/skin-fix, "
        "$0.12 an image), or with the embedded local backend when there is no key.",
        epilog="Run 'skinfix COMMAND --help' for a command's options.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skinfix-nb {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="the whole job offline on the bundled portraits (no key, no network)",
        description="Start the embedded backend, serve the bundled portraits over loopback "
        "HTTP, retouch them through the DataFrame accessor and write results.csv, the "
        "retouched images and a self-contained report.html (before/after, metrics, cost).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("skinfix-demo"),
        metavar="DIR",
        help="folder for results.csv, report.html and retouched/ (default: ./skinfix-demo)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run",
        help="retouch every image URL in a CSV column; write the results as CSV",
        description="Submit every image in a CSV column, wait for the runs and write the input "
        "rows plus run_id, status, output_url, cost, error and duration_ms. Every run is "
        "recorded in the ledger first, so rerunning (or --resume) never pays twice. Uses "
        "RUNFLOW_API_KEY, or the embedded local backend with --local.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", type=Path, metavar="INPUT.csv", help="CSV file with an image column")
    run.add_argument(
        "--column",
        default="image_url",
        help="column holding image URLs (or, with --local, file paths) (default: image_url)",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("results.csv"),
        metavar="OUT.csv",
        help="where to write the results (default: results.csv); an existing file is only "
        "continued with --resume, never overwritten",
    )
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="runs in flight at once (default: 8)",
    )
    run.add_argument(
        "--max-cost",
        type=_dollars,
        default=None,
        metavar="USD",
        help="stop submitting before the estimated spend would exceed this many dollars; rows "
        "left over become not_submitted and cost nothing",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for the whole batch (default: 600)",
    )
    run.add_argument(
        "--local",
        action="store_true",
        help="use the embedded local backend instead of the Runflow API (no key, no cost)",
    )
    run.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="a Runflow-compatible server, e.g. one started by 'skinfix serve' "
        "(the key still comes from RUNFLOW_API_KEY)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier OUT.csv: finished rows are kept, the rest are picked up "
        "from the ledger or submitted",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    serve = commands.add_parser(
        "serve",
        help="run the embedded Runflow-compatible server until Ctrl-C",
        description="Run the embedded backend (the Runflow HTTP API with a real retouch engine) "
        "on loopback until Ctrl-C. Point any client at the printed URL and key; the fault "
        "options make it misbehave on purpose, for testing retries and budgets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--port", type=int, default=8123, metavar="N", help="port (default: 8123; 0 picks one)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="accept only this bearer token (default: any non-empty token)",
    )
    serve.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="extra processing time per run",
    )
    serve.add_argument(
        "--failure-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="share of runs that end failed",
    )
    serve.add_argument(
        "--error-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="share of requests answered with HTTP 500",
    )
    serve.add_argument(
        "--rate-limit-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="share of requests answered with HTTP 429",
    )
    serve.add_argument(
        "--retry-after",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="Retry-After header sent with each 429",
    )
    serve.add_argument(
        "--credit",
        type=_dollars,
        default=None,
        metavar="USD",
        help="credit balance; runs past it get HTTP 402 (default: unlimited)",
    )
    serve.set_defaults(handler=_serve)
    return parser


# --------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from skinfix_nb.demo import run_demo

    summary = run_demo(args.out, progress=not args.quiet)
    print(summary.describe())
    return EXIT_OK if summary.failed == 0 else EXIT_ROWS_NOT_SUCCEEDED


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    started = time.monotonic()
    if args.local and args.base_url:
        raise UsageError("--local and --base-url exclude each other: pick one backend")
    if args.out.exists() and not args.resume:
        raise UsageError(
            f"{args.out} exists: pass --resume to continue it, or choose another --out"
        )
    frame = _read_input(args.input, args.column)
    done: pd.DataFrame | None = None
    if args.resume and args.out.exists():
        done, frame = _split_finished(pd.read_csv(args.out), frame, args.column)
    with _CtrlC() as ctrl_c:
        if done is None:
            result = _submit(frame, args)
        elif len(frame):
            result = pd.concat([done, _submit(frame, args)]).sort_index()
        else:
            result = done
    _write_csv(result, args.out)
    print(_summary(result, seconds=time.monotonic() - started, out=args.out))
    if ctrl_c.pressed:
        # the batch stops on Ctrl-C and hands back what it has; the exit code still says so
        _fail("interrupted; rerun with --resume to finish (runs already made are not paid again)")
        return EXIT_INTERRUPTED
    succeeded = bool((result["status"] == "succeeded").all())
    return EXIT_OK if succeeded else EXIT_ROWS_NOT_SUCCEEDED


def _serve(args: argparse.Namespace) -> int:
    from skinfix_nb.local import serve

    server = serve(
        port=args.port,
        host=args.host,
        api_key=args.api_key,
        latency=args.latency,
        failure_rate=args.failure_rate,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        credit=args.credit,
    )
    key_hint = server.api_key if args.api_key is None else "the one given with --api-key"
    try:  # from here on, Ctrl-C at any moment stops the server cleanly
        print(f"skinfix local server on {server.url}", flush=True)
        print(f"api key: {key_hint}", flush=True)
        print(
            f"try: RUNFLOW_API_KEY=<key> skinfix run INPUT.csv --base-url {server.url}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- helpers


class _CtrlC:
    """Remember whether Ctrl-C was pressed while still raising KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def __enter__(self) -> _CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        signal.default_int_handler(signum, frame)


def _read_input(path: Path, column: str) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise UsageError(f"no such input file: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a readable CSV file ({exc})") from None
    if column not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise UsageError(f"{path} has no column {column!r} (columns: {found}); pass --column")
    return frame


def _submit(frame: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """Send the rows through the accessor on the backend the arguments name."""
    originals = frame[args.column]
    server: LocalServer | None = None
    try:
        if args.local:
            from skinfix_nb.local import serve

            server = serve(port=0)
            frame = _serve_local_paths(frame, args.column, server)
        with _client_for(args, server) as client:
            client.list_runs(limit=1)  # a wrong key fails here, once, before any row is sent
            result: pd.DataFrame = frame.skinfix.submit(
                args.column,
                client=client,
                concurrency=args.concurrency,
                max_cost=args.max_cost,
                timeout=args.timeout,
                progress=not args.quiet,
            )
    finally:
        if server is not None:
            server.stop()
    result[args.column] = originals  # file paths stay paths, not loopback URLs
    return result


def _split_finished(
    previous: pd.DataFrame, frame: pd.DataFrame, column: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows an earlier run finished (kept as written) and the input rows still to do."""
    from skinfix_nb.models import TERMINAL_STATUSES

    if "status" not in previous.columns or column not in previous.columns:
        raise UsageError("the existing --out file was not written by 'skinfix run'; pick another")
    if len(previous) != len(frame) or not previous[column].equals(frame[column]):
        raise UsageError(
            "the existing --out file was written for another input; pick another --out"
        )
    finished = previous["status"].isin(TERMINAL_STATUSES | {"invalid"})
    finished &= previous.index.isin(frame.index)
    done = previous[finished]
    return done, frame.drop(index=done.index)


def _serve_local_paths(frame: pd.DataFrame, column: str, server: LocalServer) -> pd.DataFrame:
    """With --local, files named in the column are served on loopback so the backend can fetch them.

    Each distinct file gets one URL, so a file named twice is one run, as a URL named twice is.
    """
    frame = frame.copy()
    served: dict[str, str] = {}

    def as_url(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and Path(value).is_file():
            if value not in served:
                served[value] = server.serve_file(Path(value))
            return served[value]
        return value

    frame[column] = frame[column].map(as_url)
    return frame


def _client_for(args: argparse.Namespace, server: LocalServer | None) -> SkinFix:
    from skinfix_nb.client import connect

    if server is not None:
        return connect(base_url=server.url, api_key=server.api_key)
    key = os.environ.get("RUNFLOW_API_KEY")
    if not key:
        raise errors.ConfigurationError(
            "no API key: set RUNFLOW_API_KEY (Runflow dashboard → Settings → API Keys), "
            "or pass --local to use the embedded backend"
        )
    if args.base_url:
        return connect(base_url=args.base_url, api_key=key)
    return connect(api_key=key)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically, so an interrupted write never leaves half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)


def _summary(frame: pd.DataFrame, *, seconds: float, out: Path) -> str:
    counts = frame["status"].value_counts()
    dollars = frame.skinfix.cost()  # rows sharing a run (the same URL twice) count once
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "succeeded")
    return (
        f"{len(frame)} rows: {int(counts.get('succeeded', 0))} succeeded"
        + (f", {others}" if others else "")
        + f"; ${dollars:.2f}; {seconds:.1f} s; results in {out}"
    )


def _fail(message: str) -> None:
    key = os.environ.get("RUNFLOW_API_KEY")
    if key:
        message = message.replace(key, "***")
    print(f"skinfix: error: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _dollars(text: str) -> Decimal:
    try:
        value = Decimal(text.lstrip("$"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount of dollars: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
