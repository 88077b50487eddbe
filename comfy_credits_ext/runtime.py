"""The running extension: one object that owns the ledger, prices, gateway
and the run state machine (src/run.c), and remembers which account the
server bound to each prompt it admitted.

Everything here is glue around `_core`; the money rules live in C. Blocking
calls into `_core` release the GIL; async callers use `asyncio.to_thread`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict

from . import _core
from . import config as config_mod

log = logging.getLogger("comfy_credits")

PROMPTS_REMEMBERED_MAX = 100_000  # prompt -> account entries kept (oldest dropped first)
RESERVATION_UNSEEN_S_MAX = 60.0   # a reservation whose prompt never reached the queue is dropped after this
FINISH_THREADS_MAX = 8            # runs being resolved at once (each may wait for a call in flight)
EXPIRY_INTERVAL_S_MAX = 60.0
RETRY_S_MIN, RETRY_S_MAX = 0.5, 15.0  # farm mode: ledger unreachable, tried again after this, doubling


class Runtime:
    def __init__(self, cfg: config_mod.Config):
        self.cfg = cfg
        if not cfg.farm:
            cfg.database.parent.mkdir(parents=True, exist_ok=True)
        # Farm mode: servers may start before PostgreSQL. The ledger then opens unconnected and
        # refuses every call (API-node runs get 503 credits_unavailable) until PostgreSQL answers;
        # the expiry thread keeps trying with a backoff (start_expiry). Bad URIs, a wrong password or
        # a missing database still stop the pack at start-up with one line.
        self.ledger = _core.Ledger(str(cfg.database), wait_for_database=cfg.farm)
        self.ledger_reachable = True
        # TEST credits (sandbox purchases) never pay for a real upstream.
        self.ledger.set_test_spendable(cfg.upstream_simulated)
        self.prices = _core.PriceTable(cfg.price_table_text())
        self.gateway = _core.Gateway(cfg.upstream_base, cfg.upstream_key, timeout_ms=cfg.upstream_timeout_ms,
                                     io_sched=cfg.gateway_io_sched)
        self.listener = None  # the C listener serving the gateway (gateway_route.NativeSite), if started
        # finish() waits for calls in flight at most as long as one upstream call may take.
        self.runs = _core.Runs(self.ledger, self.prices, cfg.hold_ttl_ms,
                               min(cfg.upstream_timeout_ms + 5_000, 3_600_000), cfg.charge_interrupted_runs)
        self.finish_pool = concurrent.futures.ThreadPoolExecutor(max_workers=FINISH_THREADS_MAX,
                                                                 thread_name_prefix="comfy-credits-finish")
        self._prompts: OrderedDict[str, int] = OrderedDict()
        self._prompt_keys: dict[str, int] = {}  # prompt id -> the personal API key it came with (its cap)
        self._pseudonym_key = secrets.token_bytes(32)
        self._reserved: dict[str, list] = {}  # prompt id -> [reserved at (monotonic s), seen in the queue]
        self._lock = threading.Lock()
        self._expirer: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- prompt -> account: bound when the server admits a prompt under an id
    # it chose (gate.py); read by the worker thread. Never from a client's id.

    def knows_prompt(self, prompt_id: str) -> bool:
        with self._lock:
            return prompt_id in self._prompts

    def remember_prompt(self, prompt_id: str, account_id: int, key_id: int | None = None) -> None:
        with self._lock:
            self._prompts[prompt_id] = account_id
            self._prompts.move_to_end(prompt_id)
            if key_id:
                self._prompt_keys[prompt_id] = key_id
            while len(self._prompts) > PROMPTS_REMEMBERED_MAX:
                self._prompt_keys.pop(self._prompts.popitem(last=False)[0], None)

    def prompt_key(self, prompt_id: str | None) -> int | None:
        """The personal API key a prompt was queued with (its runs' holds count against its cap), or None."""
        if not prompt_id:
            return None
        with self._lock:
            return self._prompt_keys.get(prompt_id)

    def account_pseudonym(self, account_id: int) -> str:
        """A stable, opaque name for an account (keyed per process): says "same person"
        to whoever sees two prompts, never which account."""
        return hashlib.blake2b(str(account_id).encode(), key=self._pseudonym_key, digest_size=8).hexdigest()

    def prompt_account(self, prompt_id: str | None) -> int | None:
        if not prompt_id:
            return None
        with self._lock:
            return self._prompts.get(prompt_id)

    # ---- reservations of admitted prompts (credits held back for their API nodes)

    def reserve_prompt(self, prompt_id: str, account_id: int, micro: int, wait: bool = True) -> bool:
        """Raises InsufficientCredits when the account's unreserved credits do not cover it.
        wait=True blocks (call it from a thread); wait=False never waits (the event loop may
        call it) and returns False, reserving nothing, when the answer needs waiting."""
        if not self.runs.reserve(prompt_id, account_id, micro, wait=wait):
            return False
        with self._lock:
            self._reserved[prompt_id] = [time.monotonic(), False]
        return True

    def release_prompt(self, prompt_id: str) -> int:
        with self._lock:
            self._reserved.pop(prompt_id, None)
        left = self.runs.release(prompt_id)
        if self.cfg.farm:  # the row other servers count goes too, off this (maybe the event loop's) thread
            try:
                self.finish_pool.submit(self._unshare, prompt_id)
            except RuntimeError:  # the pool is shut down (server closing): the row expires by itself at hold_ttl_ms
                log.info("comfy-credits: shutting down; the shared reservation of prompt %s expires by itself", prompt_id)
        return left

    def _unshare(self, prompt_id: str) -> None:
        try:
            self.runs.unshare(prompt_id)
        except _core.CreditsError as exc:  # the row expires by itself; it only ever makes answers smaller
            log.warning("comfy-credits: could not drop the shared reservation of prompt %s: %s", prompt_id, exc)

    async def reserved_now(self, account_id: int) -> int:
        """What the account's queued prompts reserve: here, and in farm mode on every other server too
        (read over the network, off the event loop)."""
        if not self.cfg.farm:
            return self.runs.reserved(account_id)
        elsewhere = await asyncio.to_thread(self.runs.reserved_elsewhere, account_id)
        return self.runs.reserved(account_id) + elsewhere

    def reservations_of(self, account_id: int) -> list[dict]:
        """The account's queued prompts that still reserve credits, oldest first."""
        with self._lock:
            mine = [pid for pid in self._reserved if self._prompts.get(pid) == account_id]
        out = []
        for pid in mine:
            left = self.runs.reservation(pid)
            if left:  # None once released
                out.append({"prompt_id": pid, "reserved_micro": left})
        return out

    def reconcile_reservations(self, live_prompt_ids) -> None:
        """Returns what prompts that ended, were cancelled or deleted from the
        queue had not used (called whenever ComfyUI's queue changes)."""
        now = time.monotonic()
        gone = []
        with self._lock:
            for pid, st in self._reserved.items():
                if pid in live_prompt_ids:
                    st[1] = True
                elif st[1] or now - st[0] > RESERVATION_UNSEEN_S_MAX:
                    gone.append(pid)
        for pid in gone:
            self.release_prompt(pid)

    # ---- identity

    def account_for_token(self, token: str | None) -> dict | None:
        """The active account a session or API key belongs to, else None."""
        if not token or not token.startswith(("ccs_", "cck_")):
            return None
        try:
            return self.ledger.check_credential(token)["account"]
        except (_core.NotFound, _core.InvalidState):
            return None

    # ---- pricing

    def estimate(self, node_class: str, inputs: dict) -> dict:
        est = self.prices.estimate(node_class, inputs)
        if est["used_default"]:
            log.warning("comfy-credits: no price rule for API node %s; charging the default %s credits",
                        node_class, _core.format_credits(est["micro"]))
        return est

    def hold_many(self, items: list) -> list:
        """estimate_many() for admission: per node (micro, used_default), or the exception
        estimate() would raise (returned, not raised); no 7-key dict per node."""
        return self.hold_total(items)[1]

    def hold_total(self, items: list) -> tuple:
        """(total, hold_many(items)): total is the sum of the nodes' micro-credits, None when a node
        cannot be priced. Logs each node priced at the default price, as estimate() does."""
        holds = self.prices.hold_many(items)
        micros = [h[0] for h in holds if type(h) is tuple and not h[1]]
        if len(micros) == len(holds):  # every node priced by a rule: the usual case, one pass
            return sum(micros), holds
        for (node_class, _), h in zip(items, holds):
            if type(h) is tuple and h[1]:
                log.warning("comfy-credits: no price rule for API node %s; charging the default %s credits",
                            node_class, _core.format_credits(h[0]))
        if any(type(h) is not tuple for h in holds):
            return None, holds
        return sum(h[0] for h in holds), holds

    # ---- housekeeping

    def start_expiry(self, interval_s: float = 60.0) -> None:
        """Releases holds left behind by crashes: at start-up, then periodically.
        While the ledger's database is unreachable it retries sooner, with a doubling backoff."""
        try:
            n = self.ledger.expire()
            if n:
                log.info("comfy-credits: released %d expired hold(s) at start-up", n)
        except _core.StorageError as exc:
            if not self.cfg.farm:
                raise
            self.ledger_reachable = False
            log.error("comfy-credits: %s; API-node runs are refused until it answers (retrying)", exc)

        interval_s = min(interval_s, EXPIRY_INTERVAL_S_MAX, max(0.5, self.cfg.hold_ttl_ms / 4000))

        def loop():
            retry_s = RETRY_S_MIN
            while not self._stop.wait(interval_s if self.ledger_reachable else retry_s):
                try:
                    self.runs.keepalive()  # a run still going never loses its hold
                    self.ledger.expire()
                    if not self.ledger_reachable:
                        log.info("comfy-credits: ledger %s reachable again; API-node runs accepted",
                                 self.cfg.database_shown)
                    self.ledger_reachable, retry_s = True, RETRY_S_MIN
                except _core.StorageError as exc:
                    if self.ledger_reachable:
                        log.error("comfy-credits: expiring holds failed: %s", exc)
                    self.ledger_reachable, retry_s = False, min(retry_s * 2, RETRY_S_MAX)
                except _core.CreditsError as exc:  # keep running; say why
                    log.error("comfy-credits: expiring holds failed: %s", exc)

        self._expirer = threading.Thread(target=loop, name="comfy-credits-expiry", daemon=True)
        self._expirer.start()

    def close(self) -> None:
        self._stop.set()
        if self._expirer:
            self._expirer.join(timeout=5)
        self.finish_pool.shutdown(wait=True)
        if self.listener is not None:  # before the runs and the gateway it serves
            self.listener.close()
            self.listener = None
        self.runs.close()
        from .gateway_route import release_waiters  # the gateway's notify socket, if a route made one
        release_waiters(self.gateway)
        self.gateway.close()
        self.ledger.close()


def audit_path(cfg) -> str:
    """The audit log lives beside the ledger, in its own file (farm mode: a local file in the
    configuration's folder, as the ledger is then a PostgreSQL URI)."""
    from pathlib import Path
    db = Path(cfg.attention_path)
    return str(db.with_name(db.stem + ".audit.db"))


def open_audit(cfg):
    """The admin actions' audit log (src/audit.h)."""
    return _core.AuditLog(audit_path(cfg))


def now_ms() -> int:
    return int(time.time() * 1000)
