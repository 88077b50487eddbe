"""Shared fixtures. The compiled module must be built first (`make build`)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from comfy_credits_ext import _core  # noqa: E402  (fails loudly if not built)

MICRO = _core.MICRO


@pytest.fixture
def ledger(tmp_path):
    led = _core.Ledger(str(tmp_path / "ledger.db"))
    yield led
    led.close()


@pytest.fixture
def account(ledger):
    return ledger.create_account("user@example.com", display_name="User")["id"]
