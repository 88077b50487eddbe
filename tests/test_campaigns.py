"""The campaigns of issue #9 in CI: a 10,000-delivery webhook storm and a
crash campaign (20 kill -9 points here; scripts/crash_campaign.py runs 200)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import crash_campaign  # noqa: E402
import webhook_storm  # noqa: E402


def test_webhook_storm_credits_each_paid_session_once_and_accepts_no_forgery():
    res = webhook_storm.storm(10_000, 500)
    assert res["deliveries"] == 10_000 and res["forged_or_stale_or_tampered"] > 2_000
    assert res["accepted_forgeries"] == 0 and res["double_credits"] == 0 and res["unpaid_credited"] == 0
    assert res["missing"] == 0 and res["balance_ok"] and res["verify_ok"] and res["ok"], res


def test_crash_campaign_loses_no_acknowledged_operation(tmp_path):
    res, problems = crash_campaign.campaign(20, str(tmp_path / "crash.db"))
    assert problems == [] and res["kill_points"] == 20 and res["open_holds_after"] == 0
    assert res["acknowledged"] > 500 and res.get("acked_purchase", 0) > 20, res
