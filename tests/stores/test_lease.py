"""The lease that locks a store OUT: create-only, renewed, taken over once expired, lost
when someone else took it."""

from __future__ import annotations

import json
import time

import pytest

from augment.errors import OutputError
from augment.stores.lease import LEASE_NAME, Lease
from augment.stores.store import Store


@pytest.fixture()
def store(s3_bucket: str) -> Store:
    return Store(f"{s3_bucket}/out")


def _held(store: Store) -> dict[str, object]:
    return json.loads(store.read(LEASE_NAME))


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_holds_the_lease(store: Store) -> None:
    with Lease(store) as first:
        assert _held(store)["owner"] == first.owner
        with pytest.raises(OutputError, match="in use by another run"):
            Lease(store).acquire()
        assert _held(store)["owner"] == first.owner  # the refused run changed nothing
    assert store.info(LEASE_NAME) is None


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    store.create(LEASE_NAME, json.dumps({"owner": "dead", "expires": time.time() - 1}).encode())
    lease = Lease(store)
    lease.acquire()
    assert _held(store)["owner"] == lease.owner
    lease.release()
    assert store.info(LEASE_NAME) is None


def test_an_unreadable_lease_counts_as_expired(store: Store) -> None:
    store.create(LEASE_NAME, b"not json")
    Lease(store).acquire()


def test_renewing_pushes_the_expiry_on(store: Store) -> None:
    lease = Lease(store, seconds=30)
    lease.acquire()
    first = float(_held(store)["expires"])  # type: ignore[arg-type]
    time.sleep(0.01)
    lease.renew()
    assert float(_held(store)["expires"]) > first  # type: ignore[arg-type]
    lease.check()


def test_a_lease_taken_over_is_lost_and_the_run_stops(store: Store) -> None:
    lease = Lease(store, seconds=30)
    lease.acquire()
    store.put(LEASE_NAME, json.dumps({"owner": "other", "expires": time.time() + 60}).encode())
    lease.renew()  # finds another version: does not overwrite it
    assert _held(store)["owner"] == "other"
    with pytest.raises(OutputError, match="took it over"):
        lease.check()
    lease.release()  # not ours: left alone
    assert _held(store)["owner"] == "other"


def test_a_running_lease_renews_itself(store: Store) -> None:
    with Lease(store, seconds=0.3) as lease:
        first = float(_held(store)["expires"])  # type: ignore[arg-type]
        time.sleep(0.5)  # past the first expiry: the renewals kept it live
        assert float(_held(store)["expires"]) > first  # type: ignore[arg-type]
        assert float(_held(store)["expires"]) > time.time()  # type: ignore[arg-type]
        lease.check()
