"""Not a test module: tests/test_fast_rerun.py still imports every_file from here. Delete
this file once it imports it from tests.helpers (the tests are in tests/stages/ and
tests/rerun/)."""

from tests.helpers import every_file  # noqa: F401
