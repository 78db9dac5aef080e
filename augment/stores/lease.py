"""One run at a time writes into a store OUT: the lock is an object, `.augment/lease.json`,
made create-only, that says who holds it and until when. The holder renews it while it
runs; a run that died stops renewing, and once the lease has expired another run may take
it over. No flock and no process id: any machine that reaches the store sees the same lock.

On S3 the take-over and the renewals are conditional on the ETag the run read (a DeleteObject
and a PUT with `If-Match`), so two runs that both find an expired lease cannot both hold it.
Other stores check the ETag and then write: a narrower window, not none (docs/scale.md).

The renewing thread is alive when the local run forks its worker processes (see
stages/executor.py, start_method): the workers never touch the store or its client, so no
lock that thread might hold at that moment is one they wait on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from types import TracebackType

from augment.errors import OutputError
from augment.stores.store import Changed, Store

LEASE_NAME = ".augment/lease.json"
LEASE_SECONDS = 60.0  # renewed every third of it while the run goes on


class Lease:
    """The run's hold on a store OUT, as a context manager."""

    def __init__(self, store: Store, seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.seconds = seconds
        self.owner = uuid.uuid4().hex
        self.etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> Lease:
        self.acquire()
        self._renewer = threading.Thread(target=self._renew_until_stopped, daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self.release()

    def _body(self) -> bytes:
        expires = time.time() + self.seconds
        return json.dumps({"owner": self.owner, "expires": expires}).encode("utf-8")

    def acquire(self) -> None:
        try:
            self.store.create(LEASE_NAME, self._body())
        except FileExistsError:
            self._take_over_expired()
        self._remember_etag()

    def _take_over_expired(self) -> None:
        held = self.store.info(LEASE_NAME)
        expires = _expires(self.store, held.path) if held is not None else 0.0
        if held is not None and expires > time.time():
            until = datetime.fromtimestamp(expires, UTC).strftime("%H:%M:%S UTC")
            raise OutputError(
                f"output {self.store.url} is in use by another run (its lease "
                f"{LEASE_NAME} is renewed while it runs, and held until {until}); wait for "
                "it to finish, or rerun after that time if that run has stopped"
            )
        try:
            if held is not None:
                self.store.delete(LEASE_NAME, if_match=held.etag)
            self.store.create(LEASE_NAME, self._body())
        except (Changed, FileExistsError) as exc:
            raise OutputError(
                f"output {self.store.url}: another run took over its expired lease first; "
                "wait for it to finish"
            ) from exc

    def _remember_etag(self) -> None:
        now = self.store.info(LEASE_NAME)
        self.etag = now.etag if now is not None else None

    def renew(self) -> None:
        """Push the expiry on; a lease someone else took over is lost (and said so)."""
        if self.etag is None or self.lost:
            return
        try:
            self.store.put(LEASE_NAME, self._body(), if_match=self.etag)
        except Changed:
            self.lost = True
            return
        self._remember_etag()

    def check(self) -> None:
        """Before a commit: a run whose lease was taken over must not write more."""
        if self.lost:
            raise OutputError(
                f"output {self.store.url}: this run's lease expired and another run took it "
                "over; this run stops (rerun to resume)"
            )

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            # The store unreachable for a moment (an OSError from s3fs, botocore's own
            # errors, an OutputError from a local write): try again next time. A lease that
            # expired meanwhile and was taken over is found by the next renewal (lost).
            try:
                self.renew()
            except Exception:  # a thread that died would renew nothing more
                continue

    def release(self) -> None:
        if self.etag is not None and not self.lost:
            # Taken over, or the store unreachable: the lease expires by itself.
            with contextlib.suppress(Changed, OSError):
                self.store.delete(LEASE_NAME, if_match=self.etag)


def _expires(store: Store, path: str) -> float:
    """When the lease at `path` runs out; an unreadable one counts as expired."""
    try:
        return float(json.loads(store.read(path))["expires"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return 0.0
