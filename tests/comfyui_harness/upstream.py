"""A simulated Comfy.org API (the "upstream") on loopback, for the demo and
the tests: answers the proxy paths the sample API nodes call, realistically.

python tests/comfyui_harness/upstream.py --port N --key OPERATOR_KEY
- 401 unless X-API-KEY is the operator's key;
- OpenAI images: data[n] (tiny PNG as b64_json) + usage tokens;
- Kling: submit -> task id; polls: submitted -> processing -> succeed, the
  final poll carrying X-Comfy-Credits-Used;
- OpenAI Responses (chat): create + retrieve, with usage; the
  previous_response_id each create carried is logged (GET /_sim/responses);
- Recraft upscales and BFL Kontext (pro/max) answer at once (Recraft with a
  URL under /_sim/files/ that serves a PNG, as real ComfyUI downloads it);
- MiniMax: create reports X-Comfy-Credits-Used (90.73 = $0.43) when it
  accepts the task, polls stay "Processing" for a prompt with "forever";
- a prompt containing "fail" gets 400, "boom" 500 (the client retries),
  "slow" waits 10 s, "lag" 1.5 s; GET /_sim/requests lists what arrived (with
  the keys, so tests can assert user tokens never do; the body's "prompt" and
  when it was answered, answered_t, so a kill -9 test can tell a call answered
  before the kill from one still in flight); POST /_sim/reset clears it.
"""
import argparse
import asyncio
import base64
import itertools
import json
import struct
import time
import zlib

from aiohttp import web

KLING_CREDITS_USED = "29.54"  # what the final Kling poll reports (0.14 USD x 211)
MINIMAX_CREDITS_USED = "90.73"  # what MiniMax's create reports (0.43 USD x 211)
USAGE = {"input_tokens": 50, "output_tokens": 4160}


def png():
    raw = b"\x00\xff\x00\x00" * 1

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def response_object(rid, model):
    """An OpenAI Responses object as ComfyUI's OpenAIResponse model parses it (OutputMessage: role, type, content)."""
    return {"id": rid, "object": "response", "status": "completed", "model": model,
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": f"answer {rid}"}]}],
            "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 30,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 50}}


def request_is_images(body):
    return "model" in body and str(body.get("model", "")).startswith(("dall-e", "gpt-image"))


def make_app(key: str) -> web.Application:
    requests, tasks, responses_log, mm_tasks = [], {}, [], {}
    ids = itertools.count(1)

    @web.middleware
    async def record(request, handler):
        if request.path.startswith("/_sim/"):
            return await handler(request)
        prompt = None
        if request.can_read_body and request.content_type == "application/json":  # cached: the handler reads it again
            try:
                body = json.loads(await request.read())
                prompt = body.get("prompt") if isinstance(body, dict) else None
            except ValueError:
                pass
        rec = {"method": request.method, "path": request.path, "t": time.time(),
               "x_api_key": request.headers.get("X-API-KEY"), "authorization": request.headers.get("Authorization"),
               "idempotency_key": request.headers.get("Idempotency-Key"), "prompt": prompt, "answered_t": None}
        requests.append(rec)
        if request.headers.get("X-API-KEY") != key:
            return web.json_response({"error": {"message": "Invalid API key", "type": "unauthorized"}}, status=401)
        resp = await handler(request)
        rec["answered_t"] = time.time()  # when the answer was handed to aiohttp (tests compare it with a kill -9)
        return resp

    async def behaviour(body):
        text = str(body.get("prompt", ""))
        if "slow" in text:
            await asyncio.sleep(10)
        if "lag" in text:
            await asyncio.sleep(1.5)
        if "garbled" in text and request_is_images(body):
            return web.Response(text="<html>upstream proxy error page</html>", content_type="text/html")
        if "fail" in text:
            return web.json_response({"error": {"message": "content policy violation", "type": "invalid_request"}},
                                     status=400)
        if "boom" in text:
            return web.json_response({"error": {"message": "upstream exploded", "type": "server_error"}}, status=500)
        return None

    async def images(request):
        body = await request.json()
        bad = await behaviour(body)
        if bad:
            return bad
        await asyncio.sleep(0.2)  # long enough for concurrent nodes to overlap
        n = int(body.get("n", 1))
        out = {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(png()).decode()}] * n}
        if body.get("model") == "gpt-image-1":
            out["usage"] = USAGE
        return web.json_response(out)

    async def kling_submit(request):
        body = await request.json()
        bad = await behaviour(body)
        if bad:
            return bad
        tid = f"task{next(ids)}"
        tasks[tid] = 0
        return web.json_response({"code": 0, "data": {"task_id": tid, "task_status": "submitted"}})

    async def kling_poll(request):
        tid = request.match_info["tid"]
        if tid not in tasks:
            return web.json_response({"error": {"message": "no such task"}}, status=404)
        tasks[tid] += 1
        if tasks[tid] < 3:
            return web.json_response({"code": 0, "data": {"task_id": tid, "task_status": "processing"}})
        return web.json_response({"code": 0, "data": {"task_id": tid, "task_status": "succeed", "task_result": {
            "videos": [{"id": "v1", "url": f"http://127.0.0.1/videos/{tid}.mp4", "duration": "5"}]}}},
            headers={"X-Comfy-Credits-Used": KLING_CREDITS_USED})

    async def responses_create(request):
        body = await request.json()
        text = json.dumps(body.get("input", ""))
        bad = await behaviour({"prompt": text})
        if bad:
            return bad
        rid = f"resp_{next(ids)}"
        responses_log.append({"id": rid, "previous_response_id": body.get("previous_response_id"), "input": text})
        return web.json_response(response_object(rid, body.get("model")))

    async def responses_get(request):
        return web.json_response(response_object(request.match_info["rid"], "gpt-4o"))

    async def recraft(request):
        # The image is fetched from the returned URL (nodes_recraft.py download_url_to_bytesio), without a key.
        # The shape of ComfyUI 0.3.64's RecraftImageGenerationResponse (apis/recraft_api.py:253-262).
        n = next(ids)
        return web.json_response({"created": int(time.time()), "credits": 1,
                                  "image": {"image_id": f"recraft{n}",
                                            "url": f"http://{request.host}/_sim/files/recraft{n}.png"}})

    async def sim_file(request):
        return web.Response(body=png(), content_type="image/png")

    async def bfl(request):
        body = await request.json()
        bad = await behaviour(body)
        if bad:
            return bad
        return web.json_response({"id": f"bfl{next(ids)}", "result": {"sample": "http://127.0.0.1/bfl.png"}})

    async def minimax_create(request):
        body = await request.json()
        bad = await behaviour(body)
        if bad:
            return bad
        tid = f"mm{next(ids)}"
        mm_tasks[tid] = [0, "forever" in str(body.get("prompt", ""))]
        return web.json_response({"task_id": tid, "base_resp": {"status_code": 0, "status_msg": "success"}},
                                 headers={"X-Comfy-Credits-Used": MINIMAX_CREDITS_USED})

    async def minimax_query(request):
        t = mm_tasks.get(request.query.get("task_id", ""))
        if t is None:
            return web.json_response({"error": {"message": "no such task"}}, status=404)
        t[0] += 1
        ok = {"status_code": 0, "status_msg": "success"}  # apis MinimaxTaskResultResponse needs base_resp
        if t[1] or t[0] < 3:
            return web.json_response({"task_id": request.query["task_id"], "status": "Processing", "base_resp": ok})
        return web.json_response({"task_id": request.query["task_id"], "status": "Success", "file_id": "f1",
                                  "base_resp": ok})

    async def minimax_file(request):
        return web.json_response({"base_resp": {"status_code": 0, "status_msg": "success"},
                                  "file": {"file_id": 1, "download_url": "http://127.0.0.1/mm.mp4"}})

    async def acme(request):  # a third-party provider behind the same proxy
        body = await request.json()
        bad = await behaviour(body)
        if bad:
            return bad
        if "garbled" in str(body.get("prompt", "")):
            return web.Response(text="<html>not json</html>", content_type="text/html")
        return web.json_response({"ok": True, "echo": body})

    async def sim_responses(request):
        return web.json_response(responses_log)

    async def sim_requests(request):
        return web.json_response(requests)

    async def sim_reset(request):
        requests.clear()
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[record])
    app.router.add_post("/proxy/openai/images/generations", images)
    app.router.add_post("/proxy/kling/v1/videos/text2video", kling_submit)
    app.router.add_get("/proxy/kling/v1/videos/text2video/{tid}", kling_poll)
    app.router.add_post("/proxy/openai/v1/responses", responses_create)
    app.router.add_get("/proxy/openai/v1/responses/{rid}", responses_get)
    app.router.add_post("/proxy/recraft/images/{tool}", recraft)
    app.router.add_post("/proxy/bfl/{model}/generate", bfl)
    app.router.add_post("/proxy/minimax/video_generation", minimax_create)
    app.router.add_get("/proxy/minimax/query/video_generation", minimax_query)
    app.router.add_get("/proxy/minimax/files/retrieve", minimax_file)
    app.router.add_post("/proxy/acme/{tool}", acme)
    app.router.add_get("/_sim/responses", sim_responses)
    app.router.add_get("/_sim/requests", sim_requests)
    app.router.add_post("/_sim/reset", sim_reset)
    app.router.add_get("/_sim/files/{name}", sim_file)
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    a = ap.parse_args()
    print(f"upstream: listening on http://127.0.0.1:{a.port}", flush=True)
    web.run_app(make_app(a.key), host="127.0.0.1", port=a.port, print=None, access_log=None)
