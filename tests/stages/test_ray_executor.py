"""The Ray executor (`--executor ray`, the `ray` extra): the files and manifest of the local
pool, byte for byte; the worker's own errors; a killed Ray worker's shard run again; Ctrl-C
leaves OUT consistent and no Ray process behind.

Each test starts a private local Ray cluster on the loopback address (several seconds), so
all are slow. Ray 2.60's servers still listen on every interface: CI runs these tests in a
loopback-only network namespace (.ci/run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

import augment.full_run as full_run  # noqa: E402
from augment.errors import OutputError  # noqa: E402
from augment.files import TEMP_MARK  # noqa: E402
from augment.model import ExpandOptions  # noqa: E402
from augment.run import expand  # noqa: E402
from augment.stages.plan import SourceTask  # noqa: E402
from augment.stages.ray_executor import ray_executor  # noqa: E402
from augment.stages.worker import RunContext, ShardResult  # noqa: E402
from tests.helpers import (  # noqa: E402
    DIGITS,
    TEXTURES,
    as_from_a_terminal,
    augment_command,
    file_tree,
)

pytestmark = pytest.mark.slow


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)


def images(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.suffix in {".jpg", ".png"} and not p.name.startswith(".")
    }


@pytest.mark.parametrize("src", [DIGITS, TEXTURES], ids=["digits", "textures"])
def test_ray_makes_the_files_and_manifest_of_the_local_pool(tmp_path: Path, src: Path) -> None:
    common = ("--times", "3", "--recipe", "mixup", "-j", "2", "--quiet")
    local = run_cli("expand", str(src), str(tmp_path / "local"), *common)
    on_ray = run_cli("expand", str(src), str(tmp_path / "ray"), *common, "--executor", "ray")
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    assert _not_ray_notices(on_ray.stderr) == []  # Ray's own notices are not shown
    tree = file_tree(tmp_path / "ray")
    assert tree == file_tree(tmp_path / "local")
    assert "manifest.jsonl" in tree and len(images(tmp_path / "ray")) > 20
    assert not list((tmp_path / "ray").rglob(f"*{TEMP_MARK}*"))


def test_ray_writes_the_shards_of_the_local_pool(tmp_path: Path) -> None:
    """--output-format webdataset: the Ray workers write the very shards and manifest."""
    common = ("--times", "3", "--recipe", "mixup", "-j", "2", "--quiet")
    common += ("--output-format", "webdataset", "--shard-size", "20")
    local = run_cli("expand", str(DIGITS), str(tmp_path / "local"), *common)
    on_ray = run_cli("expand", str(DIGITS), str(tmp_path / "ray"), *common, "--executor", "ray")
    assert local.returncode == 0, local.stderr
    assert on_ray.returncode == 0, on_ray.stderr
    tree = file_tree(tmp_path / "ray")
    assert tree == file_tree(tmp_path / "local")
    assert len([name for name in tree if name.endswith(".tar")]) > 3 and not images(
        tmp_path / "ray"
    )


_CLUSTER = """
import sys, ray
ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
         log_to_driver=False, logging_level=40)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def test_ray_address_joins_a_running_cluster(tmp_path: Path) -> None:
    """A cluster started elsewhere (here: another process), joined by its address."""
    import sys

    cluster = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert cluster.stdout is not None and cluster.stdin is not None
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("127.0.0.1:")
        common = ("--times", "2", "--recipe", "mixup", "--quiet")
        # Ray 2.60's clusters use token authentication; a joining driver is told by this.
        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        joined = subprocess.run(
            augment_command(
                "expand", str(DIGITS), str(tmp_path / "ray"), *common,
                "--executor", "ray", "--ray-address", address,
            ),
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        assert cluster.poll() is None  # the run left the cluster running
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=60)
    local = run_cli("expand", str(DIGITS), str(tmp_path / "local"), *common, "-j", "2")
    assert local.returncode == 0, local.stderr
    assert file_tree(tmp_path / "ray") == file_tree(tmp_path / "local")


def test_a_task_error_is_the_tools_own_error(tmp_path: Path, small_recipe: Path) -> None:
    """A worker that cannot write raises OutputError here, as the local pool would: not a
    Ray error and no remote traceback in the message."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the outputs would go")
    run = ray_executor(2)

    def unwritable(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
        return run(dataclasses.replace(ctx, out=blocked), shards)

    options = ExpandOptions(times=2, recipe=str(small_recipe), val=0.2, test=0)
    with pytest.raises(OutputError) as raised:
        expand(DIGITS, tmp_path / "out", options, executor=unwritable)
    assert type(raised.value) is OutputError
    assert "not-a-folder" in str(raised.value)
    assert "Traceback" not in str(raised.value) and "ray" not in str(raised.value).lower()
    assert not ray.is_initialized()  # the local cluster is shut down


def test_a_killed_ray_worker_has_its_shard_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL to the Ray worker process running a shard, mid-run: Ray runs the shard again
    and the run ends with every output, byte-identical to a local run."""
    monkeypatch.setattr(full_run, "OUTPUTS_PER_SHARD", 4)  # many shards: the run lasts
    options = ExpandOptions(times=4, recipe="mixup", val=0.2, test=0.1, workers=2)
    killed: list[int] = []
    stop = threading.Event()

    def kill_a_busy_worker() -> None:
        while not stop.is_set() and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if (proc.info["cmdline"] or [""])[0].startswith("ray::_run_shard"):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    try:
        summary = expand(TEXTURES, tmp_path / "ray", options, executor=ray_executor(2))
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a shard"
    assert not summary.rejected
    expand(TEXTURES, tmp_path / "local", dataclasses.replace(options, workers=1))
    assert file_tree(tmp_path / "ray") == file_tree(tmp_path / "local")
    assert not list((tmp_path / "ray").rglob(f"*{TEMP_MARK}*"))


def test_ctrl_c_stops_the_tasks_and_leaves_out_consistent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Long enough (~1,700 outputs) that 100 files appear well before the end.
    args = ("expand", str(TEXTURES), str(out), "--times", "40", "--recipe", "mixup", "-j", "2")
    proc = subprocess.Popen(
        augment_command(*args, "--quiet", "--executor", "ray"),
        start_new_session=True,  # its own process group, like a terminal job
        preexec_fn=as_from_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        # Past the files of the two shards that can be running (32 outputs each): at least
        # one shard has finished, so the interrupted run has outputs to list.
        if out.exists() and len(images(out)) >= 100:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    # No task writes after the command has returned, and none of Ray's processes is left.
    time.sleep(1)
    left = [p for p in psutil.process_iter(["pid"]) if _session(p) == proc.pid]
    assert not left, [p.cmdline() for p in left]
    assert not list(out.rglob(f"*{TEMP_MARK}*"))
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert {json.loads(line)["path"] for line in manifest} == images(out)
    assert 0 < len(images(out)) < 1000  # it was interrupted, not finished

    resumed = run_cli(*args, "--quiet", "--executor", "ray")
    assert resumed.returncode == 0, resumed.stderr
    clean = run_cli("expand", str(TEXTURES), str(tmp_path / "clean"), *args[3:], "--quiet")
    assert clean.returncode == 0, clean.stderr
    assert file_tree(out) == file_tree(tmp_path / "clean")


def _not_ray_notices(stderr: str) -> list[str]:
    """The lines of stderr but one: on a machine with no route out (CI's loopback-only
    namespace), Ray's C++ core warns that it cannot find the local address, before any log
    level Ray offers applies (RAY_BACKEND_LOG_LEVEL included)."""
    return [line for line in stderr.splitlines() if "Failed to determine local IP" not in line]


def _session(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


def test_ray_workers_write_shards_to_a_store_as_the_local_pool_does(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """What a cluster does: Ray tasks read their sources from S3 (moto on loopback) and
    write their shards and records there; the bytes are the local sharded run's."""
    from augment.stores.run import expand_stores
    from augment.stores.store import Store
    from augment.writers.shards import RECORDS_DIR, SHARDS_DIR
    from tests.helpers import upload

    options = ExpandOptions(
        times=2, recipe=str(small_recipe), workers=2, layout="webdataset", shard_size=10
    )
    local = tmp_path / "local"
    expand(TEXTURES, local, options)
    upload(TEXTURES, f"{s3_bucket}/src")
    out = f"{s3_bucket}/out"
    summary = expand_stores(f"{s3_bucket}/src", out, options, executor=ray_executor(2))
    assert summary.written == summary.total > 0
    store = Store(out)
    names = [e.path for e in [*store.list(SHARDS_DIR), *store.list(RECORDS_DIR)]]
    names += ["manifest.jsonl", "augment.json"]
    assert {n: store.read(n) for n in names} == {n: (local / n).read_bytes() for n in names}
    assert {p.relative_to(local).as_posix() for p in (local / SHARDS_DIR).iterdir()} == {
        n for n in names if n.startswith(SHARDS_DIR + "/")
    }
