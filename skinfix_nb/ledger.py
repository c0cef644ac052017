"""The run ledger: a small SQLite record of every run a batch asked for, so nothing is paid twice.

Each image gets a deterministic ``client_ref`` (:func:`client_ref_for`). Before a POST the
batch records an *intent* for that ref; after the POST it records the run id. A later call
that finds a run id re-uses the run; one that finds an intent without a run id knows the POST
may have happened (the kernel died in between) and looks the ref up at the API before sending.

The file lives at ``$SKINFIX_NB_HOME/ledger.sqlite3`` (or the user cache folder) unless a path,
an open :class:`sqlite3.Connection` or ``":memory:"`` is given. It runs in WAL mode with a busy
timeout, and every write is one short ``BEGIN IMMEDIATE`` transaction, so two notebook kernels
can share it: an intent held by another live process is left alone.

Nothing secret is stored: image URLs are kept with their query string removed
(:func:`skinfix_nb.errors.redact_url`) and output URLs, which are presigned, not at all.
"""

from __future__ import annotations

import copy
import hashlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from skinfix_nb import paths
from skinfix_nb.errors import ConfigurationError, redact_url

__all__ = [
    "Claim",
    "Ledger",
    "LedgerEntry",
    "client_ref_for",
    "default_ledger_path",
    "new_owner",
    "release_owner",
]

LEDGER_FILENAME = "ledger.sqlite3"
_SCHEMA_VERSION = 1
# An intent written on another machine (a shared folder) is trusted for this long.
_FOREIGN_INTENT_LEASE_S = 600.0
_HOST = socket.gethostname()
# Owner tokens of batches running in this process right now; an intent from this process
# whose token is not here belongs to a batch that has ended (interrupted or crashed).
_LIVE_OWNERS: set[str] = set()
_LIVE_OWNERS_LOCK = threading.Lock()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    api         TEXT NOT NULL,
    client_ref  TEXT NOT NULL,
    url_key     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    model       TEXT NOT NULL,
    image_url   TEXT NOT NULL,
    run_id      TEXT,
    status      TEXT,
    cost        TEXT,
    duration_ms INTEGER,
    created_at  TEXT,
    owner       TEXT,
    intent_at   REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (api, client_ref)
);
CREATE INDEX IF NOT EXISTS runs_by_url_key ON runs (api, url_key, generation);
CREATE INDEX IF NOT EXISTS runs_by_run_id ON runs (api, run_id);
"""

_COLUMNS = (
    "api, client_ref, url_key, generation, model, image_url, run_id, status, cost, duration_ms, "
    "created_at, owner, intent_at"
)


def client_ref_for(image_url: str, model: str, *, generation: int = 0) -> str:
    """The deterministic ``client_ref`` of one image sent to one model.

    ``generation`` counts deliberate re-runs (``force=True``): generation 0 is the plain ref,
    later ones get a suffix so the API sees a new correlation id.
    """
    digest = hashlib.sha256(f"{model}\n{image_url}".encode()).hexdigest()[:32]
    ref = f"sfnb-{digest}"
    return ref if generation == 0 else f"{ref}-g{generation}"


def default_ledger_path() -> Path:
    """``$SKINFIX_NB_HOME/ledger.sqlite3``, or the same file in the user cache folder."""
    return paths.home() / LEDGER_FILENAME


def new_owner() -> str:
    """A fresh owner token for one batch, registered as live in this process."""
    token = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    with _LIVE_OWNERS_LOCK:
        _LIVE_OWNERS.add(token)
    return token


def release_owner(owner: str) -> None:
    """Mark a batch as ended: its unfinished intents may now be resumed by anyone."""
    with _LIVE_OWNERS_LOCK:
        _LIVE_OWNERS.discard(owner)


def _owner_is_live(owner: str | None, intent_at: float, *, now: float) -> bool:
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != _HOST:
        return now - intent_at < _FOREIGN_INTENT_LEASE_S
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        with _LIVE_OWNERS_LOCK:
            return owner in _LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger: an image sent (or about to be sent) to a model at one API."""

    api: str
    client_ref: str
    url_key: str
    generation: int
    model: str
    image_url: str
    run_id: str | None
    status: str | None
    cost: str | None
    duration_ms: int | None
    created_at: str | None
    owner: str | None
    intent_at: float


@dataclass(frozen=True)
class Claim:
    """What :meth:`Ledger.claim` found for a ref.

    ``outcome`` is ``"claimed"`` (the caller may POST; if ``resumed`` is true an earlier
    batch held the intent and may have posted, so look the ref up first), ``"has_run"``
    (a run exists: ``entry.run_id``) or ``"busy"`` (another live batch is posting it).
    """

    outcome: Literal["claimed", "has_run", "busy"]
    entry: LedgerEntry
    resumed: bool = False


class Ledger:
    """SQLite record of intents and runs.

    Every read and write is scoped to one API (its base URL): a run id from the local
    backend means nothing to Runflow, and one local server's runs are gone with it.

    Parameters
    ----------
    target : str, os.PathLike, sqlite3.Connection or None
        A file path, ``":memory:"``, or an open connection (left open on :meth:`close`).
        ``None`` means :func:`default_ledger_path`.
    api : str
        The base URL of the API the runs belong to.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | sqlite3.Connection | None = None,
        *,
        api: str = "https://api.runflow.io",
    ) -> None:
        self.api = api
        self._lock = threading.RLock()
        if isinstance(target, sqlite3.Connection):
            self._conn = target
            self._owns_connection = False
            self.path: str = "<connection>"
        else:
            if target is None:
                target = default_ledger_path()
            elif not isinstance(target, str | os.PathLike):
                raise ConfigurationError(
                    f"ledger= takes a file path, ':memory:' or a sqlite3.Connection, "
                    f"not {type(target).__name__}"
                )
            self.path = os.fspath(target)
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._owns_connection = True
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if self.path != ":memory:":
            _use_wal(self._conn)
            self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._write() as cur:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One short write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front."""
        with self._lock:
            in_transaction = self._conn.in_transaction
            cur = self._conn.cursor()
            if not in_transaction:
                cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                if not in_transaction:
                    cur.execute("ROLLBACK")
                raise
            else:
                if not in_transaction:
                    cur.execute("COMMIT")
            finally:
                cur.close()

    def close(self) -> None:
        """Close the connection if this ledger opened it."""
        with self._lock:
            if self._owns_connection:
                self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"

    # -- reads ----------------------------------------------------------------------------

    def for_api(self, api: str) -> Ledger:
        """A view of the same database scoped to another API (shares the connection)."""
        view = copy.copy(self)  # shallow: the same connection and lock
        view.api = api
        view._owns_connection = False
        return view

    def latest(self, url_keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """The newest generation recorded for each url key (keys never seen are absent)."""
        keys = list(dict.fromkeys(url_keys))
        found: dict[str, LedgerEntry] = {}
        with self._lock:
            for chunk in _chunks(keys, 500):
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE api = ? AND url_key IN ({marks}) "
                    "ORDER BY url_key, generation",
                    [self.api, *chunk],
                ).fetchall()
                for row in rows:
                    entry = LedgerEntry(*row)
                    found[entry.url_key] = entry  # later generations overwrite earlier ones
        return found

    def get(self, client_ref: str) -> LedgerEntry | None:
        """The entry for one ref, or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE api = ? AND client_ref = ?",
                (self.api, client_ref),
            ).fetchone()
        return LedgerEntry(*row) if row else None

    def by_run_ids(self, run_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """Entries for the given run ids (unknown ids are absent)."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, LedgerEntry] = {}
        with self._lock:
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                    f"SELECT {_COLUMNS} FROM runs WHERE api = ? AND run_id IN ({marks})",
                    [self.api, *chunk],
                ):
                    entry = LedgerEntry(*row)
                    found[str(entry.run_id)] = entry
        return found

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM runs WHERE api = ?", (self.api,)
            ).fetchone()
        return int(count)

    # -- writes ---------------------------------------------------------------------------

    def claim(
        self,
        *,
        client_ref: str,
        url_key: str,
        generation: int,
        model: str,
        image_url: str,
        owner: str,
    ) -> Claim:
        """Record the intent to POST ``client_ref``, unless a run or a live intent exists.

        Call it right before the POST; the intent is what lets a later call find a run
        whose id never made it back (see :class:`Claim`).
        """
        now = time.time()
        fresh = LedgerEntry(
            api=self.api,
            client_ref=client_ref,
            url_key=url_key,
            generation=generation,
            model=model,
            image_url=redact_url(image_url),
            run_id=None,
            status=None,
            cost=None,
            duration_ms=None,
            created_at=None,
            owner=owner,
            intent_at=now,
        )
        with self._lock:
            # The common case, a ref never seen, is one atomic statement.
            inserted = self._conn.execute(
                "INSERT OR IGNORE INTO runs (api, client_ref, url_key, generation, model, "
                "image_url, owner, intent_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.api,
                    client_ref,
                    url_key,
                    generation,
                    model,
                    fresh.image_url,
                    owner,
                    now,
                    now,
                ),
            ).rowcount
        if inserted:
            return Claim("claimed", fresh)
        with self._write() as cur:
            entry = self._entry(cur, client_ref)
            if entry.run_id is not None:
                return Claim("has_run", entry)
            if entry.owner != owner and _owner_is_live(entry.owner, entry.intent_at, now=now):
                return Claim("busy", entry)
            cur.execute(
                "UPDATE runs SET owner = ?, intent_at = ?, updated_at = ? "
                "WHERE api = ? AND client_ref = ?",
                (owner, now, now, self.api, client_ref),
            )
            return Claim("claimed", self._entry(cur, client_ref), resumed=True)

    def _entry(self, cur: sqlite3.Cursor, client_ref: str) -> LedgerEntry:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE api = ? AND client_ref = ?", (self.api, client_ref)
        ).fetchone()
        return LedgerEntry(*row)

    def record_run(
        self,
        client_ref: str,
        *,
        run_id: str,
        status: str | None,
        created_at: str | None = None,
        cost: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Store the run id the API returned for ``client_ref`` (the intent becomes a run)."""
        with self._lock:  # one statement: atomic on its own
            self._conn.execute(
                "UPDATE runs SET run_id = ?, status = ?, created_at = ?, cost = ?, "
                "duration_ms = ?, owner = NULL, updated_at = ? WHERE api = ? AND client_ref = ?",
                (
                    run_id,
                    status,
                    created_at,
                    cost,
                    _storable(duration_ms),
                    time.time(),
                    self.api,
                    client_ref,
                ),
            )

    def update_statuses(self, updates: Sequence[Mapping[str, object]]) -> None:
        """Store new ``status`` / ``cost`` / ``duration_ms`` for runs, keyed by ``run_id``."""
        if not updates:
            return
        now = time.time()
        with self._write() as cur:
            cur.executemany(
                "UPDATE runs SET status = :status, cost = :cost, duration_ms = :duration_ms, "
                "updated_at = :now WHERE api = :api AND run_id = :run_id",
                [
                    {
                        **update,
                        "duration_ms": _storable(update.get("duration_ms")),
                        "now": now,
                        "api": self.api,
                    }
                    for update in updates
                ],
            )

    def drop_intent(self, client_ref: str, *, owner: str) -> None:
        """Forget an intent whose POST was refused for sure (no run was created)."""
        with self._write() as cur:
            cur.execute(
                "DELETE FROM runs WHERE api = ? AND client_ref = ? AND run_id IS NULL "
                "AND owner = ?",
                (self.api, client_ref, owner),
            )


def _storable(value: object) -> object:
    """An integer SQLite can hold (64-bit), else None: a junk figure must not stop a batch."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    return value


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _use_wal(conn: sqlite3.Connection, *, patience: float = 30.0) -> None:
    """Switch a ledger file to WAL, waiting out other connections doing the same.

    The switch needs the file to itself, and SQLite answers ``database is locked`` at
    once, without its busy timeout, while another connection holds it: two kernels (or
    dask partitions in threads) opening a new ledger together would otherwise fail.
    """
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
