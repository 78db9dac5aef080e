"""Not a test module: tests/test_fast_rerun.py still imports these from here. Delete this
file once it imports them from tests.helpers (the tests are in tests/stages/)."""

from tests.helpers import PAIRS, RESIZED, straddling_seed  # noqa: F401
