"""What a store run costs in requests and seconds: SRC and OUT in S3 (moto's server on
loopback, reached through s3fs), against the same run with both on local disk. Needs s3fs
and moto's server (the test extra).

    python benchmarks/object_storage.py [--times 2] [--workers 2]
    python benchmarks/object_storage.py --output-format webdataset [--shard-size 10]

For sample_data/textures, into fresh prefixes: a local run (folders), a first store run
(`s3://` SRC and OUT), a rerun of it with nothing changed, and a run stopped after its
fifth shard commit (an exception raised there; unlike a kill, it releases the lease), then
resumed. The requests are counted by method as the server logs them; the manifests are
checked byte-identical to the local run's. Loopback requests take a fraction of a
millisecond; a real store's take 10-100 ms each, so the counts are the figures that carry
over, the seconds are not.

With `--output-format webdataset|parquet` the workers write the shards to the store
themselves: the same rows, but the shards and manifest are checked byte-identical to a local
sharded run's, and the stopped run is a complete one whose second half of shards (records
and shard) is then deleted, as a run killed there leaves it (a kill in a worker process
cannot be staged from here).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from augment.model import ExpandOptions
from augment.run import expand
from augment.stores import publish
from augment.stores.run import expand_stores
from augment.stores.store import Store

ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ROOT / "sample_data" / "textures"


class _Requests(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.methods: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            if f"{method} /" in message:
                # A GET of the bucket with list-type=2 is a LIST.
                listing = method == "GET" and "list-type=2" in message
                self.methods["LIST" if listing else method] += 1


def _counted(handler: _Requests, run: Callable[[], object]) -> tuple[float, dict[str, int]]:
    handler.methods.clear()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, dict(sorted(handler.methods.items()))


class _Killed(Exception):
    """Stands for the process dying: raised after a number of shard commits."""


def _killed_after(commits: int) -> Callable[[], None]:
    """Make the next run stop after `commits` shard records, as a kill would leave it."""
    original = publish._create_or_keep
    seen = 0

    def create(store: Store, name: str, data: bytes) -> None:
        nonlocal seen
        original(store, name, data)
        seen += name.startswith(publish.SHARDS_DIR)  # not the pending records
        if seen >= commits:
            raise _Killed

    publish._create_or_keep = create  # type: ignore[assignment]
    return lambda: setattr(publish, "_create_or_keep", original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output-format", default="folders")
    parser.add_argument("--shard-size", type=int, default=10)
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_DEFAULT_REGION="eu-west-1",
    )
    handler = _Requests()
    logging.getLogger("werkzeug").addHandler(handler)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    logging.getLogger("werkzeug").propagate = False
    import s3fs

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket, region_name="eu-west-1")
    src = Store(f"s3://{bucket}/textures")
    for path in sorted(TEXTURES.rglob("*")):
        if path.is_file():
            src.create(path.relative_to(TEXTURES).as_posix(), path.read_bytes())
    options = ExpandOptions(times=args.times, workers=args.workers)
    if args.output_format != "folders":
        options = ExpandOptions(
            times=args.times,
            workers=args.workers,
            layout=args.output_format,
            shard_size=args.shard_size,
        )
        rows, outputs = _sharded_rows(handler, src, f"s3://{bucket}", options)
        _print(rows, outputs, args)
        server.stop()
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "local")
        started = time.perf_counter()
        summary = expand(TEXTURES, local, options)
        rows.append(("local run (disk)", time.perf_counter() - started, {}))
        outputs = summary.total
        out = f"s3://{bucket}/out"
        run = lambda: expand_stores(src.url, out, options)  # noqa: E731
        rows.append(("store run, first", *_counted(handler, run)))
        rows.append(("store rerun, unchanged", *_counted(handler, run)))
        assert Store(out).read("manifest.jsonl") == (local / "manifest.jsonl").read_bytes()
        out = f"s3://{bucket}/killed"
        restore = _killed_after(5)
        try:
            rows.append(
                (
                    "store run, stopped after 5 shard commits",
                    *_counted(handler, _run_killed(src, out, options)),
                )
            )
        finally:
            restore()
        # The dead run's lease, aged past its expiry.
        Store(out).delete(".augment/lease.json")
        rows.append(
            ("store run, resumed", *_counted(handler, lambda: expand_stores(src.url, out, options)))
        )
        assert Store(out).read("manifest.jsonl") == (local / "manifest.jsonl").read_bytes()
    server.stop()
    _print(rows, outputs, args)


def _print(rows: list[tuple[str, float, dict[str, int]]], outputs: int, args: object) -> None:
    print(f"textures, {outputs} outputs, {vars(args)}")
    print("| run | s | LIST | GET | HEAD | PUT | DELETE |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, methods in rows:
        counts = " | ".join(
            str(methods.get(m, 0)) for m in ("LIST", "GET", "HEAD", "PUT", "DELETE")
        )
        print(f"| {name} | {seconds:.2f} | {counts} |")


def _run_killed(src: Store, out: str, options: ExpandOptions) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(_Killed):
            expand_stores(src.url, out, options)

    return run


def _sharded_rows(
    handler: _Requests, src: Store, bucket: str, options: ExpandOptions
) -> tuple[list[tuple[str, float, dict[str, int]]], int]:
    from augment.stores.publish import RUN_NAME
    from augment.writers.shards import RECORDS_DIR, SHARDS_DIR

    rows: list[tuple[str, float, dict[str, int]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, "local")
        started = time.perf_counter()
        summary = expand(TEXTURES, local, options)
        rows.append(("local sharded run (disk)", time.perf_counter() - started, {}))
        out = f"{bucket}/out"
        run = lambda: expand_stores(src.url, out, options)  # noqa: E731
        rows.append(("store run, first", *_counted(handler, run)))
        _check_same(Store(out), local)
        shards = sorted(p.name for p in (local / SHARDS_DIR).iterdir())
        rows.append(("store rerun, unchanged", *_counted(handler, run)))
        store = Store(out)
        store.delete(RUN_NAME)
        lost = shards[len(shards) // 2 :]
        for name in lost:
            store.delete(f"{RECORDS_DIR}/{name.split('.')[0]}.jsonl")
            store.delete(f"{SHARDS_DIR}/{name}")
        label = f"store run, resumed ({len(shards) - len(lost)} of {len(shards)} shards kept)"
        rows.append((label, *_counted(handler, run)))
        _check_same(Store(out), local)
    return rows, summary.total


def _check_same(store: Store, local: Path) -> None:
    from augment.writers.shards import RECORDS_DIR, SHARDS_DIR

    for folder in (SHARDS_DIR, RECORDS_DIR):
        for path in (local / folder).iterdir():
            assert store.read(f"{folder}/{path.name}") == path.read_bytes(), path.name
    assert store.read("manifest.jsonl") == (local / "manifest.jsonl").read_bytes()


if __name__ == "__main__":
    main()
