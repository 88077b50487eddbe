"""Shared fixtures. The compiled module must be built first (`make build`)."""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where comfy_credits_ext is imported from: the checkout, or a sanitizer build
# (scripts/test sets COMFY_CREDITS_IMPORT_ROOT). Subprocesses use the same.
IMPORT_ROOT = os.environ.get("COMFY_CREDITS_IMPORT_ROOT", ROOT)
os.environ["COMFY_CREDITS_IMPORT_ROOT"] = IMPORT_ROOT
if IMPORT_ROOT not in sys.path:
    sys.path.insert(0, IMPORT_ROOT)

from comfy_credits_ext import _core  # noqa: E402  (fails loudly if not built)

# Farm mode's local files without a config file go to $XDG_CONFIG_HOME/comfy-credits (config.local_dir): the
# tests' own folder, never the home of whoever runs them (subprocesses inherit it).
_XDG = tempfile.mkdtemp(prefix="cc-xdg-")
os.environ["XDG_CONFIG_HOME"] = _XDG
atexit.register(shutil.rmtree, _XDG, True)

# The sanitizer run must really test the sanitizer build.
assert os.path.realpath(_core.__file__).startswith(os.path.realpath(IMPORT_ROOT)), (_core.__file__, IMPORT_ROOT)

MICRO = _core.MICRO


@pytest.fixture
def ledger(tmp_path):
    led = _core.Ledger(str(tmp_path / "ledger.db"))
    yield led
    led.close()


@pytest.fixture
def account(ledger):
    return ledger.create_account("user@example.com", display_name="User")["id"]


@pytest.fixture
def rt(tmp_path):
    """A Runtime (the pack's ledger, prices and gate) on a fresh SQLite ledger, with the default config."""
    from comfy_credits_ext import config
    from comfy_credits_ext.runtime import Runtime
    r = Runtime(config.load(db_path=str(tmp_path / "ledger.db")))
    yield r
    r.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (tests/pgcluster.py)."""
    if os.environ.get("CC_TEST_NO_PG") == "1":
        pytest.skip("PostgreSQL tests skipped (CC_TEST_NO_PG=1)")
    from pgcluster import Cluster
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
def pg_uri(pg_cluster):
    """A fresh, empty PostgreSQL database for one test."""
    return pg_cluster.new_db()
