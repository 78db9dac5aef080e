"""Shared fixtures: the real sample data, small recipes, and one expanded output reused by
the read-only tests (expanding is the slow part). Shared constants and helpers are in
tests/helpers.py."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from augment.model import ExpandOptions, ExpandSummary
from augment.run import expand
from tests.helpers import (
    DIGITS,
    GEOMETRIC_RECIPE,
    S3_ENVIRONMENT,
    S3_REGION,
    SMALL_RECIPE,
    TEXTURES,
)


@pytest.fixture(scope="session")
def small_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "small.yaml"
    path.write_text(SMALL_RECIPE)
    return path


@pytest.fixture(scope="session")
def geometric(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helpers.GEOMETRIC_RECIPE as a file: geometry only, objects keep their colours."""
    path = tmp_path_factory.mktemp("recipes") / "geometric.yaml"
    path.write_text(GEOMETRIC_RECIPE)
    return path


@pytest.fixture()
def textures_copy(tmp_path: Path) -> Path:
    """A private copy of the textures set, for tests that change the source."""
    dst = tmp_path / "src"
    shutil.copytree(TEXTURES, dst)
    return dst


@pytest.fixture()
def digits_copy(tmp_path: Path) -> Path:
    """A private copy of the digits set; copy2 keeps the files' (old) mtimes."""
    dst = tmp_path / "src"
    shutil.copytree(DIGITS, dst)
    return dst


@pytest.fixture(scope="session")
def expanded(
    tmp_path_factory: pytest.TempPathFactory, small_recipe: Path
) -> tuple[Path, ExpandSummary]:
    """sample_data/textures expanded 4x with 2 worker processes (read-only for tests)."""
    out = tmp_path_factory.mktemp("expanded") / "out"
    options = ExpandOptions(times=4, recipe=str(small_recipe), val=0.2, test=0.1, seed=3, workers=2)
    summary = expand(TEXTURES, out, options)
    return out, summary


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback: moto's server in a thread of this process (the test extra
    has it; without moto or s3fs the object-storage tests skip, saying so)."""
    reason = "object storage tests need s3fs and moto's server: pip install -e '.[test]'"
    pytest.importorskip("s3fs", reason=reason)
    server_module = pytest.importorskip("moto.server", reason=reason)
    pytest.importorskip("flask_cors", reason=reason)
    # Its request log is how the tests count writes (see tests/helpers.py, StoreRequests).
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://<a new bucket>` on the loopback server; the AWS variables point at it, so a
    subprocess of the tool finds it too."""
    import s3fs

    for name, value in S3_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(use_listings_cache=False).mkdir(bucket, region_name=S3_REGION)
    return f"s3://{bucket}"
