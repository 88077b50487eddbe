"""Mirrors comfy_api_nodes/apis/client.py (ApiClient / SynchronousOperation):
the behaviour an API call has on the wire and in its errors."""
import asyncio
import json
import os
import uuid
from urllib.parse import urljoin

import aiohttp

from comfy.cli_args import args

RETRY_STATUS = (408, 429, 500, 502, 503, 504)  # client.py retry list
RETRIES_MAX = 3
RETRY_DELAY_S = float(os.environ.get("HARNESS_RETRY_DELAY_S", "0.05"))  # real: 1 s, doubling


def _check_auth(auth_token, comfy_api_key):  # client.py:463-467: before any network call
    if auth_token is None and comfy_api_key is None:
        raise Exception("Unauthorized: Please login first to use this node.")


def _friendly(status, body):  # client.py _handle_http_error (563-582)
    if status == 401:
        return "Unauthorized: Please login first to use this node."
    if status == 402:
        return "Payment Required: Please add credits to your account to use this node."
    if status == 409:
        return "There is a problem with your account. Please contact support@comfy.org."
    if status == 429:
        return "Rate Limit Exceeded: Please try again later."
    try:
        err = json.loads(body).get("error", {})
        if isinstance(err, dict) and err.get("message"):
            return f"API Error: {err['message']} (Type: {err.get('type', 'unknown')})"
    except (ValueError, AttributeError):
        pass
    return f"API Error: {body[:200]}"


def _log_request(method, url, headers, data):
    """apis/request_logger.py log_request_response: each request, headers
    included (so the run token too), is written under temp/api_logs, which
    GET /view?type=temp serves."""
    import folder_paths
    try:
        d = os.path.join(folder_paths.get_temp_directory(), "api_logs")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{uuid.uuid4().hex}_{method}.log"), "w") as f:
            f.write(f"Request URL: {url}\nRequest Headers: {json.dumps(headers)}\n"
                    f"Request Body: {json.dumps(data)[:2000]}\n")
    except OSError:
        pass


async def request(method, path, *, auth_token=None, comfy_api_key=None, data=None, timeout_s=60):
    """Returns (json body, headers). Base URL read on every call (client.py:703)."""
    _check_auth(auth_token, comfy_api_key)
    url = urljoin(args.comfy_api_base, path.lstrip("/"))  # client.py:351
    headers = {"Content-Type": "application/json", "Accept": "application/json"}  # get_headers (267-275)
    if auth_token:
        headers["Authorization"] = f"Bearer {auth_token}"
    elif comfy_api_key:
        headers["X-API-KEY"] = comfy_api_key
    if method != "GET":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    _log_request(method, url, headers, data)
    delay = RETRY_DELAY_S
    for attempt in range(RETRIES_MAX + 1):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            async with s.request(method, url, json=data if method != "GET" else None, headers=headers) as r:
                body = await r.text()
                if r.status in RETRY_STATUS and attempt < RETRIES_MAX:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                if r.status >= 400:
                    raise Exception(_friendly(r.status, body))
                return json.loads(body) if body else {}, dict(r.headers)
