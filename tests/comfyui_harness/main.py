"""Mirrors main.py start_comfyui: the order the pack relies on.

python tests/comfyui_harness/main.py --listen 127.0.0.1 --port N \
    --user-directory DIR --custom-nodes-dir DIR [--comfy-api-base URL]
Prints "harness: listening on http://HOST:PORT" when ready.
"""
import asyncio
import importlib.util
import logging
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from comfy.cli_args import args, parse  # noqa: E402


def execute_prestartup_script(custom_nodes_dir):  # main.py:60-100
    if not custom_nodes_dir or not os.path.isdir(custom_nodes_dir):
        return
    for name in os.listdir(custom_nodes_dir):
        script = os.path.join(custom_nodes_dir, name, "prestartup_script.py")
        if os.path.isfile(script):
            try:
                spec = importlib.util.spec_from_file_location(os.path.splitext(script)[0], script)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except Exception as e:
                logging.error(f"Failed to execute startup-script: {script} / {e}")


def main(argv):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parse(argv)
    import folder_paths
    if args.user_directory:
        folder_paths.set_user_directory(os.path.abspath(args.user_directory))
    if args.temp_directory:  # main.py: set_temp_directory(os.path.join(abspath(args.temp_directory), "temp"))
        folder_paths.set_temp_directory(os.path.join(os.path.abspath(args.temp_directory), "temp"))
    execute_prestartup_script(args.custom_nodes_dir)  # before server/nodes are imported (main.py:104)
    import nodes
    import server
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prompt_server = server.PromptServer(loop)  # main.py:315
    prompt_server.web_root = args.front_end_root
    loop.run_until_complete(nodes.init_extra_nodes(args.custom_nodes_dir,
                                                   init_api_nodes=not args.disable_api_nodes))  # main.py:318
    prompt_server.add_routes()  # main.py:327
    threading.Thread(target=server.prompt_worker, daemon=True,
                     args=(prompt_server.prompt_queue, prompt_server)).start()  # main.py:330

    async def start():  # main.py:239-245 run(): one site per comma-separated --listen address
        addresses = [(addr, args.port) for addr in args.listen.split(",")]
        await prompt_server.start_multi_address(addresses)
        scheme = "https" if args.tls_keyfile and args.tls_certfile else "http"
        print(f"harness: listening on {scheme}://{args.listen}:{args.port}", flush=True)
        return prompt_server.runner
    runner = loop.run_until_complete(start())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    loop.run_until_complete(runner.cleanup())


if __name__ == "__main__":
    main(sys.argv[1:])
