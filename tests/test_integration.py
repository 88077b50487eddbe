"""The pack inside the ComfyUI contract harness (tests/comfyui_harness), with
the simulated upstream: gate refusals, exact charges, failures, cancellation,
token secrecy, cache isolation, concurrency and the fail-closed start."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from appserver import free_port

from comfy_credits_ext import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "tests", "comfyui_harness")
OPERATOR_KEY = "operator-secret-key"
C = _core.MICRO



def wait_line(proc, needle, timeout=60):
    end = time.monotonic() + timeout
    lines = []
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if needle in line:
            return lines
    raise RuntimeError(f"did not see {needle!r}:\n" + "".join(lines[-40:]))


ACME_PACK = '''
class AcmeUpscaleApi:
    API_NODE = True
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)
    CALLS = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"factor": ("INT", {})},
                "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG", "auth_token": "AUTH_TOKEN_COMFY_ORG"}}

    def run(self, factor, comfy_api_key=None, auth_token=None):
        # What a third-party node would send upstream as its key: our run token, never the user's.
        AcmeUpscaleApi.CALLS.append(comfy_api_key)
        return (f"x{factor}:{(comfy_api_key or '')[:5]}",)


NODE_CLASS_MAPPINGS = {"AcmeUpscaleApi": AcmeUpscaleApi}
'''


class Comfy:
    def __init__(self, tmp, pack_env=None, extra_args=None, pack=ROOT, python=None, env_base=None):
        self.tmp = tmp
        self.up_port, self.port = free_port(), free_port()
        nodes_dir = tmp / "custom_nodes"
        nodes_dir.mkdir(exist_ok=True)
        if not (nodes_dir / "comfy-credits").exists():  # a test may have installed the pack there already
            os.symlink(pack, nodes_dir / "comfy-credits")
        # A third-party pack with its own paid API node (synchronous, no price rule).
        (nodes_dir / "acme_api_pack").mkdir()
        (nodes_dir / "acme_api_pack" / "__init__.py").write_text(ACME_PACK)
        (tmp / "user").mkdir()
        env = dict(os.environ if env_base is None else env_base, PYTHONUNBUFFERED="1", COMFY_CREDITS_UPSTREAM_KEY=OPERATOR_KEY,
                   COMFY_CREDITS_UPSTREAM_BASE=f"http://127.0.0.1:{self.up_port}", HARNESS_RETRY_DELAY_S="0.01",
                   **(pack_env or {}))
        env.pop("COMFY_CREDITS_DB", None)
        self.up = subprocess.Popen([sys.executable, os.path.join(HARNESS, "upstream.py"), "--port", str(self.up_port),
                                    "--key", OPERATOR_KEY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=env)
        wait_line(self.up, "listening")
        self.proc = subprocess.Popen([python or sys.executable, os.path.join(HARNESS, "main.py"), "--listen", "127.0.0.1",
                                      "--port", str(self.port), "--user-directory", str(tmp / "user"),
                                      "--custom-nodes-dir", str(nodes_dir), *(extra_args or [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.boot_log = "".join(wait_line(self.proc, "harness: listening"))
        self.db = tmp / "user" / "comfy_credits" / "ledger.db"

    def ledger(self):
        return _core.Ledger(str(self.db))

    def http(self, method, path, body=None, token=None, port=None, headers=None):
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{port or self.port}{path}", method=method, headers=h,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def queue(self, prompt, token=None, extra=None):
        return self.http("POST", "/prompt", {"prompt": prompt, "client_id": "t", "extra_data": extra or {}}, token)

    def wait(self, prompt_id, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st, h = self.http("GET", f"/history/{prompt_id}")
            if h and prompt_id in h:
                return h[prompt_id]
            time.sleep(0.05)
        raise TimeoutError(prompt_id)

    def upstream_requests(self):
        return self.http("GET", "/_sim/requests", port=self.up_port)[1]

    def close(self):
        for p in (self.proc, self.up):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    c = Comfy(tmp_path_factory.mktemp("comfy"))
    yield c
    c.close()


def user(comfy, email, credits=0):
    with comfy.ledger() as led:
        a = led.create_account(email)["id"]
        if credits:
            led.grant(f"seed-{email}", a, credits)
        return a, led.create_credential(a, "api_key")["token"]


def dalle(prompt="a red fox", quality="standard", size="1024x1024"):
    return {"1": {"class_type": "OpenAIDalle3", "inputs": {"prompt": prompt, "seed": 1, "quality": quality,
                                                           "style": "natural", "size": size}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def balance(comfy, account):
    with comfy.ledger() as led:
        return led.account(account)


def test_pack_loads_and_points_api_nodes_at_the_gateway(comfy):
    assert "comfy-credits: ready; 4 API node classes metered" in comfy.boot_log
    st, info = comfy.http("GET", "/object_info")
    assert info["OpenAIDalle3"]["api_node"] and info["KlingTextToVideoNode"]["api_node"]


def test_refused_without_sign_in_and_without_credits(comfy):
    st, body = comfy.queue(dalle())
    assert st == 400 and body["error"]["type"] == "credits_sign_in_required"
    assert body["node_errors"]["1"]["class_type"] == "OpenAIDalle3"
    _, key = user(comfy, "broke@example.com")
    st, body = comfy.queue(dalle(), key)
    assert st == 400 and body["error"]["type"] == "insufficient_credits"
    assert "needs up to 8.44 credits" in body["error"]["details"] and "Settings → Credits" in body["error"]["details"]
    assert not [r for r in comfy.upstream_requests()]  # nothing reached the upstream
    st, q = comfy.http("GET", "/queue")
    assert q["queue_pending"] == [] and q["queue_running"] == []


def test_plain_workflows_need_no_account(comfy):
    st, body = comfy.queue({"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
                            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    assert st == 200
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"


def test_linked_inputs_are_priced_at_their_worst_case(comfy):
    acct, key = user(comfy, "linked@example.com", 20 * C)
    p = dalle()
    p["3"] = {"class_type": "PrimitiveString", "inputs": {"value": "hd"}}
    p["1"]["inputs"]["quality"] = ["3", 0]
    p["1"]["inputs"]["size"] = ["3", 0]
    st, body = comfy.queue(p, key)
    # worst case: 1792x1024 hd = $0.12 = 25.32 credits > 20
    assert st == 400 and "up to 25.32" in body["error"]["details"]


def test_workflow_of_several_api_nodes_is_charged_what_the_upstream_reported(comfy):
    acct, key = user(comfy, "ann@example.com", 500 * C)
    requests_before = len(comfy.upstream_requests())
    p = {"1": {"class_type": "OpenAIDalle3", "inputs": {"prompt": "fox", "seed": 2, "quality": "standard",
                                                        "style": "natural", "size": "1024x1024"}},
         "2": {"class_type": "OpenAIGPTImage1", "inputs": {"prompt": "fox", "seed": 2, "quality": "high",
                                                           "background": "opaque", "size": "1024x1024", "n": 1}},
         "3": {"class_type": "KlingTextToVideoNode", "inputs": {"prompt": "fox running",
                                                                "mode": "standard mode / 5s duration / kling-v1"}},
         "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
         "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
         "6": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    st, body = comfy.queue(p, key, extra={"api_key_comfy_org": key})
    assert st == 200, body
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "success", h["status"]
    with comfy.ledger() as led:
        settles = {e["node_class"]: e for e in led.history(acct, kinds=["settle"])["entries"]}
        a = led.account(acct)
        assert led.verify()["ok"]
    # DALL·E 3 is flat: the estimate. GPT-Image-1: the upstream's tokens x the
    # unit prices: (50 x $10 + 4160 x $40) / 1M = $0.1669 -> 35.2159 credits.
    # Kling: exactly the X-Comfy-Credits-Used it reported (29.54).
    assert -settles["OpenAIDalle3"]["delta"] == 8_440_000
    assert -settles["OpenAIGPTImage1"]["delta"] == 35_215_900
    assert settles["OpenAIGPTImage1"]["tokens_in"] == 50 and settles["OpenAIGPTImage1"]["tokens_out"] == 4160
    assert -settles["KlingTextToVideoNode"]["delta"] == 29_540_000
    assert a["balance"] == 500 * C - 8_440_000 - 35_215_900 - 29_540_000 and a["held"] == 0
    # Only the operator's key reached the upstream; the user's key and the run tokens never did.
    seen = comfy.upstream_requests()[requests_before:]
    assert len(seen) >= 5  # 2 images + kling submit + polls
    assert all(r["x_api_key"] == OPERATOR_KEY and r["authorization"] is None for r in seen)
    # The queue and history expose no secret.
    assert key not in json.dumps(comfy.http("GET", "/history")[1])
    assert "cct1." not in json.dumps(comfy.http("GET", "/history")[1])


def test_api_nodes_of_one_prompt_run_concurrently_on_holds(comfy):
    acct, key = user(comfy, "para@example.com", 100 * C)
    p = {"1": dalle("one")["1"], "2": {**dalle("two")["1"]}, "3": {"class_type": "PreviewAny",
                                                                   "inputs": {"source": ["1", 0]}},
         "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    st, body = comfy.queue(p, key)
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    with comfy.ledger() as led:
        ents = list(reversed(led.history(acct)["entries"]))
    kinds = [e["kind"] for e in ents]
    # Both holds were open before either settled: the calls overlapped.
    assert kinds[:3] == ["grant", "hold", "hold"] and kinds[3:] == ["settle", "settle"]
    assert ents[-1]["held_after"] == 0


def test_failed_upstream_call_costs_nothing(comfy):
    acct, key = user(comfy, "fail@example.com", 50 * C)
    st, body = comfy.queue(dalle("please fail"), key)
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "error"
    err = [m for m in h["status"]["messages"] if m[0] == "execution_error"][0][1]
    assert "content policy violation" in err["exception_message"]
    st, body = comfy.queue(dalle("boom 500"), key)  # retried by the client, then failed
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "error"
    a = balance(comfy, acct)
    assert a["balance"] == 50 * C and a["held"] == 0 and a["spent_total"] == 0


def test_cancelled_run_costs_nothing(comfy):
    acct, key = user(comfy, "cancel@example.com", 50 * C)
    st, body = comfy.queue(dalle("slow please"), key, extra={"api_key_comfy_org": key})
    pid = body["prompt_id"]
    for _ in range(100):  # wait until the hold exists
        if balance(comfy, acct)["held"]:
            break
        time.sleep(0.05)
    st, q = comfy.http("GET", "/queue")
    assert key not in json.dumps(q)  # the personal key was stripped before queueing
    t = time.monotonic()
    comfy.http("POST", "/interrupt", {})
    h = comfy.wait(pid)
    assert time.monotonic() - t < 5  # the in-flight call was cancelled, not awaited
    assert any(m[0] == "execution_interrupted" for m in h["status"]["messages"])
    a = balance(comfy, acct)
    assert a["balance"] == 50 * C and a["held"] == 0


def test_small_balance_across_prompts_is_never_overspent(comfy):
    acct, key = user(comfy, "small@example.com", 10 * C)  # enough for one 8.44 run, not two
    # Keep the single worker busy so both prompts pass the queue-time gate
    # (no hold exists yet) and meet only at execution time.
    busy, bkey = user(comfy, "busy@example.com", 50 * C)
    blocker = comfy.queue(dalle("slow blocker"), bkey)[1]["prompt_id"]
    for _ in range(100):
        if balance(comfy, busy)["held"]:
            break
        time.sleep(0.05)
    ids = [comfy.queue(dalle(f"unique {i}"), key)[1]["prompt_id"] for i in range(2)]
    comfy.http("POST", "/interrupt", {"prompt_id": blocker})
    comfy.wait(blocker)
    results = [comfy.wait(i)["status"]["status_str"] for i in ids]
    assert sorted(results) == ["error", "success"]
    err = [m for i in ids for m in comfy.wait(i)["status"]["messages"] if m[0] == "execution_error"][0][1]
    assert "Not enough credits to run OpenAIDalle3" in err["exception_message"]
    assert "Payment Required" not in err["exception_message"]  # would open Comfy.org's top-up dialog
    a = balance(comfy, acct)
    assert a["balance"] == 10 * C - 8_440_000 and a["held"] == 0


def test_cached_results_are_not_shared_between_accounts(comfy):
    a1, k1 = user(comfy, "cache1@example.com", 50 * C)
    a2, k2 = user(comfy, "cache2@example.com", 50 * C)
    p = dalle("cache me")
    for k in (k1, k1, k2):
        st, body = comfy.queue(p, k)
        assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    assert balance(comfy, a1)["spent_total"] == 8_440_000  # the repeat was served from the cache, free
    assert balance(comfy, a2)["spent_total"] == 8_440_000  # the other account paid for its own run


def test_disabled_account_is_refused(comfy):
    acct, key = user(comfy, "off@example.com", 50 * C)
    with comfy.ledger() as led:
        led.update_account(acct, active=False)
    st, body = comfy.queue(dalle(), key)
    assert st == 403 and body["error"]["type"] == "credits_account_disabled"
    # Workflows without API nodes still run: a disabled or stale credential costs nothing to ignore.
    plain = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    for token in (key, "ccs_" + "0" * 64):
        st, body = comfy.queue(plain, token)
        assert st == 200, body


def test_gateway_refuses_forged_tokens(comfy):
    st, body = comfy.http("POST", "/credits/gateway/proxy/openai/images/generations", {"prompt": "x"},
                          headers={"X-API-KEY": "cct1.1.1.99999999999999.00000000000000000000000000000000."
                                                "0000000000000000000000000000000000000000000000000000000000000000"})
    assert st == 402 and body["error"]["type"] == "credits_hold_invalid"
    st, body = comfy.http("POST", "/api/credits/gateway/proxy/x", {}, headers={"X-API-KEY": "anything"})
    assert st == 402


def test_fail_closed_when_the_pack_cannot_start(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    c = Comfy(tmp_path, {"COMFY_CREDITS_CONFIG": str(bad)})
    try:
        # One line with the reason and the fix; ComfyUI lists the pack as IMPORT FAILED (nodes.py:2241, 2402).
        assert "comfy-credits DISABLED (paid API nodes are refused): " in c.boot_log and "Fix: " in c.boot_log
        assert "IMPORT FAILED: " + str(tmp_path / "custom_nodes" / "comfy-credits") in c.boot_log
        st, body = c.queue(dalle())
        assert st == 503 and body["error"]["type"] == "credits_unavailable"
        assert body["error"]["message"] == "Credits are unavailable on this server — ask the operator"
        assert str(tmp_path) not in json.dumps(body) and "bad.json" not in json.dumps(body)
        st, body = c.queue({"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
                            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
        assert st == 200  # everything else keeps working
        assert c.upstream_requests() == []
    finally:
        c.close()


@pytest.mark.parametrize("body,expected", [
    # Each answer copied from ComfyUI 0.3.64 (a125cd84) for the same request.
    ({}, {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}),
    ({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}},
     {"type": "invalid_prompt", "message": "Cannot execute because node Nope does not exist.",
      "details": "Node ID '#1'", "extra_info": {}}),
    ({"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}},
     {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}),
])
def test_harness_prompt_errors_match_real_comfyui(comfy, body, expected):
    st, got = comfy.http("POST", "/prompt", body)
    assert st == 400 and got == {"error": expected, "node_errors": {}}


def test_third_party_sync_api_node_is_metered_at_the_default_price(comfy):
    acct, key = user(comfy, "acme@example.com", 500 * C)
    p = {"1": {"class_type": "AcmeUpscaleApi", "inputs": {"factor": 2}},
         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    st, body = comfy.queue(p, key, extra={"api_key_comfy_org": key})
    assert st == 200, body
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "success"
    assert h["outputs"]["2"]["text"] == ["x2:cct1."]  # it ran with a run token, not the personal key
    with comfy.ledger() as led:
        settle = led.history(acct, kinds=["settle"])["entries"][0]
    assert settle["node_class"] == "AcmeUpscaleApi" and -settle["delta"] == 422 * C  # default rule: $2.00
