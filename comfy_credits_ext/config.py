"""Operator configuration: one JSON file plus environment variables.

Resolution order for every setting: command-line flag, environment variable,
config file, built-in default. Secrets (upstream key, Stripe keys) are read
only from the environment, never from the file, so the file can be shared.

Config file (JSON, every key optional):

    {
      "database": "/path/to/ledger.db",     (or "postgresql://user@host:5432/credits": farm mode)
      "price_table": "/path/to/prices.json",
      "rates": {"usd": "211", "eur": "229.5"},
      "hold_ttl_ms": 3600000,
      "upstream_base": "https://api.comfy.org",
      "upstream_timeout_ms": 600000,
      "charge_interrupted_runs": true,
      "session_ttl_ms": 2592000000,
      "purchase_min_usd": "1",
      "purchase_max_usd": "1000",
      "sandbox_checkout": false,
      "stripe_api_base": "https://api.stripe.com",
      "stripe_api_version": "2026-10-28.endive",
      "public_url": "https://comfy.example.com",
      "allow_signup": false,
      "trusted_proxies": ["127.0.0.1"],
      "gateway_listener": "native",
      "gateway_io_sched": "batch"
    }

`gateway_listener` (or COMFY_CREDITS_GATEWAY_LISTENER): who serves the private
loopback listener ComfyUI's API-node client calls: "native" (default; the C
listener on the gateway's I/O thread, src/listener.c) or "aiohttp" (the Python
route, gateway_route.py: the fallback, also used when the native one cannot
start).

`gateway_io_sched`: how the gateway's I/O thread is scheduled: "batch"
(default; SCHED_BATCH on Linux: woken by a socket it does not preempt the
task on the CPU, it handles what came when that task yields; ComfyUI and a
local upstream are not preempted per call) or "normal" (the OS's default,
lower wake-up latency on a CPU that stays busy). See src/gateway.h.

`public_url` decides every absolute link handed out (Stripe return URLs,
the sandbox page); without it only a loopback Host or one of `allowed_hosts`
is used, never an arbitrary Host header. An https public_url also makes the
session cookie Secure (for TLS-terminating proxies).

`trusted_proxies`: addresses or networks of reverse proxies in front of
ComfyUI. Only when the TCP peer is one of them is the client address read
from X-Forwarded-For (for the sign-in throttle); otherwise everyone behind a
proxy counts as the proxy's one address.

Secrets come only from the environment: COMFY_CREDITS_UPSTREAM_KEY (the
operator's Comfy.org API key that pays the providers), STRIPE_SECRET_KEY and
STRIPE_WEBHOOK_SECRET.

Free credits are never the default. The sandbox checkout (TEST MODE, no
Stripe key) runs only when `sandbox_checkout` is true, or, when it is not set,
when the upstream is the simulated one (upstream_base on loopback, as
`scripts/run` starts it). What it sells are TEST credits: their own entry kind,
never counted as paid, shown as TEST, and unusable against a real upstream.
Starting with the sandbox on and COMFY_CREDITS_UPSTREAM_KEY set for a real
upstream is refused (see start_problem). Stripe test-mode keys (sk_test_)
also sell TEST credits.

`rates` maps an ISO currency to credits per major unit as a decimal string
(no floats on the money path); USD defaults to 211, Comfy.org's rate.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import _core

ENV_DB = "COMFY_CREDITS_DB"
ENV_CONFIG = "COMFY_CREDITS_CONFIG"
CONFIG_FILE_NAME = "config.json"
DB_FILE_NAME = "ledger.db"
# Farm mode: several ComfyUI servers share one PostgreSQL ledger (src/store_pg.c).
PG_SCHEMES = ("postgresql://", "postgres://")
# Farm mode: the name of the local file the needs-attention list of purchases used to live in
# (attention.py now keeps it in the ledger and moves this file's open rows there once); the
# audit log (admin.py) is a local file named after it.
ATTENTION_FILE_NAME = "purchase-attention.db"
DATA_DIR_NAME = "comfy_credits"  # inside ComfyUI's user directory

KNOWN_KEYS = {"database", "price_table", "rates", "hold_ttl_ms", "upstream_base", "upstream_timeout_ms",
              "charge_interrupted_runs", "charge_failed_runs", "session_ttl_ms", "purchase_min_usd",
              "purchase_max_usd", "sandbox_checkout", "stripe_api_base", "stripe_api_version", "public_url",
              "allow_signup", "trusted_proxies", "allowed_hosts", "gateway_listener",
              "gateway_io_sched"}
ENV_STRIPE_KEY = "STRIPE_SECRET_KEY"
ENV_STRIPE_WEBHOOK_SECRET = "STRIPE_WEBHOOK_SECRET"
ENV_STRIPE_API_BASE = "COMFY_CREDITS_STRIPE_API_BASE"
ENV_STRIPE_API_VERSION = "COMFY_CREDITS_STRIPE_API_VERSION"
ENV_UPSTREAM_KEY = "COMFY_CREDITS_UPSTREAM_KEY"
ENV_UPSTREAM_BASE = "COMFY_CREDITS_UPSTREAM_BASE"
ENV_GATEWAY_LISTENER = "COMFY_CREDITS_GATEWAY_LISTENER"
GATEWAY_LISTENERS = ("native", "aiohttp")
GATEWAY_IO_SCHEDS = ("batch", "normal")  # _core.Gateway(io_sched=...)
UPSTREAM_BASE_DEFAULT = "https://api.comfy.org"
SESSION_TTL_MS_DEFAULT = 30 * 24 * 3600 * 1000
HOLD_TTL_MS_DEFAULT = 60 * 60 * 1000  # one hour: longer than any API node's own timeout
HOLD_TTL_MS_MAX = 7 * 24 * 3600 * 1000

SHIPPED_PRICES = Path(__file__).with_name("prices.json")


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def is_pg_uri(value) -> bool:
    return isinstance(value, str) and value.startswith(PG_SCHEMES)


def shown_database(db) -> str:
    """The database for messages and logs: a PostgreSQL URI without its
    password or query (which may carry one); a file path as it is."""
    if not is_pg_uri(db):
        return str(db)
    try:
        u = urlsplit(db)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
        user = f"{u.username}@" if u.username else ""
    except ValueError:
        return "postgresql://(malformed)"
    return f"postgresql://{user}{host}{port}{u.path}"


@dataclass
class Config:
    database: Path | str = field(repr=False)  # a file path, or a postgresql:// URI (may carry a password)
    price_table: Path = SHIPPED_PRICES
    rates_micro: dict[str, int] = field(default_factory=lambda: {"usd": 211 * _core.MICRO})
    hold_ttl_ms: int = HOLD_TTL_MS_DEFAULT
    upstream_base: str = UPSTREAM_BASE_DEFAULT
    upstream_timeout_ms: int = 600_000
    # A run pays what the upstream billed for requests it accepted, whether it
    # succeeded, failed or was interrupted (src/run.h). False: interrupted runs
    # are not charged and what the upstream billed is recorded as uncollected.
    charge_interrupted_runs: bool = True
    session_ttl_ms: int = SESSION_TTL_MS_DEFAULT
    purchase_min_usd_cents: int = 100        # $1, Comfy.org's minimum
    purchase_max_usd_cents: int = 100_000    # $1,000, Comfy.org's maximum
    sandbox_checkout: bool | None = None     # None: on only with the simulated upstream (and no Stripe key)
    stripe_api_base: str = "https://api.stripe.com"
    # The Stripe-Version sent on every request (and the one to give the webhook endpoint).
    stripe_api_version: str = field(default_factory=_core.stripe_api_version_default)
    public_url: str | None = None            # how browsers reach ComfyUI (for Stripe's return URLs)
    allow_signup: bool = False               # False: only the operator creates accounts
    trusted_proxies: list = field(default_factory=list)  # ip_network objects (see the module doc)
    gateway_listener: str = "native"         # "native" (C, src/listener.c) or "aiohttp" (gateway_route.py)
    gateway_io_sched: str = "batch"          # the I/O thread's scheduling: "batch" or "normal" (src/gateway.h)
    allowed_hosts: list = field(default_factory=list)    # Host names links may use when public_url is unset
    source: Path | None = None  # the file it came from, if any
    attention_db: Path | None = None  # farm mode: the local needs-attention file

    @property
    def farm(self) -> bool:
        """True when the ledger is a shared PostgreSQL database."""
        return is_pg_uri(self.database)

    @property
    def database_shown(self) -> str:
        return shown_database(self.database)

    @property
    def attention_path(self) -> Path:
        return self.attention_db if self.attention_db is not None else Path(self.database)

    @property
    def stripe_key(self) -> str:
        return os.environ.get(ENV_STRIPE_KEY, "")

    @property
    def stripe_webhook_secret(self) -> str:
        return os.environ.get(ENV_STRIPE_WEBHOOK_SECRET, "")

    @property
    def upstream_key(self) -> str:
        """The operator's upstream key; from the environment only, never logged."""
        return os.environ.get(ENV_UPSTREAM_KEY, "")

    @property
    def upstream_simulated(self) -> bool:
        """The upstream is a simulator on this machine (loopback), not a paid provider."""
        host = (urlsplit(self.upstream_base).hostname or "").lower()
        if host == "localhost" or host == "::1":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def sandbox_enabled(self) -> bool:
        """The in-process sandbox checkout sells (TEST) credits."""
        if self.stripe_key:
            return False
        return self.upstream_simulated if self.sandbox_checkout is None else self.sandbox_checkout

    @property
    def test_credits_sold(self) -> bool:
        """Purchases are test money: the sandbox, or a Stripe test-mode key."""
        return self.sandbox_enabled or self.stripe_key.startswith(("sk_test_", "rk_test_"))

    def start_problem(self) -> str | None:
        """A one-line reason this configuration must not start, or None."""
        if self.sandbox_enabled and self.upstream_key and not self.upstream_simulated:
            return ("sandbox_checkout is on while COMFY_CREDITS_UPSTREAM_KEY pays a real upstream "
                    f"({self.upstream_base}): anyone could buy free TEST credits; set \"sandbox_checkout\": false "
                    "or configure STRIPE_SECRET_KEY")
        return None

    def price_table_text(self) -> str:
        try:
            return self.price_table.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"price_table: cannot read {self.price_table}: {exc.strerror}") from None


def _parse_rates(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError('rates: expected an object such as {"usd": "211"}')
    rates: dict[str, int] = {}
    for cur, value in raw.items():
        if not isinstance(value, str):
            raise ConfigError(f'rates.{cur}: write the rate as a decimal string, e.g. "211"')
        try:
            micro = _core.parse_credits(value)
            _core.currency_exponent(cur)
        except _core.InvalidArgument as exc:
            raise ConfigError(f"rates.{cur}: {exc}") from None
        if micro <= 0:
            raise ConfigError(f"rates.{cur}: the rate must be positive")
        rates[cur.lower()] = micro
    if "usd" not in rates:
        rates["usd"] = 211 * _core.MICRO
    return rates


def local_dir() -> Path:
    """Farm mode's local files when neither ComfyUI's user directory nor a config file is known (e.g. the CLI
    with --db postgresql://...): $XDG_CONFIG_HOME/comfy-credits (~/.config/comfy-credits; %APPDATA% on Windows)."""
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "comfy-credits"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "comfy-credits"


def load(config_path: str | os.PathLike | None = None, db_path: str | os.PathLike | None = None,
         comfyui_user_dir: str | os.PathLike | None = None) -> Config:
    """Builds the configuration. `comfyui_user_dir` is ComfyUI's user directory
    (folder_paths.get_user_directory()) when running inside ComfyUI."""
    data_dir = Path(comfyui_user_dir) / DATA_DIR_NAME if comfyui_user_dir else None
    path = config_path or os.environ.get(ENV_CONFIG)
    if not path and data_dir and (data_dir / CONFIG_FILE_NAME).is_file():
        path = data_dir / CONFIG_FILE_NAME
    raw: dict = {}
    source = None
    if path:
        source = Path(path)
        try:
            raw = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {source} must contain a JSON object")
        unknown = sorted(set(raw) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"config file {source}: unknown key(s) {', '.join(unknown)}; "
                              f"known keys are {', '.join(sorted(KNOWN_KEYS))}")
    base = source.parent if source else Path.cwd()

    db = db_path or os.environ.get(ENV_DB) or raw.get("database")
    in_data_dir = db is None and data_dir is not None
    if db is None:
        db = (data_dir or Path.cwd()) / DB_FILE_NAME
    if not isinstance(db, (str, os.PathLike)) or not str(db):
        raise ConfigError("database: expected a file path or a postgresql:// URI")
    if is_pg_uri(db):
        # The server's own files (needs-attention table, audit log) cannot sit beside a URI: they go to ComfyUI's
        # user directory, else beside the config file, else the user's config folder; never the working directory.
        local = data_dir or (source.parent.resolve() if source else local_dir())
        cfg = Config(database=db, source=source, attention_db=local / ATTENTION_FILE_NAME)
        try:
            local.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # said when a file there is first opened, naming the path
        in_data_dir = data_dir is not None
    elif isinstance(db, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", db):
        raise ConfigError(f"database: '{db.split('://', 1)[0]}://' is not supported; use a file path or a "
                          "postgresql://user@host:port/dbname URI")
    else:
        cfg = Config(database=(base / Path(db)) if not Path(db).is_absolute() else Path(db), source=source)
    if in_data_dir:
        # Our own folder inside ComfyUI's user directory: make it on first use.
        data_dir.mkdir(parents=True, exist_ok=True)

    if "price_table" in raw:
        if not isinstance(raw["price_table"], str):
            raise ConfigError("price_table: expected a file path")
        cfg.price_table = base / raw["price_table"]
    if "rates" in raw:
        cfg.rates_micro = _parse_rates(raw["rates"])
    if "hold_ttl_ms" in raw:
        ttl = raw["hold_ttl_ms"]
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1000 <= ttl <= HOLD_TTL_MS_MAX:
            raise ConfigError(f"hold_ttl_ms: expected an integer between 1000 and {HOLD_TTL_MS_MAX}")
        cfg.hold_ttl_ms = ttl
    base = os.environ.get(ENV_UPSTREAM_BASE) or raw.get("upstream_base")
    if base is not None:
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ConfigError("upstream_base: expected an http:// or https:// URL")
        cfg.upstream_base = base.rstrip("/")
    for key, lo, hi in (("upstream_timeout_ms", 1000, 3_600_000), ("session_ttl_ms", 60_000, 90 * 24 * 3600 * 1000)):
        if key in raw:
            v = raw[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{key}: expected an integer between {lo} and {hi}")
            setattr(cfg, key, v)
    for key in ("purchase_min_usd", "purchase_max_usd"):
        if key in raw:
            v = raw[key]
            if not isinstance(v, str):
                raise ConfigError(f'{key}: write the amount as a decimal string, e.g. "1" or "1000"')
            try:
                micro = _core.parse_credits(v)  # exact decimal; reused for dollars
            except _core.InvalidArgument:
                raise ConfigError(f"{key}: '{v}' is not a dollar amount") from None
            if micro <= 0 or micro % 10_000:
                raise ConfigError(f"{key}: must be a positive amount in whole cents")
            setattr(cfg, key.replace("_usd", "_usd_cents"), micro // 10_000)
    if cfg.purchase_min_usd_cents > cfg.purchase_max_usd_cents:
        raise ConfigError("purchase_min_usd is above purchase_max_usd")
    if "allow_signup" in raw:
        if not isinstance(raw["allow_signup"], bool):
            raise ConfigError("allow_signup: expected true or false")
        cfg.allow_signup = raw["allow_signup"]
    if "sandbox_checkout" in raw:
        if not isinstance(raw["sandbox_checkout"], bool):
            raise ConfigError("sandbox_checkout: expected true or false")
        cfg.sandbox_checkout = raw["sandbox_checkout"]
    sbase = os.environ.get(ENV_STRIPE_API_BASE) or raw.get("stripe_api_base")
    if sbase is not None:
        if not isinstance(sbase, str) or not sbase.startswith(("https://", "http://127.", "http://localhost")):
            raise ConfigError("stripe_api_base: expected https:// (or a loopback test server)")
        cfg.stripe_api_base = sbase.rstrip("/")
    sver = os.environ.get(ENV_STRIPE_API_VERSION) or raw.get("stripe_api_version")
    if sver is not None:
        if not isinstance(sver, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", sver):
            raise ConfigError("stripe_api_version: expected a Stripe API version such as 2026-10-28.endive")
        cfg.stripe_api_version = sver
    if "public_url" in raw:
        if not isinstance(raw["public_url"], str) or not raw["public_url"].startswith(("http://", "https://")):
            raise ConfigError("public_url: expected the http(s) address browsers use to reach ComfyUI")
        cfg.public_url = raw["public_url"].rstrip("/")
    if "allowed_hosts" in raw:
        ah = raw["allowed_hosts"]
        if not isinstance(ah, list) or not all(isinstance(h, str) and h for h in ah):
            raise ConfigError('allowed_hosts: expected a list of host names, e.g. ["comfy.example.com"]')
        cfg.allowed_hosts = [h.lower() for h in ah]
    if "trusted_proxies" in raw:
        from .throttle import parse_trusted_proxies
        try:
            cfg.trusted_proxies = parse_trusted_proxies(raw["trusted_proxies"])
        except ValueError as exc:
            raise ConfigError(f"trusted_proxies: {exc}") from None
    if "charge_failed_runs" in raw:
        raise ConfigError("charge_failed_runs is gone: every run now pays what the upstream billed for requests it "
                          "accepted (see README, 'What a run costs'); use charge_interrupted_runs to not charge "
                          "interrupted runs")
    gl = os.environ.get(ENV_GATEWAY_LISTENER) or raw.get("gateway_listener")
    if gl is not None:
        if gl not in GATEWAY_LISTENERS:
            raise ConfigError('gateway_listener: expected "native" or "aiohttp"')
        cfg.gateway_listener = gl
    if "gateway_io_sched" in raw:
        if raw["gateway_io_sched"] not in GATEWAY_IO_SCHEDS:
            raise ConfigError('gateway_io_sched: expected "batch" or "normal"')
        cfg.gateway_io_sched = raw["gateway_io_sched"]
    if "charge_interrupted_runs" in raw:
        if not isinstance(raw["charge_interrupted_runs"], bool):
            raise ConfigError("charge_interrupted_runs: expected true or false")
        cfg.charge_interrupted_runs = raw["charge_interrupted_runs"]
    return cfg
