// comfy-credits: the "Credits admin" dashboard, a Settings entry shown only to
// accounts with the admin role. Its own ES module (no build step); the routes
// it reads are /credits/admin/* (comfy_credits_ext/admin.py), which check the
// role on the server: hiding the entry is a convenience, never the guard.
//
// Fits both frontend eras the same way as web/comfy_credits.js (frontend.md
// §2.3–2.6): a settings category whose one custom-render row draws the panel,
// added through the reactive settings store and hidden (type "hidden") when the
// signed-in account is not an admin. Sign-in and sign-out happen in the other
// module; we learn about them by watching /credits/session calls that go
// through api.fetchApi (feature-detected), and recheck the role then.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
// The element builder and the JSON fetch of the main module (the same file URL the frontend imports, so one
// instance): GET /extensions lists both files of the pack's web directory, served under /extensions/<pack>/.
// The personal API key's limits line and form too (the person's panel shows the same ones).
import { call, h, keyLimits, keyLimitsForm } from "./comfy_credits.js";

const SETTING_ID = "ComfyCredits.Admin";
const CATEGORY = ["Credits admin", "Credits admin", "Dashboard"];
// The row's label, hidden once mounted (render). Not empty: with an empty name ComfyUI 0.3.64's own 1.27.10
// shows the translation key (settings.ComfyCredits_Admin.name) as the label, which then kept half the width.
const NAME = "Credits admin";
const st = { admin: null, view: "accounts", q: "", selected: null, msg: "", report: null };

const css = document.createElement("link");
css.rel = "stylesheet";
css.href = new URL("./credits_admin.css", import.meta.url).href;
document.head.appendChild(css);

const rawFetch = api.fetchApi.bind(api);  // the frontend's own, wrapped below to notice sign-in and sign-out

const cr = (m) => (Number(m) / 1e6).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const today = () => new Date().toISOString().slice(0, 10);
const daysAgo = (n) => new Date(Date.now() - n * 86400000).toISOString().slice(0, 10);

// ---------------------------------------------------------------- entry
function lookup() { return app.ui?.settings?.settingsLookup; }

function showEntry() {
  const l = lookup();
  if (!l) return;
  if (SETTING_ID in l) l[SETTING_ID].type = render;
  else app.ui.settings.addSetting({ id: SETTING_ID, category: CATEGORY, name: NAME, type: render, defaultValue: null });
}

function hideEntry() {
  const s = lookup()?.[SETTING_ID];
  if (s) s.type = "hidden";
}

async function checkRole() {
  let account = null;
  try { account = (await call("GET", "/credits/session")).account; } catch { /* not signed in */ }
  st.admin = account?.role === "admin" ? account : null;
  if (st.admin) showEntry(); else hideEntry();
}

// Sign-in, sign-out and password changes go through api.fetchApi in the other
// module: recheck the role after each (the server decides; this only shows or hides).
if (typeof api.fetchApi === "function") {
  api.fetchApi = async function (path, opts) {
    const res = await rawFetch(path, opts);
    if (typeof path === "string" && /^\/credits\/(session|signup|password)\b/.test(path) &&
        (opts?.method || "GET").toUpperCase() !== "GET") setTimeout(checkRole, 0);
    return res;
  };
}

// ---------------------------------------------------------------- views
let root = null;  // the mounted panel (rebuilt by the frontend on every open)

function render() {
  const el = h("div", { class: "cca-panel", "data-testid": "cca-panel" });
  root = el;
  // The row is "label | input" (FormItem.vue, both eras): once mounted, hide
  // our row's label and give the whole row to the panel.
  let tries = 0;
  const widen = () => {
    if (!el.isConnected) return tries++ < 60 && requestAnimationFrame(widen);
    let cell = el.parentElement;
    for (let depth = 0; cell && depth < 5; depth++, cell = cell.parentElement) {
      const row = cell.parentElement;
      const label = row && [...row.children].find((c) => c !== cell && !c.contains(el) &&
                                                      [NAME, ""].includes(c.textContent.trim()));
      if (label) {
        label.style.display = "none";
        cell.style.setProperty("flex", "1");
        cell.style.setProperty("max-width", "100%");
        cell.style.setProperty("min-width", "0");
        return;
      }
    }
  };
  requestAnimationFrame(widen);
  draw();
  return el;
}

function setMsg(text, ok) {
  st.msg = text;
  st.msgOk = !!ok;
  const el = root?.querySelector("[data-testid=cca-msg]");
  if (el) { el.textContent = text; el.className = ok ? "cca-ok" : "cca-error"; }
}

function nav() {
  const views = [["accounts", "Accounts"], ["report", "Reconciliation"], ["charts", "Charts"], ["holds", "Open holds"],
                 ["attention", "Needs attention"], ["audit", "Audit log"], ["verify", "Verify"]];
  return h("div", { class: "cca-tabs", role: "tablist" }, views.map(([v, label]) =>
    h("button", { class: `cca-tab${st.view === v ? " cca-active" : ""}`, role: "tab", "data-testid": `cca-tab-${v}`,
                  "aria-selected": String(st.view === v), onclick: () => { st.view = v; st.selected = null; setMsg(""); draw(); } },
      label)));
}

async function draw() {
  if (!root) return;
  const body = h("div", { class: "cca-body", "data-testid": `cca-view-${st.view}` }, h("p", { class: "cca-muted" }, "Loading…"));
  root.replaceChildren(
    h("h3", {}, "Credits admin"),
    h("p", { class: "cca-muted" }, `Signed in as ${st.admin?.email || "?"} (admin). Every change is written to the audit log.`),
    nav(), h("div", { "data-testid": "cca-msg", class: st.msgOk ? "cca-ok" : "cca-error" }, st.msg), body);
  try {
    const view = { accounts: viewAccounts, report: viewReport, charts: viewCharts, holds: viewHolds,
                   attention: viewAttention, audit: viewAudit, verify: viewVerify }[st.view];
    body.replaceChildren(await view());
  } catch (e) {
    body.replaceChildren(h("p", { class: "cca-error" }, e.status === 403 ? "This needs the admin role." : e.message));
  }
}

function table(cols, rows, testid) {
  return h("table", { class: "cca-table", "data-testid": testid },
    h("thead", {}, h("tr", {}, cols.map(([label, , num]) => h("th", { class: num ? "cca-num" : "" }, label)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, cols.map(([, f, num]) => h("td", { class: num ? "cca-num" : "" }, f(r)))))
      : h("tr", {}, h("td", { colspan: String(cols.length), class: "cca-muted" }, "Nothing here."))));
}

async function viewAccounts() {
  if (st.selected) return viewAccount(st.selected);
  const search = h("input", { type: "search", placeholder: "Search email or name", value: st.q, "data-testid": "cca-search",
                              "aria-label": "Search accounts" });
  const data = await call("GET", `/credits/admin/accounts?limit=500&q=${encodeURIComponent(st.q)}`);
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") { st.q = search.value; draw(); } });
  return h("div", {},
    h("div", { class: "cca-row" }, search,
      h("button", { class: "cca-btn", onclick: () => { st.q = search.value; draw(); } }, "Search"),
      h("span", { class: "cca-muted" }, `${data.matched} account(s)`)),
    table([["Email", (a) => h("a", { href: "#", "data-testid": "cca-open-account",
                                      onclick: (e) => { e.preventDefault(); st.selected = a.id; draw(); } }, a.email)],
           ["Name", (a) => a.display_name], ["Role", (a) => a.role],
           ["Status", (a) => h("span", { class: a.active ? "" : "cca-bad" }, a.status)],
           ["Balance", (a) => cr(a.balance_micro), 1], ["Paid", (a) => cr(a.paid_micro), 1],
           ["Granted", (a) => cr(a.granted_micro), 1], ["Spent", (a) => cr(a.spent_micro), 1],
           ["Caps (day / month)", (a) => capsText(a)]], data.accounts, "cca-accounts"));
}

function capsText(a) {
  const c = a.caps;
  if (!c) return "—";
  const one = (v) => (v == null ? "none" : cr(v));
  return `${one(c.daily_micro)} / ${one(c.monthly_micro)}`;
}

async function viewAccount(id) {
  const [a, hist, keys] = await Promise.all([call("GET", `/credits/admin/accounts/${id}`),
                                             call("GET", `/credits/admin/accounts/${id}/history?limit=50`),
                                             call("GET", `/credits/admin/accounts/${id}/keys`)]);
  const amount = h("input", { inputmode: "decimal", placeholder: "credits", "data-testid": "cca-grant-amount",
                              "aria-label": "Credits to grant" });
  const note = h("input", { placeholder: "note (shown in their history)", "data-testid": "cca-grant-note",
                            "aria-label": "Note" });
  const rid = crypto.randomUUID?.() || String(Date.now());
  const grant = async () => {
    try {
      const r = await call("POST", `/credits/admin/accounts/${id}/grant`, { credits: amount.value.trim(), note: note.value,
                                                                         request_id: rid });
      setMsg(`Granted ${r.granted} credits to ${a.email}.`, true);
      draw();
    } catch (e) { setMsg(e.message); }
  };
  const daily = h("input", { inputmode: "decimal", placeholder: "no cap", value: a.caps?.daily_micro != null ? String(a.caps.daily_micro / 1e6) : "",
                             "data-testid": "cca-cap-daily", "aria-label": "Daily cap" });
  const monthly = h("input", { inputmode: "decimal", placeholder: "no cap", value: a.caps?.monthly_micro != null ? String(a.caps.monthly_micro / 1e6) : "",
                               "data-testid": "cca-cap-monthly", "aria-label": "Monthly cap" });
  const setCaps = async () => {
    try {
      await call("POST", `/credits/admin/accounts/${id}/caps`, { daily: daily.value.trim() || null,
                                                                 monthly: monthly.value.trim() || null });
      setMsg(`Caps of ${a.email} saved.`, true);
      draw();
    } catch (e) { setMsg(e.message); }
  };
  const toggle = async () => {
    try {
      await call("POST", `/credits/admin/accounts/${id}/status`, { active: !a.active });
      setMsg(`${a.email} is now ${a.active ? "disabled" : "active"}.`, true);
      draw();
    } catch (e) { setMsg(e.message); }
  };
  return h("div", { "data-testid": "cca-account" },
    h("button", { class: "cca-btn cca-secondary", onclick: () => { st.selected = null; st.msg = ""; draw(); } }, "← All accounts"),
    h("h4", {}, `${a.email}${a.display_name ? ` (${a.display_name})` : ""} · ${a.status} · ${a.role}`),
    h("p", { "data-testid": "cca-account-balance" }, `Balance ${cr(a.balance_micro)} credits · held ${cr(a.held_micro)} · paid ${cr(a.paid_micro)} · granted ${cr(a.granted_micro)} · spent ${cr(a.spent_micro)} · uncollected ${cr(a.uncollected_micro)}`),
    h("div", { class: "cca-row" }, h("strong", {}, "Grant"), amount, note,
      h("button", { class: "cca-btn", "data-testid": "cca-grant", onclick: grant }, "Grant credits")),
    h("div", { class: "cca-row" }, h("strong", {}, "Caps"), h("label", { class: "cca-field" }, "daily", daily),
      h("label", { class: "cca-field" }, "monthly", monthly),
      h("button", { class: "cca-btn", "data-testid": "cca-set-caps", onclick: setCaps }, "Set caps"),
      a.caps?.user_daily_micro != null || a.caps?.user_monthly_micro != null
        ? h("span", { class: "cca-muted" }, `their own lower caps: ${a.caps.user_daily_micro != null ? cr(a.caps.user_daily_micro) : "none"} / ${a.caps.user_monthly_micro != null ? cr(a.caps.user_monthly_micro) : "none"}`) : null),
    h("div", { class: "cca-row" }, h("button", { class: "cca-btn cca-secondary", "data-testid": "cca-toggle", onclick: toggle },
      a.active ? "Disable account" : "Enable account")),
    h("h4", {}, "Personal API keys"), viewKeys(a, keys.keys),
    h("h4", {}, "History (read only)"),
    table([["Time", (e) => when(e.created_ms)], ["Event", (e) => e.label || e.kind],
           ["Credits", (e) => cr(["grant", "purchase", "settle", "test"].includes(e.kind) ? e.delta : e.amount), 1],
           ["Balance after", (e) => cr(e.balance_after), 1], ["Node / note", (e) => e.node_class || e.note || ""],
           ["Model", (e) => e.model || ""]], hist.entries, "cca-history"));
}

// A person's personal API keys with their limits: a cap on what the key may spend in all and its last day
// (UTC). The admin sets them for any key (POST /credits/admin/keys/<id>/limits, audited); empty = none / never.
function viewKeys(a, keys) {
  if (!keys.length) return h("p", { class: "cca-muted", "data-testid": "cca-keys" }, `${a.email} has no personal API keys.`);
  return h("ul", { class: "cc-keys-list", "data-testid": "cca-keys" }, keys.map((k) =>
    h("li", { "data-testid": "cca-key", "data-key-id": k.id, "data-expired": k.expired ? "true" : null },
      h("div", { class: "cca-row" }, h("code", {}, `${k.hint}…`), k.label || "",
        h("span", { class: "cca-muted", "data-testid": "cca-key-limits" }, keyLimits(k))),
      keyLimitsForm(k, draw, { path: `/credits/admin/keys/${k.id}/limits`,
                               saved: () => setMsg(`Limits of key ${k.hint}… of ${a.email} saved.`, true) }))));
}

async function viewReport() {
  const from = h("input", { type: "date", value: st.from || daysAgo(29), "data-testid": "cca-from", "aria-label": "From" });
  const to = h("input", { type: "date", value: st.to || today(), "data-testid": "cca-to", "aria-label": "To" });
  const q = `from=${encodeURIComponent(from.value)}&to=${encodeURIComponent(to.value)}`;
  const rep = await call("GET", `/credits/admin/report?${q}`);
  const days = rep.days.filter((d) => d.runs || d.purchases || d.grants || d.test_purchases);
  const row = (d) => d;
  return h("div", {},
    h("div", { class: "cca-row" }, "From", from, "to", to,
      h("button", { class: "cca-btn", onclick: () => { st.from = from.value; st.to = to.value; draw(); } }, "Show"),
      h("a", { href: api.apiURL ? api.apiURL(`/credits/admin/report?${q}&format=csv`) : `/api/credits/admin/report?${q}&format=csv`,
               download: `credits-report-${from.value}-${to.value}.csv`, "data-testid": "cca-report-csv" }, "CSV")),
    h("p", { class: "cca-muted" }, "Billed = what the upstream billed the operator (its X-Comfy-Credits-Used, else the price rule); charged = what people paid; the difference is uncollected."),
    table([["Day", (d) => d.day], ["Runs", (d) => d.runs, 1], ["Billed by upstream", (d) => cr(d.billed), 1],
           ["Charged", (d) => cr(d.charged), 1], ["Uncollected", (d) => cr(d.uncollected), 1],
           ["Margin", (d) => cr(d.margin), 1], ["Purchased", (d) => cr(d.purchased), 1]],
          [...days.map(row), { ...rep.total, day: "Total" }], "cca-report"));
}

function bars(rows, value, label, testid) {
  const max = Math.max(1, ...rows.map(value));
  return h("div", { class: "cca-bars", "data-testid": testid }, rows.map((r) =>
    h("div", { class: "cca-bar-row", title: `${label(r)}: ${cr(value(r))}` },
      h("span", { class: "cca-bar-label" }, label(r)),
      h("span", { class: "cca-bar", style: `width:${Math.round((value(r) / max) * 100)}%` }),
      h("span", { class: "cca-num" }, cr(value(r))))));
}

async function viewCharts() {
  const c = await call("GET", "/credits/admin/charts?days=30");
  const active = c.days.filter((d) => d.purchased_micro || d.charged_micro);
  return h("div", {},
    h("h4", {}, "Purchases per day (credits)"), bars(active, (d) => d.purchased_micro, (d) => d.day, "cca-chart-purchases"),
    h("h4", {}, "Spend per day (credits charged)"), bars(active, (d) => d.charged_micro, (d) => d.day, "cca-chart-spend"),
    h("h4", {}, "Spend by node"), bars(c.by_node.slice(0, 12), (r) => r.charged_micro, (r) => r.node_class, "cca-chart-nodes"),
    h("h4", {}, "Spend by model"), bars(c.by_model.slice(0, 12), (r) => r.charged_micro, (r) => r.model, "cca-chart-models"),
    h("h4", {}, "Top accounts"),
    table([["Account", (a) => a.email], ["Charged", (a) => cr(a.charged), 1], ["Purchased", (a) => cr(a.purchased), 1],
           ["Runs", (a) => a.runs, 1]], c.top_accounts, "cca-top-accounts"));
}

async function viewHolds() {
  const r = await call("GET", "/credits/admin/holds");
  return h("div", {}, h("p", { class: "cca-muted" }, `${r.open_runs} run(s) in progress, ${r.reservations} queued prompt reservation(s).`),
    table([["Hold", (x) => x.hold_id], ["Account", (x) => x.email], ["Node", (x) => x.node_class],
           ["Credits", (x) => cr(x.amount_micro), 1], ["Since", (x) => when(x.created_ms)], ["Expires", (x) => when(x.expires_ms)]],
          r.holds, "cca-holds"));
}

async function viewAttention() {
  const r = await call("GET", "/credits/admin/attention?all=true");
  return h("div", {}, h("p", { class: "cca-muted" }, "Paid purchases that could not be credited. Settle them with `purchases resolve` (CLI)."),
    table([["Session", (x) => x.session_id], ["Account", (x) => String(x.account_id)], ["Paid", (x) => `${x.amount_minor} ${x.currency.toUpperCase()} minor units`],
           ["Method", (x) => x.method], ["Reason", (x) => x.reason], ["State", (x) => (x.resolved_ms ? `resolved: ${x.resolution}` : "NEEDS ATTENTION")]],
          r.purchases, "cca-attention"));
}

async function viewAudit() {
  const r = await call("GET", "/credits/admin/audit?limit=200");
  return table([["When", (x) => when(x.at_ms)], ["Who", (x) => x.actor], ["What", (x) => x.action], ["Target", (x) => x.target],
                ["Details", (x) => x.detail], ["From", (x) => x.source]], r.records, "cca-audit");
}

async function viewVerify() {
  const v = await call("GET", "/credits/admin/verify");
  return h("div", { "data-testid": "cca-verify" },
    h("p", { class: v.ok ? "cca-ok" : "cca-error" }, v.ok ? "OK: every invariant holds; the report's sums equal the ledger; the audit log is intact."
      : `${v.problems_total} problem(s)`),
    h("p", { class: "cca-muted" }, `${v.accounts} accounts, ${v.entries} entries, ${v.open_holds} open holds; balances ${cr(v.balance_total)}; audit records ${v.audit?.records ?? "?"}`),
    h("ul", {}, v.problems.map((p) => h("li", {}, p))));
}

app.registerExtension({
  name: "comfy.credits.admin",
  async setup() { await checkRole(); },
});
