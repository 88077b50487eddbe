"""Prebuilt native core of the comfy-credits pack (the wheel on PyPI).

The pack (comfy_credits_ext) imports `comfy_credits_core._core` when it has
no locally built module, and refuses to start unless `__version__` equals
its own; it also gives the bundled libcurl certifi's CA bundle (or the
operator's COMFY_CREDITS_CA_BUNDLE), see comfy_credits_ext/__init__.py.
"""
from . import _core

__version__ = _core.__version__


def selfcheck():
    """Raises unless the module works (used by cibuildwheel's test-command)."""
    assert _core.parse_credits("1.5") == 3 * _core.MICRO // 2
    led = _core.Ledger(":memory:")
    led.close()
