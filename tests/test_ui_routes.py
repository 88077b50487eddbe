"""Routes the browser UI reads to decide what to show (web/comfy_credits.js)."""
import pytest

from appserver import Server


@pytest.mark.parametrize("allow", [False, True])
def test_signup_allowed_follows_the_operator(tmp_path, allow):
    s = Server(tmp_path, {"allow_signup": allow})
    try:
        st, body, _ = s.call("GET", "/credits/signup", auth=False)
        assert st == 200 and body == {"allowed": allow}
        # And the form's target agrees with what the UI was told.
        st, body, _ = s.call("POST", "/credits/signup", {"email": "new@example.com", "password": "long enough"},
                             auth=False)
        assert (st == 200) is allow, body
        if not allow:
            assert body["error"]["type"] == "signup_disabled"
    finally:
        s.close()


def test_history_rows_one_row_per_run_and_reserved_credits(tmp_path):
    """The Credits panel's history (GET /credits/history/rows, src/history.c): a run is one row with its state,
    never a hold and a settle apart; queued prompts' reservations are reported as such; filters work."""
    s = Server(tmp_path)
    try:
        led, a, M = s.rt.ledger, s.account, 1_000_000
        led.grant("welcome", a, 50 * M, note="welcome")
        h1 = led.hold("h1", a, 8 * M, 60_000, prompt_id="p1", node_id="4", node_class="OpenAIDalle3")["hold_id"]
        led.settle("settle:1", h1, 5 * M)
        h2 = led.hold("h2", a, 8 * M, 60_000, prompt_id="p2", node_id="4", node_class="OpenAIDalle3")["hold_id"]
        led.void("void:2", h2, note="interrupted before the provider started the task")
        h3 = led.hold("h3", a, 8 * M, 60_000, prompt_id="p3", node_id="4", node_class="KlingTextToVideoNode")["hold_id"]
        # A queued prompt of this account reserves 12 credits (as gate.py admission does).
        s.rt.reserve_prompt("queued-1", a, 12 * M)
        s.rt.remember_prompt("queued-1", a)
        st, body, _ = s.call("GET", "/credits/history/rows")
        assert st == 200, body
        rows = body["rows"]
        assert [(r["kind"], r["state"]) for r in rows] == [
            ("run", "running"), ("run", "released"), ("run", "charged"), ("grant", "")]
        assert rows[0]["run_id"] == h3 and rows[0]["held"] == 8 * M and rows[0]["ended_ms"] == 0
        assert rows[1]["reason"] == "interrupted before the provider started the task" and rows[1]["charged"] == 0
        assert rows[2]["charged"] == 5 * M and rows[2]["held"] == 8 * M and rows[2]["node_class"] == "OpenAIDalle3"
        assert body["reserved_micro"] == 12 * M
        assert body["reserved_prompts"] == [{"prompt_id": "queued-1", "reserved_micro": 12 * M}]
        st, body, _ = s.call("GET", "/credits/history/rows?filter=grants")
        assert st == 200 and [r["kind"] for r in body["rows"]] == ["grant"]
        st, body, _ = s.call("GET", "/credits/history/rows?limit=1")
        assert len(body["rows"]) == 1 and body["next_cursor"]
        st, body2, _ = s.call("GET", f"/credits/history/rows?limit=1&cursor={body['next_cursor']}")
        assert body2["rows"][0]["run_id"] == h2
        for bad in ("filter=holds", "limit=0", "limit=x", "cursor=-1"):
            st, body, _ = s.call("GET", f"/credits/history/rows?{bad}")
            assert st == 400 and body["error"]["type"] == "invalid_argument", (bad, body)
        s.rt.release_prompt("queued-1")
        st, body, _ = s.call("GET", "/credits/history/rows")
        assert body["reserved_micro"] == 0 and body["reserved_prompts"] == []
        st, body, _ = s.call("GET", "/credits/history/rows", auth=False)
        assert st == 401
    finally:
        s.close()


def test_prices_route_prices_nodes_like_admission(tmp_path):
    """POST /credits/prices (the node badges): the same worst case admission holds, per node, without an account;
    bad input is a clear 400."""
    s = Server(tmp_path)
    try:
        dalle = {"prompt": "fox", "seed": 1, "quality": "standard", "style": "natural", "size": "1024x1024"}
        hd = dict(dalle, quality="hd")
        st, body, _ = s.call("POST", "/credits/prices", {"nodes": [
            {"id": 1, "class_type": "OpenAIDalle3", "inputs": dalle},
            {"id": "2", "class_type": "OpenAIDalle3", "inputs": hd},
            {"id": 3, "class_type": "OpenAIDalle3", "inputs": dict(dalle, quality=["9", 0])},  # linked: worst case
        ]}, auth=False)
        assert st == 200, body
        p = {x["id"]: x for x in body["prices"]}
        assert p[1]["micro"] == s.rt.prices.estimate("OpenAIDalle3", dalle)["micro"] == 8_440_000
        assert p[1]["credits"] == "8.44" and p[1]["used_default"] is False
        assert p["2"]["micro"] == 16_880_000
        assert p[3]["micro"] >= p["2"]["micro"]
        for bad in ({}, {"nodes": []}, {"nodes": [{"id": 1}]}, {"nodes": [{"id": False, "class_type": "X"}]}, {"nodes": [{"id": 1, "class_type": "X", "inputs": 3}]},
                    {"nodes": [{"id": i, "class_type": "OpenAIDalle3"} for i in range(501)]}):
            st, body, _ = s.call("POST", "/credits/prices", bad, auth=False)
            assert st == 400 and body["error"]["type"] == "invalid_argument", (bad, body)
        st, body, _ = s.call("POST", "/credits/prices", raw=b'{"nodes": []}', headers={"Content-Type": "text/plain"},
                             auth=False)
        assert st == 400
    finally:
        s.close()


def test_invite_link_opens_sign_up_once(tmp_path):
    """An operator's invite (CLI or POST /credits/admin/invites) lets its email sign up even with sign-up closed,
    once; a changed, expired or used link says so (src/invite.c)."""
    from urllib.parse import parse_qs, urlsplit

    from comfy_credits_ext import _core, invites
    s = Server(tmp_path, {"allow_signup": False})
    try:
        # Only an admin may invite over HTTP.
        st, body, _ = s.call("POST", "/credits/admin/invites", {"email": "new@example.com"})
        assert st == 403 and body["error"]["type"] == "admin_only"
        s.rt.ledger.update_account(s.account, role="admin")
        st, inv, _ = s.call("POST", "/credits/admin/invites", {"email": "  New@Example.com", "days": 2},
                            headers={"Origin": s.base})
        assert st == 200, inv
        assert inv["email"] == "new@example.com"
        token = parse_qs(urlsplit(inv["url"]).query)["credits_invite"][0]
        assert token == inv["invite"] and inv["url"].startswith("http://127.0.0.1:8188/?credits_invite=")
        for bad in ({"email": "not an email"}, {"email": "a@example.com", "days": 0},
                    {"email": "a@example.com", "days": 31}, {"email": "a@example.com", "days": True}):
            st, body, _ = s.call("POST", "/credits/admin/invites", bad, headers={"Origin": s.base})
            assert st == 400, (bad, body)
        st, body, _ = s.call("GET", f"/credits/invite?invite={token}", auth=False)
        assert st == 200 and body["email"] == "new@example.com"
        # A changed link (another email under the same signature) is refused.
        forged = token.replace("6e6577", "6f6577")  # "new" -> "oew"
        st, body, _ = s.call("POST", "/credits/signup", {"invite": forged, "password": "long enough"}, auth=False)
        assert st == 400 and body["error"]["type"] == "invite_invalid" and "not valid" in body["error"]["message"]
        # Sign-up is closed, but the invite opens it for its email (a body email is ignored).
        st, body, _ = s.call("POST", "/credits/signup", {"invite": token, "email": "other@example.com",
                                                         "password": "long enough", "display_name": "New"},
                             auth=False)
        assert st == 200, body
        assert s.rt.ledger.account_by_email("new@example.com")["display_name"] == "New"
        with pytest.raises(_core.NotFound):
            s.rt.ledger.account_by_email("other@example.com")
        # Used once.
        st, body, _ = s.call("POST", "/credits/signup", {"invite": token, "password": "long enough"}, auth=False)
        assert st == 409 and body["error"]["type"] == "invite_used" and "Sign in" in body["error"]["message"]
        st, body, _ = s.call("GET", f"/credits/invite?invite={token}", auth=False)
        assert st == 409
        # Expired.
        old = _core.invite_mint(invites.key(s.rt.cfg), "late@example.com", 60_000, now_ms=1_000)
        st, body, _ = s.call("GET", f"/credits/invite?invite={old}", auth=False)
        assert st == 410 and body["error"]["type"] == "invite_expired" and "expired" in body["error"]["message"]
        st, body, _ = s.call("POST", "/credits/signup", {"invite": old, "password": "long enough"}, auth=False)
        assert st == 410
        # Without an invite, sign-up stays closed.
        st, body, _ = s.call("POST", "/credits/signup", {"email": "x@example.com", "password": "long enough"},
                             auth=False)
        assert st == 403 and body["error"]["type"] == "signup_disabled"
    finally:
        s.close()


def test_invite_key_in_farm_mode_comes_from_the_environment(tmp_path, monkeypatch):
    """Farm mode has no file beside the ledger: every server and the CLI need the same key, from the env."""
    from types import SimpleNamespace

    from comfy_credits_ext import _core, invites
    farm = SimpleNamespace(farm=True, database="postgresql://u@127.0.0.1:5432/credits", public_url=None)
    monkeypatch.delenv(invites.ENV_KEY, raising=False)
    with pytest.raises(_core.InvalidState, match=invites.ENV_KEY):
        invites.key(farm)
    monkeypatch.setenv(invites.ENV_KEY, "ab" * 31)
    with pytest.raises(_core.InvalidState, match="64 hex"):
        invites.key(farm)
    monkeypatch.setenv(invites.ENV_KEY, "ab" * 32)
    assert invites.key(farm) == bytes.fromhex("ab" * 32)
    link = invites.make(farm, "farm@example.com", 1, "http://h")
    assert _core.invite_verify(bytes.fromhex("ab" * 32), link["invite"])["email"] == "farm@example.com"
