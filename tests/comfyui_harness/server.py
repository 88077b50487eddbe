"""Mirrors server.py: PromptServer, its middlewares, routes and queue."""
import asyncio
import json
import logging
import os
import ssl
import threading
import traceback
import urllib.parse
import uuid

from aiohttp import web

import execution
import nodes
from comfy_api import feature_flags


def is_loopback(host):
    return host in ("localhost", "127.0.0.1", "::1") or (host or "").startswith("127.")


@web.middleware
async def cache_control(request, handler):  # server.py cache_control (headers only)
    response = await handler(request)
    if request.path.endswith(".js") or request.path.endswith(".css"):
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


def create_origin_only_middleware():
    """server.py:107-141: refuse loopback requests whose Origin host differs
    from Host (a browser tab of another site posting to 127.0.0.1)."""
    @web.middleware
    async def origin_only_middleware(request, handler):
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain = parsed.netloc.lower()
            hp = urllib.parse.urlsplit("//" + host_domain)
            loopback = is_loopback(hp.hostname)
            if parsed.port is None:
                host_domain = hp.hostname
            if hp.port is None:
                origin_domain = parsed.hostname
            if loopback and host_domain and origin_domain and host_domain != origin_domain:
                logging.warning("WARNING: request with non matching host and origin %s != %s, returning 403",
                                host_domain, origin_domain)
                return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)
    return origin_only_middleware


class PromptQueue:
    """server.py/execution.py PromptQueue: a heap of (number, id, prompt,
    extra_data, outputs) with the running items tracked."""

    def __init__(self, server):
        self.server = server
        self.cond = threading.Condition()
        self.queue = []
        self.running = {}
        self.history = {}
        self._task_id = 0

    # Every change calls server.queue_updated() inside the queue's (re-entrant)
    # lock, as execution.py PromptQueue put/get/task_done/wipe_queue/delete_queue_item do.
    def put(self, item):
        with self.cond:
            self.queue.append(item)
            self.queue.sort(key=lambda x: x[0])
            self.server.queue_updated()
            self.cond.notify()

    def get(self, timeout=None):
        with self.cond:
            while not self.queue:
                if not self.cond.wait(timeout):
                    return None
            item = self.queue.pop(0)
            self._task_id += 1
            self.running[self._task_id] = item
            self.server.queue_updated()
            return item, self._task_id

    def task_done(self, item_id, history_result, status):
        with self.cond:
            prompt = self.running.pop(item_id)
            extra = dict(prompt[3])
            for k in execution.SENSITIVE_EXTRA_DATA_KEYS:  # execution.py:1123-1126
                extra.pop(k, None)
            self.history[prompt[1]] = {"prompt": (prompt[0], prompt[1], prompt[2], extra, prompt[4]),
                                       "outputs": history_result.get("outputs", {}), "status": status}
            self.server.queue_updated()

    def wipe_queue(self):  # execution.py:1155-1158
        with self.cond:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, function):  # execution.py:1160-1171
        with self.cond:
            for x in range(len(self.queue)):
                if function(self.queue[x]):
                    if len(self.queue) == 1:
                        self.wipe_queue()
                    else:
                        self.queue.pop(x)
                    self.server.queue_updated()
                    return True
        return False

    def get_current_queue(self):
        with self.cond:
            return list(self.running.values()), list(self.queue)

    def get_current_queue_volatile(self):  # execution.py: the same without deep copies
        with self.cond:
            return list(self.running.values()), list(self.queue)

    def get_tasks_remaining(self):
        with self.cond:
            return len(self.queue) + len(self.running)


class PromptServer:
    instance = None

    def __init__(self, loop):
        PromptServer.instance = self  # server.py:145
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.client_id = None
        self.last_prompt_id = None
        self.last_node_id = None
        self.number = 0
        self.on_prompt_handlers = []
        self.messages = []  # every event sent (event, data, sid), also pushed to /ws clients
        self.sockets = {}
        self.sockets_metadata = {}  # server.py: per-socket client feature flags
        # Harness defaults: no onboarding or missing-node dialogs over a graph of nodes it lacks.
        self.settings = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingNodesWarning": False,
                         "Comfy.Workflow.ShowMissingModelsWarning": False}
        self.web_root = None
        self.prompt_queue = PromptQueue(self)
        # server.py:162-172: the middleware list the app is built with.
        self.app = web.Application(client_max_size=100 * 1024 * 1024,
                                   middlewares=[cache_control, create_origin_only_middleware()])
        routes = self.routes

        @routes.post("/prompt")
        async def post_prompt(request):  # server.py:674-720
            json_data = await request.json()
            json_data = self.trigger_on_prompt(json_data)
            if "number" in json_data:
                number = float(json_data["number"])
            else:
                number = self.number
                if "front" in json_data and json_data["front"]:
                    number = -number
                self.number += 1
            if "prompt" in json_data:
                prompt = json_data["prompt"]
                prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
                valid = await execution.validate_prompt(prompt_id, prompt, None)
                extra_data = {}
                if "extra_data" in json_data:
                    extra_data = json_data["extra_data"]
                if "client_id" in json_data:
                    extra_data["client_id"] = json_data["client_id"]
                if valid[0]:
                    self.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2]))
                    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})
                return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)

        @routes.get("/queue")
        async def get_queue(request):  # server.py:666-672: raw tuples, extra_data included
            running, pending = self.prompt_queue.get_current_queue()
            return web.json_response({"queue_running": running, "queue_pending": pending})

        @routes.post("/queue")
        async def post_queue(request):  # server.py:722-734
            json_data = await request.json()
            if "clear" in json_data and json_data["clear"]:
                self.prompt_queue.wipe_queue()
            if "delete" in json_data:
                for id_to_delete in json_data["delete"]:
                    self.prompt_queue.delete_queue_item(lambda a: a[1] == id_to_delete)
            return web.Response(status=200)

        @routes.get("/history")
        async def get_history(request):
            return web.json_response(self.prompt_queue.history)

        @routes.get("/history/{prompt_id}")
        async def get_history_one(request):
            pid = request.match_info["prompt_id"]
            h = self.prompt_queue.history.get(pid)
            return web.json_response({pid: h} if h else {})

        @routes.post("/interrupt")
        async def post_interrupt(request):  # server.py:736-770
            try:
                json_data = await request.json()
            except json.JSONDecodeError:
                json_data = {}
            prompt_id = json_data.get("prompt_id") if isinstance(json_data, dict) else None
            if prompt_id:
                running, _ = self.prompt_queue.get_current_queue()
                if not any(item[1] == prompt_id for item in running):
                    return web.Response(status=200)
            nodes.interrupt_processing()
            return web.Response(status=200)

        @routes.get("/object_info")
        async def object_info(request):  # server.py:592-640 node_info, incl. info['api_node']
            out = {}
            for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
                inputs = cls.INPUT_TYPES() or {}
                ret = tuple(getattr(cls, "RETURN_TYPES", ()))
                out[name] = {"input": inputs, "input_order": {k: list(v.keys()) for k, v in inputs.items()},
                             "output": ret, "output_is_list": [False] * len(ret), "output_name": ret,
                             "name": name, "display_name": name, "description": "",
                             "python_module": "nodes", "category": getattr(cls, "CATEGORY", "sd"),
                             "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
                             "api_node": getattr(cls, "API_NODE", False) is True}
            return web.json_response(out)

        # What the real frontend asks for while it boots (server.py get_root,
        # user_manager.py /users, app_settings.py /settings, /userdata,
        # /system_stats, /embeddings, /i18n, /features, /ws, GET /prompt).
        @routes.get("/")
        async def get_root(request):
            if not self.web_root:
                return web.Response(text="harness: no --front-end-root")
            return web.FileResponse(os.path.join(self.web_root, "index.html"), headers={"Cache-Control": "no-cache"})

        @routes.get("/users")
        async def get_users(request):
            return web.json_response({"storage": "server", "migrated": True})

        @routes.get("/settings")
        async def get_settings(request):
            return web.json_response(self.settings)

        @routes.get("/settings/{id}")
        async def get_setting(request):
            return web.json_response(self.settings.get(request.match_info["id"]))

        @routes.post("/settings")
        async def post_settings(request):
            self.settings.update(await request.json())
            return web.Response(status=200)

        @routes.post("/settings/{id}")
        async def post_setting(request):
            self.settings[request.match_info["id"]] = await request.json()
            return web.Response(status=200)

        @routes.get("/userdata")
        async def list_userdata(request):
            return web.json_response([])

        @routes.get("/v2/userdata")
        async def list_userdata_v2(request):
            return web.json_response([])

        @routes.get("/userdata/{file}")
        async def get_userdata(request):
            return web.Response(status=404)

        @routes.post("/userdata/{file}")
        async def post_userdata(request):
            await request.read()
            return web.json_response({"path": request.match_info["file"]})

        @routes.get("/system_stats")
        async def system_stats(request):
            return web.json_response({"system": {"os": "posix", "python_version": "3", "embedded_python": False,
                                                 "comfyui_version": "0.3.64", "pytorch_version": "none",
                                                 "argv": ["main.py"], "ram_total": 0, "ram_free": 0},
                                      "devices": []})

        @routes.get("/embeddings")
        async def embeddings(request):
            return web.json_response([])

        @routes.get("/i18n")
        async def i18n(request):
            return web.json_response({})

        @routes.get("/features")
        async def features(request):  # server.py get_features (0.3.64 server.py:584-586)
            return web.json_response(feature_flags.get_server_features())

        @routes.get("/prompt")
        async def get_prompt(request):
            _, pending = self.prompt_queue.get_current_queue()
            return web.json_response({"exec_info": {"queue_remaining": len(pending)}})

        @routes.get("/ws")
        async def websocket_handler(request):  # server.py websocket_handler (0.3.64 server.py:187-245)
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
            self.sockets[sid] = ws
            self.sockets_metadata[sid] = {"feature_flags": {}}
            try:
                await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                               "sid": sid}})
                first_message = True
                async for msg in ws:
                    if msg.type != web.WSMsgType.TEXT:
                        continue
                    try:
                        data = json.loads(msg.data)
                        # The client's first message may be its feature flags; the
                        # server answers with its own (get_server_features()).
                        if first_message and data.get("type") == "feature_flags":
                            self.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                            await ws.send_json({"type": "feature_flags",
                                                "data": feature_flags.get_server_features()})
                        first_message = False
                    except json.JSONDecodeError:
                        logging.warning(f"Invalid JSON received from client {sid}: {msg.data}")
            finally:
                self.sockets.pop(sid, None)
                self.sockets_metadata.pop(sid, None)
            return ws

        @routes.get("/extensions")
        async def extensions(request):  # server.py get_extensions: every *.js, recursively
            import glob
            files = []
            if self.web_root:
                files = ["/" + os.path.relpath(f, self.web_root).replace("\\", "/") for f in
                         glob.glob(os.path.join(glob.escape(self.web_root), "extensions/**/*.js"), recursive=True)]
            for name, d in nodes.EXTENSION_WEB_DIRS.items():
                for f in glob.glob(os.path.join(glob.escape(d), "**/*.js"), recursive=True):
                    files.append(f"/extensions/{name}/" + os.path.relpath(f, d).replace("\\", "/"))
            return web.json_response(files)

    def add_on_prompt_handler(self, handler):
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data):  # server.py:998-1006: exceptions are swallowed
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                logging.warning("[ERROR] An error occurred during the on_prompt_handler processing")
                logging.warning(traceback.format_exc())
        return json_data

    def queue_updated(self):  # server.py queue_updated: a status message to every client
        self.send_sync("status", {"status": {"exec_info": {"queue_remaining": self.prompt_queue.get_tasks_remaining()}}})

    def send_sync(self, event, data, sid=None):  # thread-safe like server.py send_sync
        self.messages.append((event, data, sid))
        if len(self.messages) > 10_000:
            del self.messages[:5_000]
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            self.loop.call_soon_threadsafe(asyncio.ensure_future, ws.send_json({"type": event, "data": data}))

    def add_routes(self):  # server.py:796-814
        api_routes = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        for name, d in nodes.EXTENSION_WEB_DIRS.items():
            self.app.add_routes([web.static("/extensions/" + name, d)])
        self.app.add_routes(api_routes)
        self.app.add_routes(self.routes)
        if self.web_root:  # server.py add_routes: the frontend's files at /
            self.app.add_routes([web.static("/", self.web_root)])

    async def start_multi_address(self, addresses, call_on_start=None, verbose=True):  # server.py:961-991
        from comfy.cli_args import args
        runner = web.AppRunner(self.app, access_log=None)  # on_startup runs here, then the app is frozen
        await runner.setup()
        self.runner = runner
        ssl_ctx = None
        scheme = "http"
        if args.tls_keyfile and args.tls_certfile:
            ssl_ctx = ssl.SSLContext(protocol=ssl.PROTOCOL_TLS_SERVER, verify_mode=ssl.CERT_NONE)
            ssl_ctx.load_cert_chain(certfile=args.tls_certfile, keyfile=args.tls_keyfile)
            scheme = "https"
        for address, port in addresses:
            await web.TCPSite(runner, address, port, ssl_context=ssl_ctx).start()
            if not hasattr(self, "address"):
                self.address = address
                self.port = port
            if verbose:
                logging.info("To see the GUI go to: {}://{}:{}".format(
                    scheme, "[{}]".format(address) if ":" in address else address, port))
        if call_on_start is not None:
            call_on_start(scheme, self.address, self.port)


def prompt_worker(q, server):  # main.py prompt_worker
    e = execution.PromptExecutor(server)
    while True:
        got = q.get(timeout=1000.0)
        if got is None:
            continue
        item, item_id = got
        server.last_prompt_id = item[1]
        e.execute(item[2], item[1], item[3], item[4])
        q.task_done(item_id, e.history_result,
                    status={"status_str": "success" if e.success else "error", "completed": e.success,
                            "messages": e.status_messages})
