"""What the pack adds to ComfyUI's start-up (issue #14): time until the server is ready,
and resident memory once it is, each against the same server started without the pack.

Targets: < 100 ms added to start-up, < 30 MB added RSS.

Starts are interleaved (without, with, without, with, ...); each figure is printed as
min and median over the repetitions, with the baseline beside it. Time is given twice:
wall time until ready, and the CPU time the server's threads used until then (from
/proc/<pid>/task/*/schedstat); on a shared, loaded machine the wall time also counts
waiting for a CPU, the CPU time does not. "Ready" is the line
the server prints once its app has started (every pack's on_startup hook has run):
"harness: listening" (contract harness) or "To see the GUI go to" (real ComfyUI). RSS
is read from /proc/<pid>/status three seconds after ready (VmRSS; VmHWM is the peak), once the pack has
imported what it defers past start-up (pack.PREFETCH_AFTER_S = 2 s after its start hook).

Servers:
  --server harness   tests/comfyui_harness/main.py, the model of ComfyUI used in CI (default)
  --server comfyui   a real ComfyUI checkout: --comfyui DIR --python PYTHON (its venv), e.g.
                     --comfyui /work/comfyui --python /work/comfyui-venv/bin/python (--cpu)
Python's compiled bytecode (--bytecode; both servers alike, ComfyUI's own modules too):
  cached   the .pyc files of an earlier start are there (every start after the first, the usual case):
           written to and read from a cache directory of the bench's own (PYTHONPYCACHEPREFIX), filled by
           the warm-up starts (default)
  none     nothing compiled is kept or read: every module is compiled from source at every start (a first
           start after an install or update, a read-only install, PYTHONDONTWRITEBYTECODE=1 as some Docker
           images set it)
Also prints where the pack's own cost goes (--breakdown, in a bare Python with aiohttp,
which ComfyUI imports anyway): importing comfy_credits_ext (the C core and its libraries),
the glue modules, Runtime (ledger, price table, gateway, runs), and install-time hooks.

Run: python bench/bench_startup.py [--server harness|comfyui] [--reps 5] [--bytecode cached|none]
                                   [--base DIR] [--breakdown]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "tests", "comfyui_harness")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cpu_s(pid):
    """CPU time the process's live threads have used so far (/proc/<pid>/task/*/schedstat, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def start_once(cmd, env, ready_line, timeout_s):
    """Seconds from spawn until ready_line, CPU seconds used by then, and RSS/HWM (kB) three seconds later."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("server exited before ready:\n" + "".join(lines[-30:]))
            lines.append(line)
            if ready_line in line:
                ready_s = time.perf_counter() - t
                cpu = cpu_s(p.pid)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready in time:\n" + "".join(lines[-30:]))
        time.sleep(3.0)  # after the pack's deferred imports (pack.PREFETCH_AFTER_S)
        rss, hwm = proc_status_kb(p.pid, "VmRSS"), proc_status_kb(p.pid, "VmHWM")
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        except ProcessLookupError:
            pass
        p.stdout.close()
    return ready_s, cpu, rss, hwm, "".join(lines)


def bytecode_env(env, bytecode, work):
    """env for Python's bytecode cache as --bytecode says (see the module's doc)."""
    env = dict(env, PYTHONPYCACHEPREFIX=os.path.join(work, f"pycache-{bytecode}"))
    if bytecode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:  # an empty prefix: no __pycache__ of a checkout is read either
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def setups(server, work, comfyui=None, python=None, bytecode="cached", base_pack=None):
    """{name: (cmd, env, ready_line)} for a start without the pack, with it, and (base_pack: another
    checkout of the pack, e.g. main before a change) with that one."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COMFY_CREDITS_UPSTREAM_KEY="bench-operator-key",
               COMFY_CREDITS_UPSTREAM_BASE="http://127.0.0.1:9")
    env.pop("COMFY_CREDITS_DB", None)
    env = bytecode_env(env, bytecode, work)
    out = {}
    for name, pack in (("without", None), ("with", ROOT)) + ((("base", base_pack),) if base_pack else ()):
        base = os.path.join(work, name)
        nodes = os.path.join(base, "custom_nodes")
        os.makedirs(nodes, exist_ok=True)
        os.makedirs(os.path.join(base, "user"), exist_ok=True)
        if pack:
            os.symlink(pack, os.path.join(nodes, "comfy-credits"))
        port = free_port()
        if server == "harness":
            cmd = [sys.executable, os.path.join(HARNESS, "main.py"), "--listen", "127.0.0.1", "--port", str(port),
                   "--user-directory", os.path.join(base, "user"), "--custom-nodes-dir", nodes,
                   "--temp-directory", base]
            ready = "harness: listening"
        else:
            cmd = [python, os.path.join(comfyui, "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                   "--base-directory", base, "--disable-auto-launch"]
            ready = "To see the GUI go to"
        out[name] = (cmd, env, ready)
    return out


def pack_import_seconds(log):
    """ComfyUI's own figure: 'Import times for custom nodes:' ... '<s> seconds: <path>/comfy-credits'
    (not the 'Prestartup times' block before it)."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if "Import times for custom nodes" in line), None)
    if start is None:
        return None
    for line in lines[start + 1:]:
        if "seconds" in line and line.rstrip().endswith("comfy-credits"):
            try:
                return float(line.split()[0])
            except ValueError:
                return None
    return None


def pack_own_cost(log):
    """The pack's own line: 'comfy-credits: start-up cost X ms (...), CPU Y ms' -> (X, Y) in seconds."""
    import re
    m = re.search(r"comfy-credits: start-up cost (\d+) ms .*CPU (\d+) ms, waiting for a CPU (\d+) ms", log)
    return tuple(int(m.group(i)) / 1000 for i in (1, 2, 3)) if m else None


def fmt(xs, unit, scale=1.0, digits=0):
    return f"min {min(xs) * scale:.{digits}f} {unit}, median {statistics.median(xs) * scale:.{digits}f} {unit}"


def bench_server(server, reps, comfyui=None, python=None, bytecode="cached", base_pack=None):
    work = tempfile.mkdtemp(prefix="bench-startup-")
    try:
        st = setups(server, work, comfyui, python, bytecode, base_pack)
        res = {k: {"ready": [], "cpu": [], "rss": [], "hwm": [], "import": [], "own": [], "own_cpu": [], "own_queued": []} for k in st}
        timeout = 60 if server == "harness" else 300
        for name in st:  # warm the page cache (Python, torch) and the bytecode cache, not counted
            start_once(*st[name], timeout)
        for r in range(reps):
            for name in (list(st) if r % 2 == 0 else list(reversed(st))):
                ready, cpu, rss, hwm, log = start_once(*st[name], timeout)
                if name != "without" and "comfy-credits: ready" not in log:
                    raise SystemExit("the pack did not start:\n" + log[-3000:])
                res[name]["ready"].append(ready)
                res[name]["cpu"].append(cpu)
                res[name]["rss"].append(rss)
                res[name]["hwm"].append(hwm)
                imp = pack_import_seconds(log)
                if imp is not None:
                    res[name]["import"].append(imp)
                own = pack_own_cost(log)
                if own:
                    res[name]["own"].append(own[0])
                    res[name]["own_cpu"].append(own[1])
                    res[name]["own_queued"].append(own[2])
        label = "contract harness (tests/comfyui_harness)" if server == "harness" else f"ComfyUI at {comfyui}"
        print(f"{label}: {reps} starts each, interleaved, bytecode {bytecode}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        packs = [("with", f"with the pack ({ROOT})")] + ([("base", f"with the base pack ({base_pack})")]
                                                         if base_pack else [])
        wo = res["without"]
        out = {}
        for name, title in packs:
            w = res[name]
            print(f"  {title}, against the same server without it:")
            d_med = print_added_ms("ready", wo["ready"], w["ready"])
            print(f"  CPU time until ready (all threads; what the start costs, less sensitive to other processes)")
            print_added_ms("", wo["cpu"], w["cpu"])
            if w["own"]:
                print(f"  the pack's own start-up (timed inside the server, from its import to the end of its start hook; "
                      f"what it adds when the rest of the start is the same):")
                print(f"              wall {fmt(w['own'], 'ms', 1000)}; CPU of the thread running it "
                      f"{fmt(w['own_cpu'], 'ms', 1000)}")
                unq = [a - q for a, q in zip(w["own"], w["own_queued"])]
                print(f"              of the wall time, waiting for a CPU (other processes): "
                      f"{fmt(w['own_queued'], 'ms', 1000)}; the rest (CPU + I/O, what an idle machine "
                      f"would take): {fmt(unq, 'ms', 1000)}; target < 100 ms")
            if w["import"]:
                print(f"              ComfyUI's own 'Import times' line for the pack: {fmt(w['import'], 'ms', 1000)}")
            print(f"  RSS         without the pack: {fmt(wo['rss'], 'MiB', 1 / 1024, 1)} (peak {fmt(wo['hwm'], 'MiB', 1 / 1024, 1)})")
            print(f"              with the pack:    {fmt(w['rss'], 'MiB', 1 / 1024, 1)} (peak {fmt(w['hwm'], 'MiB', 1 / 1024, 1)})")
            r_med = (statistics.median(w["rss"]) - statistics.median(wo["rss"])) / 1024
            r_min = (min(w["rss"]) - min(wo["rss"])) / 1024
            print(f"              added: {r_min:+.1f} MiB (min - min), {r_med:+.1f} MiB (median - median); target < 30 MB")
            out[name] = (d_med, r_med)
        return out["with"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_added_ms(label: str, without: list, with_pack: list) -> float:
    """Print one figure (seconds per start) without and with the pack and what the pack adds (min - min,
    median - median) against the 100 ms target; return the median difference in ms."""
    print(f"  {label:<12}without the pack: {fmt(without, 'ms', 1000)}")
    print(f"              with the pack:    {fmt(with_pack, 'ms', 1000)}")
    d_med = (statistics.median(with_pack) - statistics.median(without)) * 1000
    d_min = (min(with_pack) - min(without)) * 1000
    print(f"              added: {d_min:+.0f} ms (min - min), {d_med:+.0f} ms (median - median); target < 100 ms")
    return d_med


BREAKDOWN = r'''
import os, sys, time, tempfile
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
import aiohttp.web  # ComfyUI imports it before any pack
steps = []
def step(name, f):
    t, c, r = time.perf_counter(), time.process_time(), rss()
    out = f()
    steps.append((name, time.perf_counter() - t, time.process_time() - c, rss() - r))
    return out
sys.path.insert(0, sys.argv[1])
step("import comfy_credits_ext (C core + libcurl/OpenSSL/SQLite/cJSON)", lambda: __import__("comfy_credits_ext"))
step("import the glue modules (pack.py and what it imports)", lambda: __import__("comfy_credits_ext.pack"))
from comfy_credits_ext import config
from comfy_credits_ext.runtime import Runtime
d = tempfile.mkdtemp()
cfg = step("config.load", lambda: config.load(db_path=os.path.join(d, "ledger.db")))
rt = step("Runtime(cfg): ledger, price table, gateway, runs", lambda: Runtime(cfg))
step("start_expiry (first expire + thread)", lambda: rt.start_expiry())
for name, s, cpu, kb in steps:
    print(f"{name}\t{s * 1000:.1f}\t{cpu * 1000:.1f}\t{kb / 1024:.1f}")
rt.close()
'''


def breakdown(reps, bytecode="cached"):
    rows = {}
    work = tempfile.mkdtemp(prefix="bench-startup-breakdown-")
    env = bytecode_env(dict(os.environ, COMFY_CREDITS_UPSTREAM_KEY="k"), bytecode, work)
    if bytecode == "cached":  # fill the cache first
        subprocess.run([sys.executable, "-c", BREAKDOWN, ROOT], capture_output=True, check=True, env=env)
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", BREAKDOWN, ROOT], capture_output=True, text=True, check=True,
                             env=env)
        for line in out.stdout.strip().splitlines():
            name, ms, cpu, mib = line.split("\t")
            rows.setdefault(name, []).append((float(ms), float(cpu), float(mib)))
    shutil.rmtree(work, ignore_errors=True)
    print(f"where the pack's start-up goes (bare Python + aiohttp, {reps} runs, bytecode {bytecode}; wall and CPU "
          f"as min / median):")
    tot = [0.0, 0.0]
    for name, xs in rows.items():
        w, c = [x[0] for x in xs], [x[1] for x in xs]
        tot[0] += min(w)
        tot[1] += min(c)
        print(f"  wall {min(w):7.1f} / {statistics.median(w):7.1f} ms  CPU {min(c):7.1f} / {statistics.median(c):7.1f} ms  "
              f"RSS {statistics.median(x[2] for x in xs):+5.1f} MiB  {name}")
    print(f"  sum of the minima: wall {tot[0]:.1f} ms, CPU {tot[1]:.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("harness", "comfyui"), default="harness")
    ap.add_argument("--comfyui", help="ComfyUI checkout (with --server comfyui)")
    ap.add_argument("--python", help="ComfyUI's Python (its venv) (with --server comfyui)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bytecode", choices=("cached", "none"), default="cached",
                    help="compiled bytecode kept between starts (cached, the usual case) or never (none)")
    ap.add_argument("--base", metavar="DIR", help="another checkout of the pack (built in place), started too, "
                    "interleaved in the same rounds: like-for-like before/after")
    ap.add_argument("--breakdown", action="store_true", help="also time the pack's own steps in a bare Python")
    args = ap.parse_args()
    if args.server == "comfyui" and not (args.comfyui and args.python):
        ap.error("--server comfyui needs --comfyui DIR and --python PYTHON")
    if args.breakdown:
        breakdown(args.reps, args.bytecode)
    bench_server(args.server, args.reps, args.comfyui, args.python, args.bytecode,
                 os.path.abspath(args.base) if args.base else None)


if __name__ == "__main__":
    main()
