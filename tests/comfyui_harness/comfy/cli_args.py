"""Mirrors comfy/cli_args.py: the parsed `args` namespace ComfyUI code reads."""
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--listen", default="127.0.0.1", nargs="?", const="0.0.0.0,::")  # cli_args.py:38
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--user-directory", default=None)
parser.add_argument("--temp-directory", default=None)  # cli_args.py: its parent gets temp/
parser.add_argument("--custom-nodes-dir", default=None)  # harness only: where packs are loaded from
parser.add_argument("--comfy-api-base", default="https://api.comfy.org")  # cli_args.py:206-210
parser.add_argument("--disable-api-nodes", action="store_true")
parser.add_argument("--front-end-root", default=None)
parser.add_argument("--max-upload-size", type=float, default=100)  # cli_args.py:43
parser.add_argument("--multi-user", action="store_true")
parser.add_argument("--tls-keyfile", default=None)
parser.add_argument("--tls-certfile", default=None)
args = parser.parse_args([])


def parse(argv):
    global args
    ns = parser.parse_args(argv)
    for k, v in vars(ns).items():
        setattr(args, k, v)
    return args
