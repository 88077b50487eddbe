"""Operator CLI: `python -m comfy_credits_ext ...` (also installed as `comfy-credits`).

Commands: user add|list|disable|enable|promote, grant, balance, history,
expire, verify, invite, report, audit, price estimate|list. Admin changes made here
(grant, disable, enable, promote) go to the audit log like the dashboard's. Amounts are typed and shown in credits
(exact decimals, up to 6 places); the ledger stores micro-credits.

Exit codes: 0 success; 1 refused or not found (including verify problems);
2 bad input; 4 storage error.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
import uuid

from . import _core, emails, invites
from . import config as config_mod

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_STORAGE = 0, 1, 2, 4


class UsageError(Exception):
    pass


def credits(micro: int) -> str:
    return _core.format_credits(micro, 2)


def parse_credits(text: str) -> int:
    try:
        micro = _core.parse_credits(text.strip())
    except _core.InvalidArgument:
        raise UsageError(f"'{text}' is not an amount of credits (use digits and an optional "
                         "decimal point, e.g. 500 or 12.5)") from None
    if micro <= 0:
        raise UsageError("the amount of credits must be positive")
    return micro


def parse_time_ms(text: str, name: str) -> int:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name}: '{text}' is not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1000)


def fmt_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def resolve_account(led, ref: str) -> dict:
    if ref.isdigit():
        return led.account(int(ref))
    if "@" in ref:
        try:
            ref = emails.normalize(ref)
        except emails.EmailError:
            pass  # look it up as typed (accounts made before normalisation)
        return led.account_by_email(ref)
    raise UsageError(f"'{ref}' is neither an account id nor an email address")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def account_view(a: dict) -> dict:
    out = dict(a)
    for k in ("balance", "held", "available", "paid_total", "granted_total", "spent_total", "uncollected_total",
              "test_balance"):
        out[k + "_credits"] = credits(a[k])
    return out


def cli_actor() -> str:
    import getpass
    try:
        return f"cli:{getpass.getuser()}"[:254]
    except Exception:
        return "cli"


def audit(cfg, action: str, a: dict, detail: dict) -> None:
    """Appends an operator's change to the audit log (src/audit.c), as the dashboard does."""
    from .admin import open_audit
    log = open_audit(cfg)
    try:
        log.append(0, cli_actor(), action, f"account {a['id']} <{a['email']}>", json.dumps(detail, sort_keys=True),
                   "cli")
    finally:
        log.close()


# ---------------------------------------------------------------- commands

def cmd_user_add(led, args, cfg):
    try:
        email = emails.normalize(args.email)
    except emails.EmailError as exc:
        raise UsageError(str(exc)) from None
    a = led.create_account(email, display_name=args.name or "", role="admin" if args.admin else "user")
    if args.json:
        print_json(account_view(a))
    else:
        print(f"created account {a['id']} <{a['email']}> ({a['role']})")
    return EXIT_OK


def cmd_user_list(led, args, cfg):
    rows, after = [], 0
    while True:
        page = led.accounts(after_id=after, limit=1000)
        rows += [a for a in page if args.all or a["active"]]
        if len(page) < 1000:
            break
        after = page[-1]["id"]
    if args.json:
        print_json([account_view(a) for a in rows])
        return EXIT_OK
    if not rows:
        print("no accounts yet: add one with `user add EMAIL`" if args.all or after == 0 and not page
              else "no active accounts (add --all to see disabled ones)")
        return EXIT_OK
    print(f"{'id':>5}  {'email':<32} {'role':<6} {'status':<9} {'balance':>14} {'held':>12}")
    for a in rows:
        print(f"{a['id']:>5}  {a['email']:<32} {a['role']:<6} {'active' if a['active'] else 'disabled':<9} "
              f"{credits(a['balance']):>14} {credits(a['held']):>12}")
    return EXIT_OK


def cmd_user_status(led, args, cfg):
    a = resolve_account(led, args.account)
    if args.command_user == "promote":
        a = led.update_account(a["id"], role="admin")
        audit(cfg, "promote", a, {"role": "admin"})
    else:
        a = led.update_account(a["id"], active=args.command_user == "enable")
        audit(cfg, args.command_user, a, {"active": bool(a["active"])})
    print(f"account {a['id']} <{a['email']}> is now {'active' if a['active'] else 'disabled'}, {a['role']}")
    return EXIT_OK


def read_new_password() -> str:
    if not sys.stdin.isatty():
        pw = sys.stdin.readline().rstrip("\n")
    else:
        import getpass
        pw = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != pw:
            raise UsageError("the two passwords differ")
    try:
        _core.check_password(pw)  # the one rule, in C
    except _core.InvalidArgument as exc:
        raise UsageError(str(exc)) from None
    return pw


def keys_line(led, account_id: int, revoke: bool) -> str:
    """Personal API keys outlive a password change or a sign-out unless revoked: say so."""
    revoked = led.revoke_credential(account_id, "api_key") if revoke else 0
    left = len(led.list_credentials(account_id, "api_key"))
    if revoked:
        return f"{revoked} personal API key(s) revoked"
    if left:
        return f"{left} personal API key(s) still work (add --revoke-keys to revoke them)"
    return "no personal API keys"


def cmd_user_password(led, args, cfg):
    a = resolve_account(led, args.account)
    led.set_password(a["id"], read_new_password())
    n = led.revoke_credential(a["id"], "session")
    print(f"password set for {a['email']}; {n} open session(s) signed out; {keys_line(led, a['id'], args.revoke_keys)}")
    return EXIT_OK


def cmd_user_signout(led, args, cfg):
    a = resolve_account(led, args.account)
    n = led.revoke_credential(a["id"], "session")
    print(f"{a['email']}: {n} open session(s) signed out; {keys_line(led, a['id'], args.revoke_keys)}")
    return EXIT_OK


def cmd_grant(led, args, cfg):
    a = resolve_account(led, args.account)
    amount = parse_credits(args.credits)
    key = args.key or f"grant-cli-{uuid.uuid4().hex}"
    r = led.grant(key, a["id"], amount, note=args.note or "")
    if not r["replayed"]:
        audit(cfg, "grant", a, {"credits": credits(amount), "note": args.note or "", "entry_id": r["entry_id"]})
    if args.json:
        print_json(r | {"key": key})
    else:
        again = " (already applied earlier with this key)" if r["replayed"] else ""
        print(f"granted {credits(r['amount'])} credits to {a['email']}{again}; "
              f"balance {credits(r['balance_after'])} (key {key})")
    return EXIT_OK


def cmd_balance(led, args, cfg):
    a = resolve_account(led, args.account)
    if args.json:
        print_json(account_view(a))
        return EXIT_OK
    print(f"{a['email']} (account {a['id']}{', disabled' if not a['active'] else ''})")
    print(f"  balance      {credits(a['balance']):>14} credits")
    print(f"  held         {credits(a['held']):>14}   (reserved by running API nodes)")
    print(f"  available    {credits(a['available']):>14}")
    print(f"  paid total   {credits(a['paid_total']):>14}")
    print(f"  granted total{credits(a['granted_total']):>14}")
    if a["test_balance"]:
        print(f"  TEST         {credits(a['test_balance']):>14}   (sandbox credits: no money was paid; they pay only "
              "for the simulated upstream)")
    print(f"  spent total  {credits(a['spent_total']):>14}")
    if a["uncollected_total"]:
        print(f"  uncollected  {credits(a['uncollected_total']):>14}   (runs that cost more than was left)")
    return EXIT_OK


HISTORY_COLUMNS = ["id", "time", "kind", "credits", "balance_after", "held_after", "node_class", "model",
                   "prompt_id", "node_id", "tokens_in", "tokens_out", "images", "seconds", "uncollected",
                   "currency", "amount_minor", "method", "external_ref", "note"]


def history_row(e: dict) -> dict:
    amount = e["delta"] if e["kind"] in ("grant", "purchase", "settle", "test") else e["amount"]
    return {
        "id": e["id"], "time": fmt_time(e["created_ms"]), "kind": e["kind"].upper() if e["kind"] == "test" else e["kind"], "credits": credits(amount),
        "balance_after": credits(e["balance_after"]), "held_after": credits(e["held_after"]),
        "node_class": e["node_class"], "model": e["model"], "prompt_id": e["prompt_id"], "node_id": e["node_id"],
        "tokens_in": e["tokens_in"], "tokens_out": e["tokens_out"], "images": e["images"],
        "seconds": None if e["seconds_ms"] is None else e["seconds_ms"] / 1000,
        "uncollected": credits(e["uncollected"]), "currency": e["currency"], "amount_minor": e["amount_minor"],
        "method": e["method"], "external_ref": e["external_ref"], "note": e["note"],
    }


def cmd_history(led, args, cfg):
    a = resolve_account(led, args.account)
    kw = {"limit": args.limit}
    if args.kind:
        kw["kinds"] = args.kind
    if args.since:
        kw["since_ms"] = parse_time_ms(args.since, "--since")
    if args.until:
        kw["until_ms"] = parse_time_ms(args.until, "--until")
    entries, cursor = [], args.cursor
    # --all walks every page; otherwise one page.
    while True:
        page = led.history(a["id"], cursor=cursor, **kw)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not args.all or cursor is None:
            break
    if args.json:
        print_json({"account": account_view(a), "entries": entries, "next_cursor": cursor})
    elif args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=HISTORY_COLUMNS)
        w.writeheader()
        for e in entries:
            w.writerow(history_row(e))
    else:
        if not entries:
            print(f"no history for {a['email']}")
        for e in entries:
            r = history_row(e)
            what = r["node_class"] or r["note"] or r["external_ref"]
            tokens = ""
            if e["tokens_in"] is not None or e["tokens_out"] is not None:
                tokens = f" tokens {e['tokens_in'] or 0}/{e['tokens_out'] or 0}"
            print(f"{r['id']:>8} {r['time']} {r['kind']:<8} {r['credits']:>12}  bal {r['balance_after']:>12}  "
                  f"{what}{' ' + r['model'] if r['model'] else ''}{tokens}")
        if cursor is not None:
            print(f"more: --cursor {cursor}")
    return EXIT_OK


def key_line(k: dict) -> str:
    cap = "no cap" if k["cap_micro"] is None else (f"cap {credits(k['cap_micro'])} credits, "
                                                   f"{credits(k['cap_used'])} used or held")
    last = dt.datetime.fromtimestamp((k["expires_ms"] - 1) / 1000, dt.timezone.utc).date() if k["expires_ms"] else None
    if last and k["expires_ms"] <= time.time() * 1000:
        exp = f"EXPIRED: its last day was {last.isoformat()} (UTC); it does not work (extend it with key limits)"
    else:
        exp = f"works through {last.isoformat()} (UTC)" if last else "never expires"
    return f"{k['id']:>5}  {k['hint']}…  {k['label'] or '-':<24} created {fmt_time(k['created_ms'])}; {cap}; {exp}"


def cmd_key_limits(led, args, cfg):
    """A key's spending cap (credits over its life) and expiry (a UTC day); both are set, audited."""
    from .admin import key_limits_audit, parse_cap, parse_expiry
    try:
        cap = parse_cap(None if args.cap in (None, "none") else args.cap, "--cap")
        expires = parse_expiry(None if args.expires in (None, "never") else args.expires, "--expires")
        k = led.key_limits(args.key_id, cap, expires)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except _core.InvalidArgument as exc:
        raise UsageError(f"--{exc.field}: {exc}") from None
    owner = led.account(k["account_id"])
    audit(cfg, "key limits", owner, key_limits_audit(k))
    if args.json:
        print_json(k)
    else:
        print(f"{owner['email']}: {key_line(k)}")
    return EXIT_OK


def cmd_key(led, args, cfg):
    if args.command_key == "limits":
        return cmd_key_limits(led, args, cfg)
    a = resolve_account(led, args.account)
    if args.command_key == "create":
        k = led.create_credential(a["id"], "api_key", label=args.label or "")
        if args.json:
            print_json(k)
        else:
            print(f"API key for {a['email']} (shown once, store it now):\n{k['token']}")
            print("Use it as extra_data.api_key_comfy_org or 'Authorization: Bearer <key>' on /prompt.")
    elif args.command_key == "list":
        keys = led.list_credentials(a["id"], "api_key", expired=True)
        if args.json:
            print_json(keys)
        else:
            for k in keys:
                print(key_line(k))
            if not keys:
                print(f"{a['email']} has no API keys")
    else:
        n = led.revoke_credential(a["id"], "api_key", id=args.id or 0)
        print(f"revoked {n} API key(s) of {a['email']}")
    return EXIT_OK


def cmd_expire(led, args, cfg):
    n = led.expire()
    print(f"expired {n} hold(s)")
    return EXIT_OK


def cmd_verify(led, args, cfg):
    from .admin import open_audit, verify_all
    log = open_audit(cfg)
    try:
        rep = verify_all(led, log)
    finally:
        log.close()
    if args.json:
        print_json(rep)
    else:
        print(f"accounts {rep['accounts']}, entries {rep['entries']}, holds {rep['holds']} "
              f"({rep['open_holds']} open), balances {credits(rep['balance_total'])}, "
              f"held {credits(rep['held_total'])}")
        t = rep["report_total"]
        print(f"reconciliation: billed {credits(t['billed'])}, charged {credits(t['charged'])}, "
              f"uncollected {credits(t['uncollected'])} over {t['runs']} runs; the report's sums equal the accounts'")
        print(f"audit log: {rep['audit']['records']} records, chain {'intact' if rep['audit']['ok'] else 'BROKEN'}")
        if rep["ok"]:
            print("ok: every invariant holds")
        for p in rep["problems"]:
            print(f"PROBLEM: {p}")
        if rep["problems_total"] > len(rep["problems"]):
            print(f"... and {rep['problems_total'] - len(rep['problems'])} more")
    return EXIT_OK if rep["ok"] else EXIT_REFUSED


def cmd_purchases(led, args, cfg):
    """Paid Stripe sessions that could not be credited (see attention.py)."""
    from .attention import Attention
    store = Attention(led)
    try:
        if args.command_purchases == "resolve":
            row = store.get(args.session_id)
            if row is None or row["resolved_ms"]:
                err(f"no open needs-attention purchase {args.session_id}")
                return EXIT_REFUSED
            if args.credit is not None:
                # Credited as the purchase it is, under the key fulfilment uses
                # ("stripe:<session>"), so it can never be credited twice.
                amount = parse_credits(args.credit)
                # TEST credits when this server sells TEST credits (sandbox, sk_test_ key), like fulfilment.
                buy = led.test_purchase if cfg.test_credits_sold else led.purchase
                r = buy(f"stripe:{row['session_id']}", row["account_id"], amount, row["currency"],
                                 row["amount_minor"], row["method"] or "stripe", row["session_id"],
                                 note=f"resolved by the operator: {args.note}"[:200])
                print(f"credited {credits(r['amount'])} credits to account {row['account_id']} as purchase "
                      f"{row['session_id']}{' (already credited)' if r['replayed'] else ''}")
            try:
                row = store.resolve(args.session_id, args.note)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            except LookupError as exc:
                err(str(exc))
                return EXIT_REFUSED
            print(f"resolved {row['session_id']}: {row['resolution']}")
            return EXIT_OK
        rows = store.list(include_resolved=args.all)
    finally:
        store.close()
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no paid purchase needs attention")
    for r in rows:
        try:
            who = led.account(r["account_id"])["email"] if r["account_id"] > 0 else "(no account)"
        except _core.NotFound:
            who = f"(account {r['account_id']} does not exist)"
        state = f"resolved {fmt_time(r['resolved_ms'])}: {r['resolution']}" if r["resolved_ms"] else "NEEDS ATTENTION"
        exp = _core.currency_exponent(r["currency"]) if r["currency"] else 0
        paid = f"{r['amount_minor'] / 10 ** exp:,.{exp}f}"
        print(f"{r['session_id']}  {fmt_time(r['first_ms'])}  {who}  paid {paid} {r['currency'].upper()} "
              f"({r['method'] or 'method unknown'}) for {credits(r['credits_micro'])} credits  [{state}]\n"
              f"    reason: {r['reason']} (reported {r['reports']}x)")
    return EXIT_OK


def cmd_caps(led, args, cfg):
    """Shows or sets an account's spending caps (src/caps.c); changes are audited."""
    from .admin import caps_view, parse_cap
    a = resolve_account(led, args.account)
    if args.daily is not None or args.monthly is not None:
        cur = a["caps"]
        try:
            daily = cur["daily"] if args.daily is None else parse_cap(None if args.daily == "none" else args.daily,
                                                                       "--daily")
            monthly = cur["monthly"] if args.monthly is None else parse_cap(
                None if args.monthly == "none" else args.monthly, "--monthly")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        before = caps_view(cur)
        a = _core.set_caps(led, a["id"], "admin", daily, monthly)
        after = caps_view(a["caps"])
        audit(cfg, "caps", a, {"daily": after["daily"], "monthly": after["monthly"],
                               "was": {"daily": before["daily"], "monthly": before["monthly"]}})
    c = caps_view(a["caps"])
    if args.json:
        print_json(c)
        return EXIT_OK
    def show(v):
        return "none" if v is None else f"{v} credits"
    print(f"{a['email']}: daily cap {show(c['daily'])}, monthly cap {show(c['monthly'])}"
          + (f"; their own: daily {show(c['own_daily'])}, monthly {show(c['own_monthly'])}"
             if c["own_daily"] is not None or c["own_monthly"] is not None else ""))
    print(f"  used today {credits(c['daily_used_micro'])}, this month {credits(c['monthly_used_micro'])} "
          "(holds placed in the window + what they were charged)")
    return EXIT_OK


def cmd_report(led, args, cfg):
    """Reconciliation per day: what the upstream billed, what people were charged, uncollected, margin."""
    from .admin import report_csv, report_json, report_range
    try:
        since, until = report_range(args.frm, args.to)
        rep = _core.report(led, since, until)
    except _core.InvalidArgument as exc:
        raise UsageError(f"--{exc.field or 'to'}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    if args.json:
        print_json(report_json(rep))
    elif args.csv:
        sys.stdout.write(report_csv(rep))
    else:
        t = rep["total"]
        print(f"{'day':<10} {'runs':>6} {'billed':>14} {'charged':>14} {'uncollected':>12} {'margin':>12} "
              f"{'purchased':>14}")
        for d in rep["days"] + [dict(rep["total"], day_ms=None)]:
            if d["day_ms"] is not None and not (d["runs"] or d["purchases"] or d["grants"] or d["test_purchases"]):
                continue
            day = "total" if d["day_ms"] is None else dt.datetime.fromtimestamp(
                d["day_ms"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
            print(f"{day:<10} {d['runs']:>6} {credits(d['billed']):>14} {credits(d['charged']):>14} "
                  f"{credits(d['uncollected']):>12} {credits(d['charged'] - d['billed']):>12} "
                  f"{credits(d['purchased']):>14}")
        if not t["runs"] and not t["purchases"]:
            print("no runs or purchases in this range")
    return EXIT_OK


def cmd_audit(led, args, cfg):
    """The audit log of admin actions, newest first."""
    from .admin import open_audit
    log = open_audit(cfg)
    try:
        page = log.list(limit=args.limit, cursor=args.cursor)
        chain = log.verify()
    finally:
        log.close()
    if args.json:
        print_json(page | {"chain": chain})
        return EXIT_OK
    if not page["records"]:
        print("the audit log is empty")
    for r in page["records"]:
        print(f"{r['id']:>6} {fmt_time(r['at_ms'])}  {r['actor']:<28} {r['action']:<10} {r['target']:<36} "
              f"from {r['source']}  {r['detail']}")
    if page["next_cursor"]:
        print(f"more: --cursor {page['next_cursor']}")
    if not chain["ok"]:
        print(f"WARNING: record {chain['first_bad']} was changed or removed (the hash chain breaks there)")
        return EXIT_REFUSED
    return EXIT_OK


def load_prices(cfg):
    try:
        return _core.PriceTable(cfg.price_table_text())
    except _core.InvalidArgument as exc:
        raise config_mod.ConfigError(f"price table {cfg.price_table}: {exc}") from None


def cmd_price_estimate(args, cfg):
    try:
        inputs = json.loads(args.inputs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"INPUTS_JSON is not valid JSON: {exc}") from None
    if not isinstance(inputs, dict):
        raise UsageError('INPUTS_JSON must be an object such as {"size": "1024x1024"}')
    table = load_prices(cfg)
    r = table.estimate(args.node_class, inputs)
    if args.json:
        print_json(r | {"credits": credits(r["micro"])})
    else:
        print(f"{args.node_class}: {credits(r['micro'])} credits (worst case, held before the run)")
        print(f"  rule {r['rule']}{', family ' + r['family'] if r['family'] else ''}"
              f"{', model ' + r['model'] if r['model'] else ''}")
        if r["used_default"]:
            print("  warning: no price rule for this node class; the operator's default price applies")
        if r["warning"]:
            print(f"  warning: {r['warning']}")
    return EXIT_OK


def cmd_price_list(args, cfg):
    table = load_prices(cfg)
    names = sorted(table.names())
    if args.json:
        print_json(names)
    else:
        print("\n".join(names))
        print(f"{len(names)} node classes priced in {cfg.price_table}")
    return EXIT_OK


def cmd_migrate(args, cfg):
    """Copies the SQLite ledger (--db / config) into an empty PostgreSQL database (farm mode)."""
    if cfg.farm:
        raise UsageError("migrate copies a SQLite ledger (--db FILE or the config's) into PostgreSQL; "
                         f"the source given is already PostgreSQL ({cfg.database_shown})")
    if not config_mod.is_pg_uri(args.to):
        raise UsageError("--to must be a postgresql://user@host:port/dbname URI")
    if not cfg.database.is_file():
        raise UsageError(f"no SQLite ledger at {cfg.database}")
    target = config_mod.shown_database(args.to)
    with _core.Ledger(str(cfg.database)) as src:  # brings an older file's schema up to date
        before = src.verify()
    if not before["ok"]:
        err(f"the SQLite ledger does not verify ({before['problems'][:1]}); fix it before copying")
        return EXIT_REFUSED
    copied = _core.copy_sqlite_to_pg(str(cfg.database), args.to)
    with _core.Ledger(args.to) as dst:
        after = dst.verify()
    same = all(before[k] == after[k] for k in ("accounts", "entries", "holds", "open_holds", "balance_total",
                                               "held_total"))
    rows = (f"{copied['accounts']} accounts, {copied['entries']} entries, {copied['holds']} holds, "
            f"{copied['credentials']} sessions/keys, {copied['passwords']} passwords, "
            f"{copied['attention']} needs-attention purchases")
    if args.json:
        print_json({"copied": copied, "before": before, "after": after, "ok": same and after["ok"]})
    else:
        print(f"copied {rows} from {cfg.database} to {target}")
        for name, rep in (("before (SQLite)", before), ("after (PostgreSQL)", after)):
            print(f"{name}: accounts {rep['accounts']}, entries {rep['entries']}, holds {rep['holds']} "
                  f"({rep['open_holds']} open), balances {credits(rep['balance_total'])}, "
                  f"held {credits(rep['held_total'])}, verify {'ok' if rep['ok'] else 'FAILED'}")
        print(f"every account compared before commit: {copied['accounts_checked']} "
              "(balance, held, totals, entry count and sum of deltas)")
        print("ok: the PostgreSQL ledger matches" if same and after["ok"] else "PROBLEM: the copies differ")
    return EXIT_OK if same and after["ok"] else EXIT_REFUSED
def cmd_invite(args, cfg):
    """A one-time, expiring link that opens sign-up with the email filled in (invites.py)."""
    try:
        email = emails.normalize(args.email)
    except emails.EmailError as exc:
        raise UsageError(str(exc)) from None
    with _core.Ledger(str(cfg.database)) as led:
        try:
            led.account_by_email(email)
            err(f"an account for {email} exists already; it signs in with its password "
                f"(reset it with `user password {email}`)")
            return EXIT_REFUSED
        except _core.NotFound:
            pass
    inv = invites.make(cfg, email, args.days, args.url)
    if args.json:
        print_json(inv)
    else:
        print(inv["url"])
        print(f"# for {inv['email']}, one use, until {fmt_time(inv['expires_ms'])} UTC", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m comfy_credits_ext",
                                description="Operate the comfy-credits ledger (accounts, grants, history).")
    p.add_argument("--db", help=f"ledger database file, or a postgresql:// URI for a shared ledger "
                                f"(env {config_mod.ENV_DB})")
    p.add_argument("--config", help=f"config file (env {config_mod.ENV_CONFIG})")
    p.add_argument("--comfyui-user-dir", help="ComfyUI's user directory; the ledger defaults to "
                                              "<dir>/comfy_credits/ledger.db")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    user = sub.add_parser("user", help="manage accounts")
    usub = user.add_subparsers(dest="command_user", required=True, metavar="ACTION")
    ua = usub.add_parser("add", help="create an account")
    ua.add_argument("email")
    ua.add_argument("--name", help="display name")
    ua.add_argument("--admin", action="store_true", help="give the account the admin role")
    ua.add_argument("--json", action="store_true")
    ul = usub.add_parser("list", help="list accounts")
    ul.add_argument("--all", action="store_true", help="include disabled accounts")
    ul.add_argument("--json", action="store_true")
    up = usub.add_parser("password", help="set an account's password (read from stdin, or asked twice)")
    up.add_argument("account", help="account id or email")
    up.add_argument("--revoke-keys", action="store_true", help="also revoke the account's personal API keys")
    so = usub.add_parser("signout", help="sign an account out everywhere (ends every session)")
    so.add_argument("account", help="account id or email")
    so.add_argument("--revoke-keys", action="store_true", help="also revoke the account's personal API keys")
    for name, hlp in (("disable", "disable an account (it keeps its credits)"), ("enable", "re-enable an account"),
                      ("promote", "make an account an admin")):
        s = usub.add_parser(name, help=hlp)
        s.add_argument("account", help="account id or email")

    g = sub.add_parser("grant", help="grant promotional credits (reported apart from paid credits)")
    g.add_argument("account", help="account id or email")
    g.add_argument("credits", help="amount in credits, e.g. 500 or 12.5")
    g.add_argument("--note", help="reason shown in the history")
    g.add_argument("--key", help="idempotency key: repeating the command with the same key grants once")
    g.add_argument("--json", action="store_true")

    mg = sub.add_parser("migrate", help="copy this SQLite ledger into an empty PostgreSQL database (farm mode)")
    mg.add_argument("--to", required=True, metavar="URI", help="postgresql://user@host:port/dbname (empty database; "
                                                                "the password may come from PGPASSWORD or ~/.pgpass)")
    mg.add_argument("--json", action="store_true")

    b = sub.add_parser("balance", help="show an account's balance")
    b.add_argument("account", help="account id or email")
    b.add_argument("--json", action="store_true")

    h = sub.add_parser("history", help="show an account's history, newest first")
    h.add_argument("account", help="account id or email")
    h.add_argument("--limit", type=int, default=50, help="entries per page (1..1000)")
    h.add_argument("--cursor", type=int, help="continue from this cursor")
    h.add_argument("--all", action="store_true", help="every page")
    h.add_argument("--kind", action="append", choices=["grant", "purchase", "test", "hold", "settle", "void", "expire"])
    h.add_argument("--since", help="from this date (UTC), e.g. 2026-11-01")
    h.add_argument("--until", help="before this date (UTC)")
    fmt = h.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    k = sub.add_parser("key", help="personal API keys (for headless runs)")
    ksub = k.add_subparsers(dest="command_key", required=True, metavar="ACTION")
    kc = ksub.add_parser("create", help="create a key (printed once)")
    kc.add_argument("account", help="account id or email")
    kc.add_argument("--label", help="what the key is for")
    kc.add_argument("--json", action="store_true")
    kl = ksub.add_parser("list", help="list active keys")
    kl.add_argument("account", help="account id or email")
    kl.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke", help="revoke one key (--id) or all keys")
    kr.add_argument("account", help="account id or email")
    kr.add_argument("--id", type=int, help="the key's id from `key list`; without it, every key")
    kk = ksub.add_parser("limits", help="set a key's spending cap and expiry (both; audited)")
    kk.add_argument("key_id", type=int, help="the key's id from `key list`")
    kk.add_argument("--cap", help="credits the key may spend in all (held or charged), or none (default)")
    kk.add_argument("--expires", help="last UTC day the key works, YYYY-MM-DD, or never (default)")
    kk.add_argument("--json", action="store_true")

    sub.add_parser("expire", help="release holds whose lifetime has passed")
    v = sub.add_parser("verify", help="recompute every ledger invariant")
    v.add_argument("--json", action="store_true")

    rp = sub.add_parser("report", help="reconciliation: upstream billed vs charged vs uncollected, per day")
    rp.add_argument("--from", dest="frm", required=True, help="first day (UTC), YYYY-MM-DD")
    rp.add_argument("--to", required=True, help="last day (UTC, included), YYYY-MM-DD; at most 366 days")
    rfmt = rp.add_mutually_exclusive_group()
    rfmt.add_argument("--json", action="store_true")
    rfmt.add_argument("--csv", action="store_true")

    cp = sub.add_parser("caps", help="show or set an account's daily/monthly spending caps (audited)")
    cp.add_argument("account", help="account id or email")
    cp.add_argument("--daily", help="credits per UTC day, or 'none'")
    cp.add_argument("--monthly", help="credits per UTC month, or 'none'")
    cp.add_argument("--json", action="store_true")

    au = sub.add_parser("audit", help="the audit log of admin actions (who, what, when, from where)")
    au.add_argument("--limit", type=int, default=50, help="records (1..1000)")
    au.add_argument("--cursor", type=int, help="continue from this cursor")
    au.add_argument("--json", action="store_true")

    pu = sub.add_parser("purchases", help="paid purchases that could not be credited (needs attention)")
    pusub = pu.add_subparsers(dest="command_purchases", required=True, metavar="ACTION")
    pa = pusub.add_parser("attention", help="list paid sessions that were not credited, with the reason")
    pa.add_argument("--all", action="store_true", help="include resolved ones")
    pa.add_argument("--json", action="store_true")
    prr = pusub.add_parser("resolve", help="mark one as settled (after e.g. `grant`), with a note")
    prr.add_argument("session_id")
    prr.add_argument("--note", required=True, help="how it was settled")
    prr.add_argument("--credit", metavar="CREDITS",
                     help="credit this many credits as the purchase itself (once, keyed by the session)")

    iv = sub.add_parser("invite", help="make a one-time link that opens sign-up with the email filled in")
    iv.add_argument("email")
    iv.add_argument("--days", type=int, default=invites.DAYS_DEFAULT,
                    help=f"how long the link works (1 to {invites.DAYS_MAX} days, default {invites.DAYS_DEFAULT})")
    iv.add_argument("--url", help="ComfyUI's address as people reach it (default: public_url from the config)")
    iv.add_argument("--json", action="store_true")
    pr = sub.add_parser("price", help="price table tools")
    psub = pr.add_subparsers(dest="command_price", required=True, metavar="ACTION")
    pe = psub.add_parser("estimate", help="worst-case credits for one node")
    pe.add_argument("node_class")
    pe.add_argument("inputs", metavar="INPUTS_JSON", help='the node\'s inputs, e.g. \'{"size": "1024x1024"}\'')
    pe.add_argument("--json", action="store_true")
    pl = psub.add_parser("list", help="node classes with a price rule")
    pl.add_argument("--json", action="store_true")
    return p


LEDGER_COMMANDS = {"key": cmd_key, "grant": cmd_grant, "balance": cmd_balance, "history": cmd_history, "expire": cmd_expire,
                   "verify": cmd_verify, "purchases": cmd_purchases, "report": cmd_report, "audit": cmd_audit,
                   "caps": cmd_caps}
USER_COMMANDS = {"add": cmd_user_add, "list": cmd_user_list, "password": cmd_user_password, "signout": cmd_user_signout, "disable": cmd_user_status,
                 "enable": cmd_user_status, "promote": cmd_user_status}


def err(msg: str) -> None:
    print(f"comfy-credits: error: {msg}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_mod.load(args.config, args.db, args.comfyui_user_dir)
        if args.command == "migrate":
            return cmd_migrate(args, cfg)
        if args.command == "invite":
            return cmd_invite(args, cfg)
        if args.command == "price":
            return {"estimate": cmd_price_estimate, "list": cmd_price_list}[args.command_price](args, cfg)
        if getattr(args, "limit", 1) is not None and not 1 <= getattr(args, "limit", 1) <= 1000:
            raise UsageError("--limit must be between 1 and 1000")
        with _core.Ledger(str(cfg.database)) as led:
            if args.command == "user":
                return USER_COMMANDS[args.command_user](led, args, cfg)
            return LEDGER_COMMANDS[args.command](led, args, cfg)
    except (UsageError, config_mod.ConfigError) as exc:
        err(str(exc))
        return EXIT_USAGE
    except _core.InvalidArgument as exc:
        err(str(exc))
        return EXIT_USAGE
    except _core.StorageError as exc:
        err(f"{exc} (database {getattr(locals().get('cfg'), 'database_shown', '?')})")
        return EXIT_STORAGE
    except _core.CreditsError as exc:
        err(str(exc))
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
