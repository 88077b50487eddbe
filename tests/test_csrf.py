"""Issue #9.2: a session cookie never lets another origin spend credits.

The attack: a page on https://evil.<same site> (SameSite cookies count it as
the same site) posts a prompt with the victim's cookie, as JSON or as
text/plain (no preflight). ComfyUI's own origin check (server.py
create_origin_only_middleware) applies only when the Host is loopback, so the
requests below name a public host, as behind a reverse proxy."""
import json
import urllib.error
import urllib.request

import pytest

from test_integration import C, Comfy, balance, dalle, user

HOST = "comfy.example.com"


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    c = Comfy(tmp_path_factory.mktemp("csrf"))
    yield c
    c.close()


def session(comfy, email, credits):
    acct, key = user(comfy, email, credits)
    with comfy.ledger() as led:
        tok = led.create_credential(acct, "session", "browser", 3_600_000)["token"]
    return acct, key, tok


def post(comfy, path, body, headers):
    h = {"Host": HOST, **headers}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{comfy.port}{path}", data=data, method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def prompt(p):
    return {"prompt": p, "client_id": "csrf", "extra_data": {}}


@pytest.mark.parametrize("path", ["/prompt", "/api/prompt"])
@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example.com", "Content-Type": "application/json"},   # sibling subdomain, JSON
    {"Origin": "https://evil.example.com", "Content-Type": "text/plain"},         # no-preflight form of it
    {"Origin": f"http://{HOST}", "Content-Type": "text/plain"},                   # same origin, but not JSON
    {"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"},          # no Origin, browser says cross
    {"Origin": "null", "Content-Type": "application/json"},                       # sandboxed frame
])
def test_cross_site_prompt_with_a_cookie_is_refused_and_charges_nothing(comfy, path, headers):
    acct, _, tok = session(comfy, f"victim{abs(hash((path, str(headers))))}@example.com", 50 * C)
    st, body = post(comfy, path, prompt(dalle()), {**headers, "Cookie": f"comfy_credits_session={tok}"})
    assert st == 403 and body["error"]["type"] == "credits_cross_site", (st, body)
    st, q = comfy.http("GET", "/queue")
    assert q["queue_pending"] == [] and q["queue_running"] == []
    assert balance(comfy, acct)["balance"] == 50 * C and balance(comfy, acct)["held"] == 0


def test_same_origin_json_with_a_cookie_runs(comfy):
    acct, _, tok = session(comfy, "ok-cookie@example.com", 50 * C)
    st, body = post(comfy, "/prompt", prompt(dalle()), {"Origin": f"http://{HOST}", "Content-Type": "application/json",
                                                        "Cookie": f"comfy_credits_session={tok}"})
    assert st == 200, body
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    assert balance(comfy, acct)["balance"] < 50 * C


def test_personal_key_callers_are_exempt(comfy):
    acct, key, _ = session(comfy, "script@example.com", 50 * C)
    st, body = post(comfy, "/prompt", prompt(dalle()), {"Origin": "https://other-tool.example.org",
                                                        "Content-Type": "application/json",
                                                        "Authorization": f"Bearer {key}"})
    assert st == 200, body
    comfy.wait(body["prompt_id"])


def test_cross_site_cookie_is_ignored_for_free_workflows(comfy):
    """A workflow without API nodes is ComfyUI's business: the cookie is simply not used."""
    _, _, tok = session(comfy, "free@example.com", 0)
    free = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    st, body = post(comfy, "/prompt", prompt(free), {"Origin": "https://evil.example.com",
                                                     "Content-Type": "application/json",
                                                     "Cookie": f"comfy_credits_session={tok}"})
    assert st == 200
    comfy.wait(body["prompt_id"])


@pytest.mark.parametrize("path,body", [("/credits/keys", {"label": "x"}), ("/credits/password",
                                                                          {"old_password": "a", "new_password": "b"})])
def test_credits_writes_refuse_cross_site_and_non_json(comfy, path, body):
    acct, _, tok = session(comfy, f"w{len(path)}@example.com", 0)
    ck = {"Cookie": f"comfy_credits_session={tok}"}
    st, err = post(comfy, path, body, {**ck, "Origin": "https://evil.example.com", "Content-Type": "application/json"})
    assert st == 403 and err["error"]["type"] == "bad_origin"
    st, err = post(comfy, path, body, {**ck, "Origin": f"http://{HOST}", "Content-Type": "text/plain"})
    assert st == 400 and err["error"]["type"] == "bad_json" and "application/json" in err["error"]["message"]
    with comfy.ledger() as led:
        assert len(led.list_credentials(acct, "api_key")) == 1  # only the one user() made


def test_a_nul_in_a_personal_key_is_a_4xx_and_a_revoked_key_says_so(comfy):
    """Issue #9.7: was a 500, and a revoked key was told 'your session has expired'."""
    st, body = comfy.queue(dalle(), extra={"api_key_comfy_org": "cck_" + "0" * 30 + "\x00" + "0" * 33})
    assert st == 401 and body["error"]["type"] == "credits_bad_credential"
    acct, key = user(comfy, "revoked@example.com", 10 * C)
    with comfy.ledger() as led:
        led.revoke_credential(acct, "api_key")
    st, body = comfy.queue(dalle(), key)
    assert st == 401 and body["error"]["type"] == "credits_key_revoked" and "revoked" in body["error"]["message"]


def test_public_queue_and_history_do_not_show_account_numbers(comfy):
    """Issue #9.7: extra_data carried the numeric account id into GET /queue and /history."""
    acct, key = user(comfy, "private@example.com", 50 * C)
    st, body = comfy.queue(dalle(), key)
    assert st == 200
    h = comfy.wait(body["prompt_id"])
    extra = h["prompt"][3]
    assert "comfy_credits_account" not in extra and str(acct) != extra.get("comfy_credits_run_by")
    assert len(extra["comfy_credits_run_by"]) == 16
    st, body2 = comfy.queue(dalle("again"), key)
    assert comfy.wait(body2["prompt_id"])["prompt"][3]["comfy_credits_run_by"] == extra["comfy_credits_run_by"]
    assert "api_key_comfy_org" not in extra
