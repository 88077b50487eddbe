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
import asyncio
import json
import urllib.request

from comfy.cli_args import args
from comfy_api_nodes.client import request


def call_gateway(path, token, body):
    req = urllib.request.Request(args.comfy_api_base + path.lstrip("/"), data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json", "X-API-KEY": token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class AcmeUpscaleApi:
    """A third-party synchronous API node (no price rule) calling its provider through the proxy."""
    API_NODE = True
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"factor": ("INT", {})},
                "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG", "auth_token": "AUTH_TOKEN_COMFY_ORG"}}

    def run(self, factor, comfy_api_key=None, auth_token=None):
        # What a third-party node sends upstream as its key: our run token, never the user's.
        call_gateway("/proxy/acme/upscale", comfy_api_key, {"factor": factor})
        return (f"x{factor}:{(comfy_api_key or '')[:5]}",)


class AcmeSlowStartApi:
    """Async; waits before its first upstream call (an interrupt can land before it)."""
    API_NODE = True
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {})},
                "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG", "auth_token": "AUTH_TOKEN_COMFY_ORG"}}

    async def run(self, prompt, comfy_api_key=None, auth_token=None):
        await asyncio.sleep(1.5)
        body, _ = await request("POST", "/proxy/acme/generate", comfy_api_key=comfy_api_key, data={"prompt": prompt})
        return (json.dumps(body),)


class AcmeMemoryChat:
    """A stateful third-party node: keeps every prompt it saw on its instance
    and sends that memory upstream with the next one."""
    API_NODE = True
    FUNCTION = "chat"
    RETURN_TYPES = ("STRING",)

    def __init__(self):
        self.memory = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prompt": ("STRING", {})},
                "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG", "auth_token": "AUTH_TOKEN_COMFY_ORG"}}

    async def chat(self, prompt, comfy_api_key=None, auth_token=None):
        body, _ = await request("POST", "/proxy/acme/chat", comfy_api_key=comfy_api_key,
                                data={"prompt": prompt, "memory": list(self.memory)})
        self.memory.append(prompt)
        return ("memory:" + "|".join(body["echo"]["memory"]),)


class AcmeExpander:
    """Not an API node at queue time; runs one while executing (as node expansion does)."""
    FUNCTION = "run"
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"factor": ("INT", {})}}

    def run(self, factor):
        return AcmeUpscaleApi().run(factor=factor, comfy_api_key=None)


NODE_CLASS_MAPPINGS = {"AcmeUpscaleApi": AcmeUpscaleApi, "AcmeSlowStartApi": AcmeSlowStartApi,
                       "AcmeMemoryChat": AcmeMemoryChat, "AcmeExpander": AcmeExpander}
'''


class Comfy:
    def __init__(self, tmp, pack_env=None, extra_args=None, pack=ROOT, python=None, env_base=None,
                 listen="127.0.0.1", connect_host="127.0.0.1", tls=None):
        self.tmp = tmp
        self.up_port, self.port = free_port(), free_port()
        # How tests reach this ComfyUI (tls: (certfile, keyfile) given to --tls-certfile/--tls-keyfile).
        self.base = f"{'https' if tls else 'http'}://{connect_host}:{self.port}"
        tls_args = ["--tls-certfile", tls[0], "--tls-keyfile", tls[1]] if tls else []
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
        self.proc = subprocess.Popen([python or sys.executable, os.path.join(HARNESS, "main.py"), "--listen", listen,
                                      "--port", str(self.port), "--user-directory", str(tmp / "user"),
                                      "--custom-nodes-dir", str(nodes_dir), "--temp-directory", str(tmp),
                                      *tls_args, *(extra_args or [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.boot_log = "".join(wait_line(self.proc, "harness: listening"))
        self.db = tmp / "user" / "comfy_credits" / "ledger.db"

    def ledger(self):
        return _core.Ledger(str(self.db))

    def http(self, method, path, body=None, token=None, port=None, headers=None):
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        base = f"http://127.0.0.1:{port}" if port else self.base
        req = urllib.request.Request(f"{base}{path}", method=method, headers=h,
                                     data=json.dumps(body).encode() if body is not None else None)
        ctx = None
        if base.startswith("https:"):  # the test's throwaway certificate
            import ssl
            ctx = ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(req, timeout=60, context=ctx) as r:
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
    assert "comfy-credits: ready; 12 API node classes metered" in comfy.boot_log
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


def wait_for(pred, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(what)


def upstream_saw(comfy, path_part, since=0):
    return [r for r in comfy.upstream_requests()[since:] if path_part in r["path"]]


def run_entries(comfy, acct, kinds=("settle", "void")):
    with comfy.ledger() as led:
        return led.history(acct, kinds=list(kinds))["entries"]


def minimax(prompt="a fox"):
    return {"1": {"class_type": "MinimaxTextToVideoNode", "inputs": {"prompt_text": prompt, "model": "T2V-01"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def test_interrupt_before_the_first_upstream_call_is_free(comfy):
    acct, key = user(comfy, "early@example.com", 500 * C)
    before = len(comfy.upstream_requests())
    p = {"1": {"class_type": "AcmeSlowStartApi", "inputs": {"prompt": "early"}},
         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    pid = comfy.queue(p, key)[1]["prompt_id"]
    wait_for(lambda: balance(comfy, acct)["held"], what="hold placed")
    comfy.http("POST", "/interrupt", {})
    h = comfy.wait(pid)
    assert any(m[0] == "execution_interrupted" for m in h["status"]["messages"])
    wait_for(lambda: balance(comfy, acct)["held"] == 0, what="hold resolved")
    a = balance(comfy, acct)
    assert a["balance"] == 500 * C and a["spent_total"] == 0
    [e] = run_entries(comfy, acct)
    assert e["kind"] == "void" and "before the provider started the task" in e["note"]
    time.sleep(1.6)  # the node's call would have happened by now
    assert upstream_saw(comfy, "/proxy/acme/", before) == []


def test_interrupt_while_polling_pays_what_the_upstream_billed(comfy):
    acct, key = user(comfy, "poller@example.com", 500 * C)
    before = len(comfy.upstream_requests())
    pid = comfy.queue(minimax("forever a fox"), key)[1]["prompt_id"]
    wait_for(lambda: len(upstream_saw(comfy, "/proxy/minimax/query", before)) >= 2, what="polling")
    comfy.http("POST", "/interrupt", {})
    h = comfy.wait(pid)
    assert any(m[0] == "execution_interrupted" for m in h["status"]["messages"])
    wait_for(lambda: balance(comfy, acct)["held"] == 0, what="hold resolved")
    a = balance(comfy, acct)
    # The provider accepted the task and reported 90.73 credits: the person pays them.
    assert a["spent_total"] == 90_730_000 and a["balance"] == 500 * C - 90_730_000
    [e] = run_entries(comfy, acct)
    assert e["kind"] == "settle" and e["node_class"] == "MinimaxTextToVideoNode"
    assert "interrupted after the provider started the task" in e["note"]


def test_interrupt_during_the_create_call_pays_once_the_upstream_answers(comfy):
    acct, key = user(comfy, "during@example.com", 50 * C)
    before = len(comfy.upstream_requests())
    st, body = comfy.queue(dalle("lag please"), key, extra={"api_key_comfy_org": key})
    pid = body["prompt_id"]
    st, q = comfy.http("GET", "/queue")
    assert key not in json.dumps(q)  # the personal key was stripped before queueing
    wait_for(lambda: upstream_saw(comfy, "/images/generations", before), what="create call sent")
    t = time.monotonic()
    comfy.http("POST", "/interrupt", {})
    h = comfy.wait(pid)
    assert time.monotonic() - t < 1.2  # the prompt ends now; the answer is awaited in the background
    assert any(m[0] == "execution_interrupted" for m in h["status"]["messages"])
    wait_for(lambda: balance(comfy, acct)["held"] == 0, what="hold resolved")
    a = balance(comfy, acct)
    assert a["balance"] == 50 * C - 8_440_000  # the upstream generated the image: it is paid for
    [e] = run_entries(comfy, acct)
    assert e["kind"] == "settle" and "interrupted after the provider started the task" in e["note"]


def test_malformed_upstream_answer_after_acceptance_is_charged(comfy):
    acct, key = user(comfy, "garbled@example.com", 50 * C)
    pid = comfy.queue(dalle("garbled answer"), key)[1]["prompt_id"]
    assert comfy.wait(pid)["status"]["status_str"] == "error"
    wait_for(lambda: balance(comfy, acct)["held"] == 0, what="hold resolved")
    [e] = run_entries(comfy, acct)
    assert e["kind"] == "settle" and -e["delta"] == 8_440_000
    assert "failed after the provider accepted the request" in e["note"]


def test_two_prompts_queued_on_credits_for_one(comfy):
    acct, key = user(comfy, "small@example.com", 10 * C)  # enough for one 8.44 run, not two
    # Keep the single worker busy so both prompts wait in the queue.
    busy, bkey = user(comfy, "busy@example.com", 50 * C)
    blocker = comfy.queue(dalle("slow blocker"), bkey)[1]["prompt_id"]
    wait_for(lambda: balance(comfy, busy)["held"], what="blocker running")
    st, body = comfy.queue(dalle("unique 0"), key)
    assert st == 200, body
    first = body["prompt_id"]
    st, bal = comfy.http("GET", "/credits/balance", token=key)
    assert bal["reserved_micro"] == 8_440_000 and bal["available_micro"] == 10 * C - 8_440_000
    # The queue gate counts what the queued prompt reserves: the second is refused now, not mid-run.
    st, body = comfy.queue(dalle("unique 1"), key)
    assert st == 400 and body["error"]["type"] == "insufficient_credits"
    assert "reserved by your queued prompts" in body["error"]["details"]
    assert body["error"]["extra_info"]["reserved_micro"] == 8_440_000
    comfy.http("POST", "/interrupt", {"prompt_id": blocker})
    comfy.wait(blocker)
    assert comfy.wait(first)["status"]["status_str"] == "success"
    a = balance(comfy, acct)
    assert a["balance"] == 10 * C - 8_440_000 and a["held"] == 0
    st, bal = comfy.http("GET", "/credits/balance", token=key)
    assert bal["reserved_micro"] == 0


def test_a_prompt_deleted_from_the_queue_returns_its_reservation(comfy):
    acct, key = user(comfy, "deleted@example.com", 30 * C)
    busy, bkey = user(comfy, "busy2@example.com", 50 * C)
    blocker = comfy.queue(dalle("slow blocker two"), bkey)[1]["prompt_id"]
    wait_for(lambda: balance(comfy, busy)["held"], what="blocker running")
    three = {str(i): dalle(f"three {i}")["1"] for i in (1, 2, 3)}
    three.update({str(i + 3): {"class_type": "PreviewAny", "inputs": {"source": [str(i), 0]}} for i in (1, 2, 3)})
    pid = comfy.queue(three, key)[1]["prompt_id"]

    def reserved():
        return comfy.http("GET", "/credits/balance", token=key)[1]["reserved_micro"]
    assert reserved() == 3 * 8_440_000
    assert comfy.http("POST", "/queue", {"delete": [pid]})[0] == 200
    assert reserved() == 0
    # All of it is available again: the same three-node prompt is admitted and every node runs.
    pid = comfy.queue(three, key)[1]["prompt_id"]
    comfy.http("POST", "/interrupt", {"prompt_id": blocker})
    assert comfy.wait(pid)["status"]["status_str"] == "success"
    assert balance(comfy, acct)["balance"] == 30 * C - 3 * 8_440_000 and reserved() == 0


def test_subclass_nodes_are_metered_under_their_own_name(comfy):
    # Harness order: RecraftCreative (child) before RecraftCrisp (V1), FluxKontextPro (parent) before Max (V3).
    acct, key = user(comfy, "subclass@example.com", 500 * C)
    p = {"1": {"class_type": "RecraftCrispUpscaleNode", "inputs": {"image": ["9", 0]}},
         "2": {"class_type": "RecraftCreativeUpscaleNode", "inputs": {"image": ["9", 0]}},
         "3": {"class_type": "FluxKontextProImageNode", "inputs": {"prompt": "fox", "seed": 1}},
         "4": {"class_type": "FluxKontextMaxImageNode", "inputs": {"prompt": "fox", "seed": 1}},
         "9": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    p.update({str(i + 4): {"class_type": "PreviewAny", "inputs": {"source": [str(i), 0]}} for i in (1, 2, 3, 4)})
    before = len(comfy.upstream_requests())
    st, body = comfy.queue(p, key)
    assert st == 200, body
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    charged = {e["node_class"]: -e["delta"] for e in run_entries(comfy, acct)}
    assert charged == {"RecraftCrispUpscaleNode": 844_000, "RecraftCreativeUpscaleNode": 52_750_000,
                       "FluxKontextProImageNode": 8_440_000, "FluxKontextMaxImageNode": 16_880_000}
    paths = sorted(r["path"] for r in comfy.upstream_requests()[before:])
    assert paths == ["/proxy/bfl/flux-kontext-max/generate", "/proxy/bfl/flux-kontext-pro/generate",
                     "/proxy/recraft/images/creativeUpscale", "/proxy/recraft/images/crispUpscale"]


def upscale_batch(n, cls="RecraftCreativeUpscaleNode"):
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": n, "color": 0}},
            "2": {"class_type": cls, "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


def test_a_batch_node_is_held_for_every_image_it_sends(comfy):
    # RecraftCreativeUpscaleNode calls the upstream once per image of its batch (nodes_recraft.py:1087-1089),
    # 52.75 credits each. The batch of a linked IMAGE is known only at execution.
    acct, key = user(comfy, "batch@example.com", 300 * C)
    before = len(comfy.upstream_requests())
    st, body = comfy.queue(upscale_batch(3), key)
    assert st == 200, body
    assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    assert len(upstream_saw(comfy, "/proxy/recraft/images/creativeUpscale", before)) == 3
    [held] = run_entries(comfy, acct, kinds=("hold",))
    assert held["amount"] == 3 * 52_750_000  # every image's call, not one
    [settled] = run_entries(comfy, acct, kinds=("settle",))
    assert -settled["delta"] == 3 * 52_750_000 and settled["uncollected"] == 0
    a = balance(comfy, acct)
    assert a["balance"] == 300 * C - 3 * 52_750_000 and a["held"] == 0 and a["uncollected_total"] == 0
    # 141.75 left: a batch of four (211) is admitted (one image reserved) but refused before any call is sent.
    before = len(comfy.upstream_requests())
    st, body = comfy.queue(upscale_batch(4), key)
    assert st == 200, body
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "error"
    err = [m for m in h["status"]["messages"] if m[0] == "execution_error"][0][1]
    assert "needs up to 211.00 (4 images, one paid call each)" in err["exception_message"]
    assert not upstream_saw(comfy, "/proxy/recraft/", before)
    a = balance(comfy, acct)
    assert a["balance"] == 300 * C - 3 * 52_750_000 and a["held"] == 0
    assert comfy.http("GET", "/credits/balance", token=key)[1]["reserved_micro"] == 0


def logged_tokens(comfy):
    d = comfy.tmp / "temp" / "api_logs"
    out = []
    for f in sorted(d.glob("*.log")) if d.is_dir() else []:
        for word in f.read_text().replace('"', " ").split():
            if word.startswith("cct1."):
                out.append(word)
    return out


def test_a_run_token_is_bound_to_its_run_and_its_provider(comfy):
    acct, key = user(comfy, "reuse@example.com", 50 * C)
    seen_before = set(logged_tokens(comfy))
    before = len(comfy.upstream_requests())
    pid = comfy.queue(dalle("lag reuse"), key)[1]["prompt_id"]
    # ComfyUI's API client logs request headers (the run token too) under temp/api_logs.
    token = wait_for(lambda: [t for t in logged_tokens(comfy) if t not in seen_before], what="token logged")[0]
    h = {"X-API-KEY": token}
    st, body = comfy.http("POST", "/credits/gateway/proxy/kling/v1/videos/text2video", {"prompt": "x"}, headers=h)
    assert st == 403 and body["error"]["type"] == "credits_path_not_allowed"  # another provider: refused
    st, body = comfy.http("POST", "/credits/gateway/proxy/openai/images/generations",
                          {"model": "dall-e-3", "prompt": "stolen", "n": 1}, headers=h)
    assert st == 200  # the same provider while the run is open: counted and charged to this run
    assert comfy.wait(pid)["status"]["status_str"] == "success"
    st, body = comfy.http("POST", "/credits/gateway/proxy/openai/images/generations",
                          {"model": "dall-e-3", "prompt": "again", "n": 1}, headers=h)
    assert st == 402 and body["error"]["type"] == "credits_hold_resolved"  # dead once the run finished
    [e] = run_entries(comfy, acct)
    # Two generations billed; the person pays at most the 8.44 they were shown, the rest is visible to the operator.
    assert -e["delta"] == 8_440_000 and e["uncollected"] == 8_440_000 and e["amount"] == 2 * 8_440_000
    gens = upstream_saw(comfy, "/images/generations", before)
    assert len(gens) == 2 and not upstream_saw(comfy, "/proxy/kling/", before)


def chat(prompt, model="gpt-4o"):
    return {"1": {"class_type": "OpenAIChatNode", "inputs": {"prompt": prompt, "persist_context": True,
                                                             "model": model}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def test_node_state_never_crosses_accounts(comfy):
    _, bob = user(comfy, "bob@example.com", 2000 * C)
    _, carol = user(comfy, "carol@example.com", 2000 * C)
    log0 = len(comfy.http("GET", "/_sim/responses", port=comfy.up_port)[1])
    for k, text in ((bob, "my password is hunter2"), (carol, "what did I say?"), (bob, "and again?")):
        st, body = comfy.queue(chat(text), k)
        assert st == 200, body
        assert comfy.wait(body["prompt_id"])["status"]["status_str"] == "success"
    log = comfy.http("GET", "/_sim/responses", port=comfy.up_port)[1][log0:]
    assert log[0]["previous_response_id"] is None
    assert log[1]["previous_response_id"] is None  # Carol's request never carries Bob's conversation
    assert log[2]["previous_response_id"] == log[0]["id"]  # Bob's own conversation continues
    # A third-party node that keeps memory on its instance.
    outs = []
    for k, text in ((bob, "secret hunter2"), (carol, "hello"), (bob, "more")):
        p = {"1": {"class_type": "AcmeMemoryChat", "inputs": {"prompt": text}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
        st, body = comfy.queue(p, k)
        h = comfy.wait(body["prompt_id"])
        assert h["status"]["status_str"] == "success", h["status"]
        outs.append(h["outputs"]["2"]["text"][0])
    assert outs == ["memory:", "memory:", "memory:secret hunter2"]


def test_a_client_chosen_prompt_id_never_bills_another_account(comfy):
    victim, vkey = user(comfy, "victim@example.com", 100 * C)
    st, body = comfy.queue(dalle("victim's run"), vkey)
    vid = body["prompt_id"]
    comfy.wait(vid)
    spent = balance(comfy, victim)["spent_total"]
    # No cookie, no key; the prompt has no API node at queue time but runs one while executing
    # (what loop and subgraph packs do), under the victim's public prompt id.
    p = {"1": {"class_type": "AcmeExpander", "inputs": {"factor": 3}},
         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    st, body = comfy.http("POST", "/prompt", {"prompt": p, "prompt_id": vid, "client_id": "evil"})
    assert st == 200 and body["prompt_id"] != vid  # the server never keeps a known id
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "error"
    err = [m for m in h["status"]["messages"] if m[0] == "execution_error"][0][1]
    assert "not linked to a signed-in Credits account" in err["exception_message"]
    assert balance(comfy, victim)["spent_total"] == spent


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


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A second server: 1 s holds and upstream timeout, interrupted runs not charged."""
    tmp = tmp_path_factory.mktemp("strict")
    cfg = tmp / "credits.json"
    cfg.write_text(json.dumps({"hold_ttl_ms": 1000, "upstream_timeout_ms": 1000, "charge_interrupted_runs": False}))
    c = Comfy(tmp, {"COMFY_CREDITS_CONFIG": str(cfg)})
    yield c
    c.close()


def test_a_run_longer_than_the_hold_ttl_keeps_its_hold(strict):
    acct, key = user(strict, "long@example.com", 1000 * C)
    p = {"1": {"class_type": "AcmeSlowStartApi", "inputs": {"prompt": "long"}},  # 1.5 s before its call
         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    pid = strict.queue(p, key)[1]["prompt_id"]
    assert strict.wait(pid)["status"]["status_str"] == "success"
    [e] = run_entries(strict, acct)
    assert e["kind"] == "settle" and -e["delta"] == 422 * C  # not expired under the running node: paid
    with strict.ledger() as led:
        assert not led.history(acct, kinds=["expire"])["entries"]


def test_each_timed_out_call_the_client_retries_is_counted(strict):
    acct, key = user(strict, "timeouts@example.com", 50 * C)
    before = len(strict.upstream_requests())
    pid = strict.queue(dalle("slow to answer"), key)[1]["prompt_id"]
    assert strict.wait(pid)["status"]["status_str"] == "error"  # 504 x 4 (ComfyUI's client retries 3 times)
    wait_for(lambda: balance(strict, acct)["held"] == 0, what="hold resolved")
    assert len(upstream_saw(strict, "/images/generations", before)) == 4
    [e] = run_entries(strict, acct)
    # Four requests the upstream may have accepted: billed 4 x 8.44; the person pays the 8.44 shown, never more.
    assert e["amount"] == 4 * 8_440_000 and -e["delta"] == 8_440_000 and e["uncollected"] == 3 * 8_440_000


def test_operator_may_choose_not_to_charge_interrupted_runs(strict):
    acct, key = user(strict, "spared@example.com", 500 * C)
    before = len(strict.upstream_requests())
    pid = strict.queue(minimax("forever spared"), key)[1]["prompt_id"]
    wait_for(lambda: upstream_saw(strict, "/proxy/minimax/query", before), what="polling")
    strict.http("POST", "/interrupt", {})
    strict.wait(pid)
    wait_for(lambda: balance(strict, acct)["held"] == 0, what="hold resolved")
    a = balance(strict, acct)
    assert a["spent_total"] == 0 and a["uncollected_total"] == 90_730_000  # the operator's loss, counted
    [e] = run_entries(strict, acct)
    assert "not charged (operator setting)" in e["note"]
