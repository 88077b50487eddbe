"""The ledger through the Python binding: rules, idempotency, errors, threads."""
import threading

import pytest

from comfy_credits_ext import _core

C = _core.MICRO


def test_grant_hold_settle_history(ledger, account):
    ledger.grant("g1", account, 10 * C, note="welcome")
    h = ledger.hold("h1", account, 4 * C, 60_000, prompt_id="p1", node_id="3",
                    node_class="OpenAIGPTImage1", model="gpt-image-1")
    assert h["held_after"] == 4 * C and h["available_after"] == 6 * C
    s = ledger.settle("s1", h["hold_id"], 1_234_567, tokens_in=120, tokens_out=4160, images=1)
    assert s["delta"] == -1_234_567
    assert s["balance_after"] == 10 * C - 1_234_567
    acct = ledger.account(account)
    assert acct["held"] == 0 and acct["spent_total"] == 1_234_567 and acct["granted_total"] == 10 * C
    page = ledger.history(account, limit=10)
    kinds = [e["kind"] for e in page["entries"]]
    assert kinds == ["settle", "hold", "grant"]
    top = page["entries"][0]
    assert (top["node_class"], top["model"], top["tokens_in"], top["tokens_out"], top["images"]) == \
        ("OpenAIGPTImage1", "gpt-image-1", 120, 4160, 1)
    assert top["seconds_ms"] is None
    assert page["next_cursor"] is None


RUN_FIELDS = ("prompt_id", "node_id", "node_class", "model", "tokens_in", "tokens_out", "images", "seconds_ms",
              "currency", "amount_minor", "method")


def test_history_and_history_rows_show_the_same_run_fields(ledger, account):
    """Both readers build a run's fields with one function (py_ledger.c ccpy_set_entry_run)."""
    ledger.grant("g1", account, 10 * C)
    h = ledger.hold("h1", account, 4 * C, 60_000, prompt_id="p1", node_id="3",
                    node_class="OpenAIGPTImage1", model="gpt-image-1")
    ledger.settle("s1", h["hold_id"], 1_234_567, tokens_in=120, tokens_out=4160, images=1)
    entry = ledger.history(account, kinds=["settle"])["entries"][0]
    row = _core.history_rows(ledger, account, filter=["runs"])["rows"][0]
    assert {k: entry[k] for k in RUN_FIELDS} == {k: row[k] for k in RUN_FIELDS} == {
        "prompt_id": "p1", "node_id": "3", "node_class": "OpenAIGPTImage1", "model": "gpt-image-1",
        "tokens_in": 120, "tokens_out": 4160, "images": 1, "seconds_ms": None, "currency": "",
        "amount_minor": 0, "method": ""}
    assert row["state"] == "charged" and row["charged"] == 1_234_567
    assert "key" not in row and "external_ref" not in row  # rows carry only what the history UI shows
    page = ledger.history(account, limit=1)
    assert page["next_cursor"] == page["entries"][0]["id"]
    assert ledger.history(account, cursor=page["next_cursor"], limit=5)["next_cursor"] is None
    rows = _core.history_rows(ledger, account, limit=1)
    assert rows["next_cursor"] is not None and len(rows["rows"]) == 1


@pytest.mark.parametrize("bad, message", [
    (["nope"], "kinds are grant, purchase, hold, settle, void, expire, test"),
    ([None], "kinds are grant"),
    (5, "kinds must be a list of kind names"),
    ([1], "kinds must be a string"),
])
def test_history_kinds_are_checked(ledger, account, bad, message):
    with pytest.raises(_core.InvalidArgument, match=message) as e:
        ledger.history(account, kinds=bad)
    assert e.value.field == "kinds"
    assert ledger.history(account, kinds=["test", "grant"])["entries"] == []


@pytest.mark.parametrize("bad", [["nope"], [None], 5, ["runs", "refunds"]])
def test_history_rows_filter_is_checked(ledger, account, bad):
    with pytest.raises(_core.InvalidArgument, match="filter is a list of runs, purchases, grants") as e:
        _core.history_rows(ledger, account, filter=bad)
    assert e.value.field == "filter"

def test_idempotency_semantics(ledger, account):
    first = ledger.grant("k", account, 5 * C, note="n")
    again = ledger.grant("k", account, 5 * C, note="n")
    assert again["replayed"] and again["entry_id"] == first["entry_id"]
    with pytest.raises(_core.IdempotencyConflict) as ei:
        ledger.grant("k", account, 6 * C, note="n")
    assert ei.value.field == "amount" and ei.value.code == "idempotency_conflict"
    with pytest.raises(_core.IdempotencyConflict) as ei:
        ledger.grant("k", account, 5 * C, note="other")
    assert ei.value.field == "note"
    with pytest.raises(_core.IdempotencyConflict) as ei:
        ledger.hold("k", account, 1 * C, 1000)
    assert ei.value.field == "kind"
    assert ledger.account(account)["balance"] == 5 * C


def test_failed_operation_can_be_retried_with_same_key(ledger, account):
    with pytest.raises(_core.InsufficientCredits):
        ledger.hold("h", account, 1 * C, 1000)
    ledger.grant("g", account, 2 * C)
    assert not ledger.hold("h", account, 1 * C, 1000)["replayed"]


def test_settle_above_hold_charges_up_to_the_hold(ledger, account):
    ledger.grant("g", account, 5 * C)
    h = ledger.hold("h", account, 2 * C, 60_000)
    s = ledger.settle("s", h["hold_id"], 9 * C)
    # "Up to" means up to: the person pays the 2 held, the other 7 are the operator's (uncollected), never debt.
    assert s["balance_after"] == 3 * C and s["delta"] == -2 * C and s["uncollected"] == 7 * C
    assert ledger.account(account)["uncollected_total"] == 7 * C
    h = ledger.hold("h2", account, 3 * C, 60_000)
    s = ledger.settle("s2", h["hold_id"], 3 * C)
    assert s["balance_after"] == 0
    with pytest.raises(_core.InsufficientCredits):
        ledger.hold("h3", account, 1, 60_000)
    assert ledger.verify()["ok"]


def test_void_and_resolve_once(ledger, account):
    ledger.grant("g", account, 5 * C)
    h = ledger.hold("h", account, 2 * C, 60_000)
    v = ledger.void("v", h["hold_id"], note="cancelled")
    assert v["delta"] == 0 and v["held_after"] == 0
    with pytest.raises(_core.InvalidState):
        ledger.settle("s", h["hold_id"], 1)
    with pytest.raises(_core.InvalidState):
        ledger.void("v2", h["hold_id"])
    assert ledger.get_hold(h["hold_id"])["state"] == "voided"


def test_expire(ledger, account):
    import time
    ledger.grant("g", account, 5 * C)
    h = ledger.hold("h", account, 2 * C, 1000)
    assert ledger.expire() == 0
    assert ledger.expire(now_ms=int(time.time() * 1000) + 5000) == 1
    assert ledger.get_hold(h["hold_id"])["state"] == "expired"
    assert ledger.account(account)["held"] == 0
    assert ledger.entry(f"expire:{h['hold_id']}")["kind"] == "expire"


def test_disabled_account_cannot_hold_but_keeps_credits(ledger, account):
    ledger.grant("g", account, 5 * C)
    a = ledger.update_account(account, active=False)
    assert a["active"] is False and a["balance"] == 5 * C
    with pytest.raises(_core.InvalidState):
        ledger.hold("h", account, 1, 1000)


@pytest.mark.parametrize("call,field", [
    (lambda L, a: L.grant("x", a, -1), "amount"),
    (lambda L, a: L.grant("x", a, 0), "amount"),
    (lambda L, a: L.grant("x", a, 2**63 - 1), "amount"),
    (lambda L, a: L.grant("x", a, 2**64), "amount"),
    (lambda L, a: L.grant("x", a, 1.5), "amount"),
    (lambda L, a: L.grant("x", a, True), "amount"),
    (lambda L, a: L.grant("x", a, "10"), "amount"),
    (lambda L, a: L.grant("", a, 1), "key"),
    (lambda L, a: L.grant("k" * 256, a, 1), "key"),
    (lambda L, a: L.grant("a\x00b", a, 1), "key"),
    (lambda L, a: L.grant("x", -3, 1), "account_id"),
    (lambda L, a: L.grant("x", a, 1, bogus=1), "bogus"),
    (lambda L, a: L.hold("x", a, 1, 0), "ttl_ms"),
    (lambda L, a: L.hold("x", a, 1, 1000, node_class="n" * 200), "node_class"),
    (lambda L, a: L.settle("x", 1, 1, tokens_in=-5), "tokens_in"),
    (lambda L, a: L.purchase("x", a, 1, "EUR", 100, "card", "cs_1"), "currency"),
    (lambda L, a: L.purchase("x", a, 1, "usd", 100, "", "cs_1"), "method"),
    (lambda L, a: L.history(a, limit=0), "limit"),
    (lambda L, a: L.history(a, kinds=["refund"]), "kinds"),
    (lambda L, a: L.create_account("nope"), "email"),
    (lambda L, a: L.create_account("x@y.z", role="root"), "role"),
    (lambda L, a: L.execute([]), "ops"),
    (lambda L, a: L.execute([{"op": "refund"}]), "op"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(ledger, account, call, field):
    ledger.grant("seed", account, 3 * C)
    before = ledger.account(account)
    with pytest.raises(_core.InvalidArgument) as ei:
        call(ledger, account)
    assert ei.value.field == field
    assert isinstance(ei.value, ValueError)
    assert str(ei.value)
    after = ledger.account(account)
    assert after["balance"] == before["balance"] and after["held"] == before["held"]
    assert ledger.verify()["ok"]


def test_unknown_account_and_hold(ledger):
    with pytest.raises(_core.NotFound):
        ledger.grant("x", 999, 1)
    with pytest.raises(_core.NotFound):
        ledger.settle("x", 12345, 1)
    with pytest.raises(_core.NotFound):
        ledger.account_by_email("ghost@example.com")


def test_duplicate_email_case_insensitive(ledger, account):
    with pytest.raises(_core.AlreadyExists) as ei:
        ledger.create_account("USER@example.com")
    assert ei.value.field == "email"


def test_no_refund_or_transfer_operations(ledger):
    names = dir(ledger)
    assert not any(n for n in names if "refund" in n or "transfer" in n)
    with pytest.raises(_core.InvalidArgument):
        ledger.execute([{"op": "refund", "key": "r"}])


def test_batch_execute_results_per_op(ledger, account):
    res = ledger.execute([
        {"op": "grant", "key": "b1", "account_id": account, "amount": 3 * C},
        {"op": "hold", "key": "b2", "account_id": account, "amount": 5 * C, "ttl_ms": 1000},
        {"op": "hold", "key": "b3", "account_id": account, "amount": 2 * C, "ttl_ms": 1000},
    ])
    assert [r["ok"] for r in res] == [True, False, True]
    assert res[1]["error"] == "insufficient_credits" and res[1]["field"] == "amount"


def test_threaded_race_exactly_50_of_1000(ledger, account):
    """1,000 holds of 1 credit race on a balance worth exactly 50."""
    ledger.grant("g", account, 50 * C)
    won, errors = [], []
    lock = threading.Lock()

    def worker(tid):
        for i in range(tid, 1000, 16):
            try:
                h = ledger.hold(f"race-{i}", account, 1 * C, 60_000)
                with lock:
                    won.append(h["hold_id"])
            except _core.InsufficientCredits:
                pass
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(won) == 50
    for i, hid in enumerate(won):
        ledger.settle(f"settle-{i}", hid, 1 * C)
    acct = ledger.account(account)
    assert acct["balance"] == 0 and acct["held"] == 0
    rep = ledger.verify()
    assert rep["ok"], rep["problems"]
    c = ledger.counters()
    assert c["commits"] < c["ops"]  # concurrent callers shared commits


def test_close_semantics(tmp_path):
    led = _core.Ledger(str(tmp_path / "l.db"))
    led.close()
    assert led.closed
    with pytest.raises(_core.InvalidState):
        led.account(1)
    led.close()  # idempotent


def test_bad_paths(tmp_path):
    with pytest.raises(_core.InvalidArgument):
        _core.Ledger(":memory:")
    with pytest.raises(_core.StorageError):
        _core.Ledger(str(tmp_path / "no" / "such" / "dir" / "x.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(_core.StorageError):
        _core.Ledger(str(junk))


def test_money_helpers():
    assert _core.convert("usd", 950) == 2005 * C
    assert _core.convert("usd", 14650) == 30912 * C
    assert _core.convert("jpy", 1000, {"jpy": 1_400_000}) == 1400 * C
    with pytest.raises(_core.InvalidArgument):
        _core.convert("eur", 100)
    assert _core.currency_exponent("KRW") == 0
    assert _core.parse_credits("0.000001") == 1
    assert _core.format_credits(2_004_500_000) == "2004.50"
    with pytest.raises(_core.InvalidArgument):
        _core.parse_credits("1e5")


def test_credentials_lifecycle(ledger, account):
    key = ledger.create_credential(account, "api_key", label="laptop")
    assert key["token"].startswith("cck_") and len(key["token"]) == 68
    assert key["hint"] == key["token"][:12] and key["created_ms"] > 0 and key["expires_ms"] == 0
    who = ledger.check_credential(key["token"])
    assert who["account"]["id"] == account and who["credential"]["label"] == "laptop"
    assert "token" not in ledger.list_credentials(account, "api_key")[0]
    sess = ledger.create_credential(account, "session", label="browser", ttl_ms=60_000)
    assert sess["expires_ms"] - sess["created_ms"] == 60_000
    # Forged, truncated or wrong-prefix tokens all get the same answer.
    for bad in (key["token"][:-1] + ("0" if key["token"][-1] != "0" else "1"), key["token"][:20],
                "ccx_" + key["token"][4:], "", "Bearer " + key["token"]):
        with pytest.raises(_core.NotFound):
            ledger.check_credential(bad)
    assert ledger.revoke_credential(account, "api_key", id=key["id"]) == 1
    with pytest.raises(_core.NotFound):
        ledger.check_credential(key["token"])
    with pytest.raises(_core.NotFound):
        ledger.revoke_credential(account, "api_key", id=key["id"])
    ledger.update_account(account, active=False)
    with pytest.raises(_core.InvalidState):
        ledger.check_credential(sess["token"])
    with pytest.raises(_core.InvalidState):
        ledger.create_credential(account, "session", ttl_ms=1000)


def test_credential_bad_input(ledger, account):
    with pytest.raises(_core.InvalidArgument):
        ledger.create_credential(account, "password")
    with pytest.raises(_core.InvalidArgument) as ei:
        ledger.create_credential(account, "session", ttl_ms=0)
    assert ei.value.field == "ttl_ms"
    with pytest.raises(_core.NotFound):
        ledger.create_credential(999, "api_key")


def test_api_keys_are_bounded_per_account(ledger, account):
    for i in range(50):
        ledger.create_credential(account, "api_key", label=f"k{i}")
    with pytest.raises(_core.InvalidArgument) as ei:
        ledger.create_credential(account, "api_key")
    assert "at most 50" in str(ei.value)
    assert ledger.revoke_credential(account, "api_key") == 50
    ledger.create_credential(account, "api_key")


@pytest.mark.parametrize("key", ["settle:1", "void:1", "stripe:cs_test_1", "run:p:1:x", "reserve:p"])
def test_operator_grants_cannot_take_system_keys(ledger, account, key):
    with pytest.raises(_core.InvalidArgument, match="reserved for the system") as e:
        ledger.grant(key, account, 1 * C)
    assert e.value.field == "key"
    assert ledger.account(account)["balance"] == 0


def test_a_ledger_from_a_newer_version_is_refused_untouched(tmp_path):
    import sqlite3
    path = tmp_path / "newer.db"
    _core.Ledger(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(_core.StorageError, match="written by a newer comfy-credits .schema version 7"):
        _core.Ledger(str(path))
    assert path.read_bytes() == before
