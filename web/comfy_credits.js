// comfy-credits: the Credits account in Settings → User, the Credits entry in
// Settings, and our own "not enough credits" dialog. One ES module, no build.
//
// How it fits both frontend eras (facts: shared/reference/frontend.md §2):
// - Sign-in lives in Settings → User: the built-in User panel has no API, so
//   a MutationObserver appends our "Credits account" section to it (class
//   .user-settings-container in both 1.2x–1.3x and the 2026 builds). The
//   Comfy.org panel above it keeps working untouched.
// - The Credits entry is a settings category (the only supported way to add
//   a nav entry) whose one custom-render row draws the panel. It is added on
//   sign-in and hidden (type "hidden") on sign-out, through the reactive
//   settings store, so the nav updates live.
// - Its label is "Credits" because that is where users look (the seed docs).
//   In the 1.27 era panels are matched by label, so Comfy.org's CreditsPanel
//   (.credits-container) would render in the same tab: while our panel is on
//   screen we hide it with one CSS rule. In the 2026 era panels are matched
//   by key ('root/Credits' vs 'credits'), so they never mix; Comfy.org's own
//   "Credits" entry exists only while someone is signed in to Comfy.org, and
//   we hide that nav entry too, so there is one "Credits" on this server.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING_ID = "ComfyCredits.Panel";
const CATEGORY = ["Credits", "Credits", "Panel"];
const CREDITS_PER_USD = 211;
const state = { account: null, busy: false, checkoutOptions: null, historyCursor: [], lastUpdated: null };

// ---------------------------------------------------------------- helpers
const css = document.createElement("link");
css.rel = "stylesheet";
css.href = new URL("./comfy_credits.css", import.meta.url).href;
document.head.appendChild(css);

// h() and call() are also the admin dashboard's (web/credits_admin.js imports them: both files are served
// from the pack's web directory and imported by URL, so this module is evaluated once).
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) el.append(kid);
  return el;
}

export async function call(method, path, body) {
  const res = await api.fetchApi(path, {
    method, credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try { data = await res.json(); } catch { /* empty body */ }
  if (!res.ok) {
    const err = new Error(data?.error?.message || `HTTP ${res.status}`);
    err.status = res.status;
    err.type = data?.error?.type;
    throw err;
  }
  return data;
}

const micro = (m) => Number(m) / 1e6;
const fmtCredits = (m) => micro(m).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const fmtUsd = (m) => (micro(m) / CREDITS_PER_USD).toLocaleString(undefined, { style: "currency", currency: "USD" });
const fmtTime = (ms) => new Date(ms).toLocaleString();

function toast(severity, summary, detail) {
  app.extensionManager?.toast?.add?.({ severity, summary, detail, life: 5000 });
}

// ---------------------------------------------------------------- settings entry
function settingsLookup() { return app.ui?.settings?.settingsLookup; }

function showCreditsEntry() {
  const lookup = settingsLookup();
  if (!lookup) return;
  if (SETTING_ID in lookup) lookup[SETTING_ID].type = renderPanel;
  else app.ui.settings.addSetting({ id: SETTING_ID, category: CATEGORY, name: "Credits", type: renderPanel,
                                    defaultValue: null });
}

function hideCreditsEntry() {
  const s = settingsLookup()?.[SETTING_ID];
  if (s) s.type = "hidden";
}

// Opens Settings on one entry. 1.2x–1.3x: showSettingsDialog(key) (our
// category's key is "root/<label>"). Newer builds expose no panel argument:
// open Settings, then pick the entry in its nav.
async function openSettingsAt(key, label) {
  const dlg = app.extensionManager?.dialog;
  if (dlg?.showSettingsDialog) { dlg.showSettingsDialog(key); return; }
  await app.extensionManager?.command?.execute("Comfy.ShowSettingsDialog");
  for (let i = 0; i < 150; i++) {  // up to 15 s: a busy machine mounts Settings slowly
    const item = [...document.querySelectorAll("[role=dialog] *")].find((el) =>
      el.children.length <= 2 && el.textContent.trim() === label && el.closest("nav, [role=listbox], aside, ul"));
    if (item) { (item.closest("a, button, li, [role=option]") || item).click(); return; }
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

function openCreditsPanel() { return openSettingsAt("root/Credits", "Credits"); }

// Every "Sign in" lands on the form: Settings → User, our section, email focused.
async function openSignIn() {
  await openSettingsAt("user", "User");
  for (let i = 0; i < 150; i++) {  // up to 15 s: a busy machine mounts Settings slowly
    const input = document.querySelector(".cc-account [data-testid=cc-email-input]");
    if (input) {
      input.scrollIntoView({ block: "center" });
      input.focus();
      // The dialog may still move focus to its own first control as it opens: take it back once.
      for (let j = 0; j < 10 && input.isConnected; j++) {
        await new Promise((ok) => setTimeout(ok, 100));
        if (!document.activeElement?.closest(".cc-account")) input.focus();
      }
      return;
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

// ---------------------------------------------------------------- session
// state.available: false when the pack's routes do not answer (the backend
// is down, or the pack failed and its refusal answers 503), so no form is
// offered that cannot work.
async function checkAvailable() {
  try {
    const res = await api.fetchApi("/credits/status", { credentials: "same-origin" });
    const body = res.ok ? await res.json().catch(() => null) : null;
    state.available = res.ok && body?.available === true;
  } catch { state.available = false; }
  return state.available;
}

async function refreshSession() {
  if (state.available === false) await checkAvailable();
  try {
    state.account = (await call("GET", "/credits/session")).account;
    state.lastUpdated = Date.now();
  } catch (e) {
    state.account = null;
    if (!e.status || e.status >= 500) await checkAvailable();
  }
  if (state.account) showCreditsEntry(); else hideCreditsEntry();
  document.querySelectorAll(".cc-account").forEach((el) => el.replaceWith(accountSection()));
  updateChip();
  return state.account;
}

// ---------------------------------------------------------------- Settings → User
// First in the User panel, titled so nobody takes it for Comfy.org's account
// (which the frontend draws below it, untouched).
const ACCOUNT_TITLE = "This server's credits account";
const FROM_OPERATOR = "Accounts here are made by the operator of this server; they are not Comfy.org accounts.";

function field(label, attrs) {
  const input = h("input", attrs);
  return h("label", { class: "cc-field" }, h("span", {}, label), input);
}

function accountSection() {
  const root = h("section", { class: "cc-account", "data-testid": "cc-account", "aria-labelledby": "cc-account-title" },
    h("h3", { id: "cc-account-title" }, ACCOUNT_TITLE));
  if (state.available === false) {
    root.append(h("p", { class: "cc-error", role: "status", "data-testid": "cc-unavailable" },
                  "Credits are unavailable on this server right now — paid API nodes cannot run. Ask the operator."),
                h("button", { class: "cc-btn cc-secondary", type: "button", onclick: async () => {
                  await checkAvailable(); await refreshSession(); } }, "Try again"));
    return root;
  }
  if (state.inviteError) {
    root.append(h("p", { class: "cc-error", role: "alert", "data-testid": "cc-invite-error" }, state.inviteError));
  }
  if (state.account) {
    const a = state.account;
    const pwMsg = h("p", { class: "cc-error", role: "alert" });
    const oldPw = field("Current password", { type: "password", autocomplete: "current-password", required: true,
                                              "data-testid": "cc-old-password" });
    const newPw = field("New password (8 characters or more)", { type: "password", autocomplete: "new-password",
                                                                 minlength: 8, required: true, "data-testid": "cc-new-password" });
    const newPw2 = field("New password again", { type: "password", autocomplete: "new-password", minlength: 8, required: true,
                                                 "data-testid": "cc-new-password2" });
    const pwForm = h("form", { class: "cc-form cc-stack", onsubmit: async (ev) => {
      ev.preventDefault();
      pwMsg.textContent = "";
      const [o, n, n2] = [oldPw, newPw, newPw2].map((l) => l.querySelector("input").value);
      if (n !== n2) { pwMsg.textContent = "The two new passwords differ."; return; }
      try {
        await call("POST", "/credits/password", { old_password: o, new_password: n });
        toast("success", "Password changed", "Your other sessions were signed out.");
        await refreshSession();
      } catch (e) { pwMsg.textContent = e.message; }
    } }, oldPw, newPw, newPw2, h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-change-password" },
                                  "Change password"), pwMsg);
    root.append(
      h("p", {}, "Signed in as ", h("b", { "data-testid": "cc-email" }, a.email),
        a.balance != null ? ` · ${a.balance} credits` : ""),
      h("div", { class: "cc-row" },
        h("button", { class: "cc-btn", type: "button", onclick: openCreditsPanel }, "Open Credits"),
        h("button", { class: "cc-btn cc-secondary", type: "button", "data-testid": "cc-signout", onclick: async () => {
          await call("DELETE", "/credits/session").catch(() => {});
          await refreshSession();
          toast("info", "Signed out", "Your Credits session has ended.");
        } }, "Sign out"),
        h("button", { class: "cc-btn cc-secondary", type: "button", "data-testid": "cc-signout-all", onclick: async () => {
          try {
            const r = await call("DELETE", "/credits/sessions");
            toast("info", "Signed out everywhere", `${r.signed_out_sessions} session(s) ended, this one included.`);
          } catch (e) { toast("error", "Could not sign out everywhere", e.message); }
          await refreshSession();
        } }, "Sign out everywhere")),
      h("details", { class: "cc-details" }, h("summary", {}, "Change password"), pwForm));
    return root;
  }
  if (state.invite) {
    // An invite link: sign-up for the invited email, shown locked (it is the account's name).
    const iEmail = field("Email", { type: "email", value: state.invite.email, readonly: true, "aria-readonly": "true",
                                    "data-testid": "cc-invite-email" });
    const iName = field("Name (optional)", { type: "text", autocomplete: "name", maxlength: 128 });
    const iPw = field("Password (8 characters or more)", { type: "password", autocomplete: "new-password", minlength: 8,
                                                          required: true, "data-testid": "cc-invite-password" });
    const iMsg = h("p", { class: "cc-error", role: "alert", "data-testid": "cc-invite-form-error" });
    const iForm = h("form", { class: "cc-form", "data-testid": "cc-invite-form", onsubmit: async (ev) => {
      ev.preventDefault();
      iMsg.textContent = "";
      try {
        await call("POST", "/credits/signup", { invite: state.invite.token, display_name: iName.querySelector("input").value,
                                                password: iPw.querySelector("input").value });
        state.invite = null;
        await refreshSession();
        toast("success", "Account created", "You are signed in; buy credits under Settings → Credits.");
      } catch (e) {
        iMsg.textContent = e.message;
        if (["invite_used", "invite_expired", "invite_invalid"].includes(e.type)) {
          state.invite = null; state.inviteError = e.message; refreshSession();
        }
      }
    } }, iEmail, iName, iPw, h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-invite-signup" },
                               "Create my account"));
    root.append(h("div", { class: "cc-invite", "data-testid": "cc-invite" },
      h("p", {}, "You were invited to this server. Choose a password to create your account."), iForm, iMsg));
    return root;
  }
  const email = field("Email", { type: "email", autocomplete: "username", required: true, "data-testid": "cc-email-input" });
  const pw = field("Password", { type: "password", autocomplete: "current-password", required: true,
                                 "data-testid": "cc-password-input" });
  const msg = h("p", { class: "cc-error", role: "alert", "data-testid": "cc-signin-error" });
  const form = h("form", { class: "cc-form", onsubmit: async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    try {
      await call("POST", "/credits/session", { email: email.querySelector("input").value,
                                               password: pw.querySelector("input").value });
      await refreshSession();
      toast("success", "Signed in", "The Credits entry is now in the Settings menu.");
    } catch (e) {
      msg.textContent = e.type === "bad_credentials" ? `${e.message} ${FROM_OPERATOR} Ask them if you have none.` : e.message;
    }
  } }, email, pw, h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-signin" }, "Sign in"));
  root.append(
    h("p", { class: "cc-muted" }, "Paid API nodes on this server run on this account's credits. ", FROM_OPERATOR),
    form, msg,
    h("p", { class: "cc-muted" }, "Forgot your password? Ask the operator of this server to set a new one."));
  if (state.signupAllowed) {
    const sEmail = field("Email", { type: "email", autocomplete: "username", required: true, "data-testid": "cc-signup-email" });
    const sName = field("Name (optional)", { type: "text", autocomplete: "name", maxlength: 128 });
    const sPw = field("Password (8 characters or more)", { type: "password", autocomplete: "new-password", minlength: 8,
                                                          required: true, "data-testid": "cc-signup-password" });
    const sMsg = h("p", { class: "cc-error", role: "alert" });
    const sForm = h("form", { class: "cc-form", onsubmit: async (ev) => {
      ev.preventDefault();
      sMsg.textContent = "";
      try {
        await call("POST", "/credits/signup", { email: sEmail.querySelector("input").value,
                                                display_name: sName.querySelector("input").value,
                                                password: sPw.querySelector("input").value });
        await refreshSession();
        toast("success", "Account created", "You are signed in; buy credits under Settings → Credits.");
      } catch (e) { sMsg.textContent = e.message; }
    } }, sEmail, sName, sPw, h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-signup" }, "Create account"));
    root.append(h("details", { class: "cc-details", "data-testid": "cc-signup-section" },
                  h("summary", {}, "No account yet? Create one"), sForm, sMsg));
  } else {
    root.append(h("p", { class: "cc-muted", "data-testid": "cc-no-signup" }, "No account yet? Ask the operator of this server for one."));
  }
  return root;
}

// 1.5x Settings nav (SettingDialog.vue + useSettingUI.ts in 1.58.1): every
// extension category goes under an "Other" heading with the folder icon,
// because CATEGORY_ICONS is keyed by the built-in keys and the "General"
// group takes only the core categories; no API places an entry elsewhere.
// So our entry is moved, as a DOM node, right after "User" in the main group
// and given the icon the frontend itself uses for credits (lucide coins, with
// the classes of its neighbour's icon); an "Other" group left empty is
// hidden. Vue keeps the node (it removes it by its parentNode on unmount and
// patches it in place), and a re-render that puts it back is undone here.
const OUR_NAV = '[data-nav-id="root/Credits"]';
function placeNavEntry() {
  // When Vue drops the whole "Other" group (our entry hidden on sign-out), it removes that group's element
  // only, not the entry we moved out of it: an entry whose home group is gone is stale.
  for (const el of document.querySelectorAll(OUR_NAV)) if (el.ccHome && !el.ccHome.isConnected) el.remove();
  const ours = document.querySelector(OUR_NAV);
  const user = document.querySelector('[data-nav-id="user"]');
  if (!ours || !user) return;
  const from = ours.parentElement;
  if (from !== user.parentElement) ours.ccHome = from;
  if (user.nextElementSibling !== ours) user.after(ours);
  const icon = ours.querySelector("i"), native = user.querySelector("i");
  if (icon && native) {
    const want = native.className.replace(/icon-\[[^\]]+\]/, "icon-[lucide--coins]");
    if (icon.className !== want) icon.className = want;
    icon.setAttribute("aria-hidden", "true");
  }
  if (from && from !== user.parentElement) {
    from.style.display = from.querySelector("[data-nav-id]") ? "" : "none";
  }
}

new MutationObserver(() => {
  if (chip && !chip.isConnected && state.account) updateChip();
  placeNavEntry();
  for (const panel of document.querySelectorAll(".user-settings-container")) {
    if (!panel.querySelector(".cc-account")) panel.prepend(accountSection());
  }
  // One "Credits" in the nav: hide Comfy.org's entry while ours exists.
  if (state.account) {
    for (const item of document.querySelectorAll("[role=option], .nav-item, [data-testid^=settings-nav]")) {
      if (item.textContent.trim() === "Credits" && !item.closest(".cc-keep") && item.dataset.ccOurs !== "1" &&
          item.closest("[aria-label='Account'], [data-group='account']")) item.style.display = "none";
    }
  }
}).observe(document.body, { childList: true, subtree: true });

// ---------------------------------------------------------------- the Credits panel
function renderPanel() {
  const root = h("div", { class: "cc-panel", "data-testid": "cc-panel" });
  document.body.classList.add("cc-credits-active");
  const stopWhenGone = setInterval(() => {
    if (!root.isConnected) { document.body.classList.remove("cc-credits-active"); clearInterval(stopWhenGone); }
  }, 500);
  // The row is "label | input" (FormItem.vue in both eras, with different
  // classes): once mounted, hide our row's label and give the row to the panel.
  let tries = 0;
  const widen = () => {
    if (!root.isConnected) return tries++ < 60 && requestAnimationFrame(widen);
    let cell = root.parentElement;
    for (let depth = 0; cell && depth < 5; depth++, cell = cell.parentElement) {
      const row = cell.parentElement;
      const label = row && [...row.children].find((c) => c !== cell && !c.contains(root) &&
                                                      c.textContent.trim() === "Credits");
      if (label) {
        // No empty label column: the label goes, and the input cell (justify-end in both eras) becomes the
        // whole row, its content starting at the left edge like a native panel's.
        label.style.display = "none";
        cell.style.setProperty("flex", "1");
        cell.style.setProperty("max-width", "100%");
        cell.style.setProperty("justify-content", "flex-start");
        for (let el = root.parentElement; el && el !== cell.parentElement; el = el.parentElement) {
          el.style.setProperty("width", "100%");
        }
        return;
      }
    }
  };
  requestAnimationFrame(widen);
  if (!state.account) {
    root.append(h("p", {}, "Sign in under Settings → User → Credits account."));
    return root;
  }
  const balance = h("div", { class: "cc-balance" });
  const history = h("div", { class: "cc-history" });
  const chart = h("div", { class: "cc-chart" });
  const keys = h("div", { class: "cc-keys" });
  const caps = h("div", { class: "cc-caps", "data-testid": "cc-caps" });
  root.append(balance, buySection(), h("h3", {}, "Spending caps"), caps, h("h3", {}, "Usage, last 30 days"), chart,
              h("h3", {}, "History"), history, h("h3", {}, "API keys"), keys);
  drawBalance(balance);
  drawCaps(caps);
  drawHistory(history, 0);
  drawChart(chart);
  drawKeys(keys);
  return root;
}

async function drawBalance(el) {
  try {
    const a = await call("GET", "/credits/balance");
    state.account = { ...state.account, ...a };
    state.lastUpdated = Date.now();
  } catch (e) { el.replaceChildren(h("p", { class: "cc-error" }, e.message)); return; }
  const a = state.account;
  el.replaceChildren(
    h("div", { class: "cc-big", "data-testid": "cc-balance" }, `${fmtCredits(a.balance_micro)} credits`),
    h("div", { class: "cc-muted" }, `≈ ${fmtUsd(a.balance_micro)} · paid ${fmtCredits(a.paid_micro)} · granted `,
      `${fmtCredits(a.granted_micro)} · held by running API nodes ${fmtCredits(a.held_micro)}`),
    h("div", { class: "cc-row cc-muted" }, `Last updated: ${fmtTime(state.lastUpdated)} `,
      h("button", { class: "cc-btn cc-secondary", "data-testid": "cc-refresh", onclick: () => drawBalance(el) }, "Refresh")));
  updateChip();
}

// Whole credits for an amount, half-up like the server (950 US cents → 2,005 credits).
function creditsFor(minor, c) {
  const micro = (minor * Number(c.rateMicro)) / 10 ** c.exponent;
  return Math.floor((micro + 500_000) / 1_000_000);
}

function buySection() {
  const box = h("div", { class: "cc-buy" }, h("h3", {}, "Buy credits"));
  (async () => {
    const o = state.checkoutOptions || (state.checkoutOptions = await call("GET", "/credits/checkout/options"));
    if (!o.enabled) { box.append(h("p", { class: "cc-muted" }, "Buying credits is not enabled on this server.")); return; }
    // Currencies and rates come from the operator's config; limits are in credits, shown in each currency.
    const currencies = o.currencies.map((c) => ({ ...c, rateMicro: Math.round(Number(c.credits_per_unit) * 1e6) }));
    const byCode = (code) => currencies.find((x) => x.code === code);
    const limits = (c) => ({
      min: Math.ceil((o.min_credits_micro * 10 ** c.exponent) / c.rateMicro),
      max: Math.floor((o.max_credits_micro * 10 ** c.exponent) / c.rateMicro),
    });
    const fmtMoney = (minor, c) => (minor / 10 ** c.exponent).toLocaleString(undefined, {
      style: "currency", currency: c.code.toUpperCase(), minimumFractionDigits: c.exponent, maximumFractionDigits: c.exponent });
    const cur = h("select", { "data-testid": "cc-currency", "aria-label": "Currency" },
      currencies.map((c) => h("option", { value: c.code }, c.code.toUpperCase())));
    if (byCode("usd")) cur.value = "usd";  // the presets are in USD; other currencies are a choice
    const method = h("select", { "data-testid": "cc-method", "aria-label": "Payment method" });
    const note = h("p", { class: "cc-muted", "data-testid": "cc-methods-note" });
    const amount = h("input", { type: "number", inputmode: "decimal", required: true, value: o.presets_usd[1] ?? 10,
                                "data-testid": "cc-amount", "aria-describedby": "cc-amount-help cc-amount-gets" });
    const help = h("span", { class: "cc-muted", id: "cc-amount-help", "data-testid": "cc-amount-help" });
    const gets = h("output", { class: "cc-gets", id: "cc-amount-gets", "data-testid": "cc-gets", "aria-live": "polite" });
    const msg = h("p", { class: "cc-error", role: "alert", "data-testid": "cc-buy-error" });
    const buy = h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-buy" }, "Buy");
    // The amount as typed, checked against the limits: {minor, credits} or {error}.
    const read = () => {
      const c = byCode(cur.value);
      const { min, max } = limits(c);
      const raw = amount.value.trim();
      const minor = Math.round(Number(raw) * 10 ** c.exponent);
      if (!raw || !Number.isFinite(Number(raw))) return { c, error: "Enter an amount." };
      if (Math.abs(Number(raw) * 10 ** c.exponent - minor) > 1e-6) {
        return { c, error: c.exponent ? `Use at most ${c.exponent} decimals.` : "Use a whole amount." };
      }
      if (minor < min || minor > max) return { c, error: `Enter between ${fmtMoney(min, c)} and ${fmtMoney(max, c)}.` };
      return { c, minor, credits: creditsFor(minor, c) };
    };
    const sync = () => {
      const c = byCode(cur.value);
      const { min, max } = limits(c);
      amount.min = min / 10 ** c.exponent;
      amount.max = max / 10 ** c.exponent;
      amount.step = c.exponent ? 1 / 10 ** c.exponent : 1;
      help.textContent = `${fmtMoney(min, c)} to ${fmtMoney(max, c)}`;
      const keep = method.value;
      method.replaceChildren(h("option", { value: "" }, "Choose on the payment page"),
        ...c.methods.map((m) => h("option", { value: m }, { card: "Card", wechat_pay: "WeChat Pay", alipay: "Alipay" }[m])));
      if (c.methods.includes(keep)) method.value = keep;
      note.textContent = c.methods.includes("wechat_pay") ? "" : o.methods_note;
      const r = read();
      gets.textContent = r.error ? "" : `You get ${r.credits.toLocaleString()} credits`;
      msg.textContent = r.error && amount.value.trim() ? r.error : "";
      amount.setAttribute("aria-invalid", r.error ? "true" : "false");
      buy.disabled = Boolean(r.error);
    };
    cur.addEventListener("change", sync);
    amount.addEventListener("input", sync);
    const presets = h("div", { class: "cc-row", role: "group", "aria-label": "Amount presets" }, o.presets_usd.map((p) =>
      h("button", { class: "cc-btn cc-secondary", type: "button", onclick: () => { cur.value = "usd"; amount.value = p; sync(); } },
        `$${p}`)));
    let attempt = null;  // a retry of the same purchase reuses its request id (one Stripe Idempotency-Key)
    const form = h("form", { class: "cc-form cc-buy-form", "data-testid": "cc-buy-form", novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      const r = read();
      if (r.error) { msg.textContent = r.error; amount.focus(); return; }   // never clamped silently
      msg.textContent = "";
      const body = { amount_minor: r.minor, currency: r.c.code, ...(method.value ? { method: method.value } : {}) };
      const same = JSON.stringify(body);
      if (!attempt || attempt.same !== same) {
        const bytes = crypto.getRandomValues(new Uint8Array(16));
        attempt = { same, id: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") };
      }
      buy.disabled = true;
      try {
        const res = await call("POST", "/credits/checkout", { ...body, request_id: attempt.id });
        attempt = null;
        sessionStorage.setItem("comfyCredits.pending", res.session_id);
        window.location.assign(res.checkout_url);
      } catch (e) { msg.textContent = e.message; buy.disabled = false; }
    } },
      h("label", { class: "cc-field" }, h("span", {}, "Amount"), amount), cur, method, buy,
      o.test_mode ? h("span", { class: "cc-test" }, "TEST MODE") : null);
    sync();
    box.append(presets, form, h("div", { class: "cc-row" }, gets, help), note, msg);
  })().catch((e) => box.append(h("p", { class: "cc-error" }, e.message)));
  return box;
}

// Spending caps (GET/POST /credits/caps, src/caps.c): the operator's cap and the person's own lower one per
// UTC day and month, what is used or held in the window, and when it resets. A person may set, lower, raise
// (up to the operator's) or clear their own; the server checks every value and its words are shown.
const CAP_WINDOWS = [["daily", "Today (UTC day)", "day"], ["monthly", "This month (UTC)", "month"]];

function capLine(c, w, label) {
  const op = c[w], own = c[`own_${w}`], left = c[`${w}_left_micro`];
  const bits = [op == null ? "no operator cap" : `operator's cap ${fmtCredits(c[`${w}_micro`])}`,
                own == null ? "no cap of your own" : `your cap ${fmtCredits(c[`own_${w}_micro`])}`,
                `used or held ${fmtCredits(c[`${w}_used_micro`])}`];
  if (left != null) bits.push(`${fmtCredits(left)} left`);
  return h("li", { "data-testid": `cc-cap-${w}`, "data-left": left ?? "" },
    h("strong", {}, `${label}: `), bits.join(" · "),
    left != null ? h("span", { class: "cc-muted" }, ` — resets ${fmtTime(c[`${w}_resets_ms`])}`) : null);
}

async function drawCaps(el) {
  let c;
  try { c = await call("GET", "/credits/caps"); } catch (e) { el.replaceChildren(h("p", { class: "cc-error" }, e.message)); return; }
  const msg = h("p", { class: "cc-error", role: "alert", "data-testid": "cc-caps-error" });
  const inputs = Object.fromEntries(CAP_WINDOWS.map(([w, , unit]) => [w, h("input", {
    type: "text", inputmode: "decimal", placeholder: "none", size: 10, value: c[`own_${w}`] ?? "",
    "data-testid": `cc-own-${w}`, "aria-label": `Your ${w} cap in credits (empty = none)`,
    title: c[w] == null ? `Credits per UTC ${unit}; empty = no cap of your own`
                        : `Credits per UTC ${unit}, at most the operator's ${c[w]}; empty = the operator's applies` })]));
  const save = h("button", { class: "cc-btn", type: "submit", "data-testid": "cc-caps-save" }, "Save my caps");
  const form = h("form", { class: "cc-form", "data-testid": "cc-caps-form", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [w] of CAP_WINDOWS) {
      const v = inputs[w].value.trim();
      if (v && !(/^\d+(\.\d{1,6})?$/.test(v))) {   // never guessed or clamped: the person fixes it
        msg.textContent = `Your ${w} cap: enter an amount of credits such as 50 or 12.5, or leave it empty.`;
        inputs[w].setAttribute("aria-invalid", "true");
        inputs[w].focus();
        return;
      }
      inputs[w].setAttribute("aria-invalid", "false");
      body[w] = v || null;
    }
    msg.textContent = "";
    save.disabled = true;
    try {
      await call("POST", "/credits/caps", body);
      toast("success", "Spending caps saved", "They apply to the next run.");
      await drawCaps(el);
    } catch (e) {
      msg.textContent = e.message;
      save.disabled = false;
    }
  } },
    ...CAP_WINDOWS.map(([w, , unit]) => h("label", { class: "cc-field" }, h("span", {}, `Your ${w} cap (per UTC ${unit})`), inputs[w])),
    save);
  el.replaceChildren(
    h("ul", { class: "cc-caps-list" }, CAP_WINDOWS.map(([w, label]) => capLine(c, w, label))),
    h("p", { class: "cc-muted" }, "A run is refused before it starts when its worst case would pass a cap. ",
      "You can set lower caps of your own; only the operator can raise theirs."),
    form, msg);
}

const BOUGHT = ["purchase", "test"];  // paid and TEST (sandbox / Stripe test mode) purchases
const METHOD_LABEL = { card: "Card", wechat_pay: "WeChat Pay", alipay: "Alipay" };
// History as a person reads it (GET /credits/history/rows, src/history.c):
// one row per run with its state, never a hold and its settle as two rows.
const STATE_LABEL = { running: "Running", charged: "Charged", released: "Released", uncollected: "Charged (capped)" };
const STATE_HELP = {
  running: "Credits are held for this node's worst case until it finishes; only what the provider bills is charged.",
  charged: "Charged what the provider billed.",
  released: "Nothing was charged: the hold went back to your balance.",
  uncollected: "The provider billed more than this run could be charged; you paid at most what was held.",
};
const FILTERS = [["", "All"], ["runs", "Runs"], ["purchases", "Purchases"], ["grants", "Grants"]];

function historyRow(r) {
  const tokens = r.tokens_in != null || r.tokens_out != null ? `${r.tokens_in ?? 0} / ${r.tokens_out ?? 0}` : "";
  let what, state = "", amount, detail = "";
  if (r.kind === "run") {
    what = [r.node_class, r.model].filter(Boolean).join(" · ") || "API run";
    state = h("span", { class: `cc-state cc-state-${r.state}`, title: STATE_HELP[r.state], "data-testid": "cc-run-state" },
              STATE_LABEL[r.state] || r.state);
    if (r.state === "running") { amount = `${fmtCredits(r.held)} held`; detail = "held until it finishes"; }
    else if (r.state === "released") { amount = "0.00"; detail = `${fmtCredits(r.held)} held, released`; }
    else {
      amount = `−${fmtCredits(r.charged)}`;
      detail = r.state === "uncollected"
        ? `provider billed ${fmtCredits(r.billed)}; ${fmtCredits(r.uncollected)} not charged to you`
        : `held ${fmtCredits(r.held)}`;
    }
    if (r.reason) detail = `${detail}${detail ? " · " : ""}${r.reason}`;
  } else {
    what = r.kind === "grant" ? (r.note ? `Credits granted: ${r.note}` : "Credits granted")
      : `${r.kind === "test" ? "TEST credits bought" : "Credits bought"}${r.method ? ` · ${METHOD_LABEL[r.method] || r.method}` : ""}`;
    amount = `+${fmtCredits(r.credits)}`;
  }
  // A purchase's receipt (receipts.py): Stripe's receipt page, or a local one marked TEST MODE.
  const receipt = r.receipt_url && BOUGHT.includes(r.kind)
    ? h("a", { class: "cc-receipt", href: r.receipt_url, target: "_blank", rel: "noopener", "data-testid": "cc-receipt" },
        r.kind === "test" ? "Receipt (TEST MODE)" : "Receipt")
    : null;
  return h("tr", { "data-testid": "cc-history-row", "data-kind": r.kind, "data-state": r.state || "" },
    h("td", {}, fmtTime(r.kind === "run" && r.state !== "running" ? r.ended_ms : r.started_ms)),
    h("td", {}, h("div", {}, what), detail ? h("div", { class: "cc-muted cc-detail", "data-testid": "cc-run-detail" }, detail) : null,
      receipt ? h("div", { class: "cc-detail" }, receipt) : null),
    h("td", {}, state), h("td", {}, tokens), h("td", { class: "cc-num" }, amount),
    h("td", { class: "cc-num" }, fmtCredits(r.balance_after)));
}

async function drawHistory(el, page, filter = el.dataset.filter || "") {
  if (filter !== (el.dataset.filter || "")) { state.historyCursor = []; page = 0; }
  el.dataset.filter = filter;
  const cursor = state.historyCursor[page];
  let data;
  try {
    data = await call("GET", `/credits/history/rows?limit=20${cursor ? `&cursor=${cursor}` : ""}${filter ? `&filter=${filter}` : ""}`);
  } catch (e) { el.replaceChildren(h("p", { class: "cc-error" }, e.message)); return; }
  state.historyCursor[page + 1] = data.next_cursor;
  const rows = data.rows.map(historyRow);
  const n = data.reserved_prompts.length;
  const reserved = data.reserved_micro > 0
    ? h("p", { class: "cc-reserved", "data-testid": "cc-reserved" },
        `${fmtCredits(data.reserved_micro)} credits reserved by ${n} queued prompt${n === 1 ? "" : "s"} — `,
        "not spent: each node is charged only what its provider bills, and the rest comes back when the prompt ends.")
    : null;
  const filters = h("div", { class: "cc-row cc-filters", role: "group", "aria-label": "Show" },
    FILTERS.map(([f, label]) => h("button", { class: `cc-btn cc-secondary${f === filter ? " cc-on" : ""}`, type: "button",
      "aria-pressed": f === filter ? "true" : "false", "data-testid": `cc-filter-${f || "all"}`,
      onclick: () => drawHistory(el, 0, f) }, label)));
  el.replaceChildren(filters, reserved ?? "",
    h("div", { class: "cc-table-wrap" }, h("table", { class: "cc-table", "data-testid": "cc-history" },
      h("thead", {}, h("tr", {}, ["Time", "What", "State", "Tokens in / out", "Credits", "Balance after"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "cc-muted" }, "Nothing yet."))))),
    h("div", { class: "cc-row" },
      h("button", { class: "cc-btn cc-secondary", disabled: page === 0, onclick: () => drawHistory(el, page - 1) }, "Newer"),
      h("button", { class: "cc-btn cc-secondary", disabled: !data.next_cursor, onclick: () => drawHistory(el, page + 1) }, "Older"),
      h("button", { class: "cc-btn cc-secondary", "data-testid": "cc-csv", onclick: exportCsv }, "Export CSV")));
}

async function exportCsv() {
  const out = [["time", "event", "node_class", "model", "tokens_in", "tokens_out", "credits", "balance_after",
                "payment_method", "currency", "amount_paid_minor", "note"]];
  let cursor = null;
  for (let i = 0; i < 500; i++) {
    const d = await call("GET", `/credits/history?limit=200${cursor ? `&cursor=${cursor}` : ""}`);
    for (const e of d.entries) {
      const amount = ["grant", "purchase", "settle"].includes(e.kind) ? e.delta : e.amount;
      out.push([new Date(e.created_ms).toISOString(), e.kind, e.node_class, e.model, e.tokens_in ?? "", e.tokens_out ?? "",
                micro(amount).toFixed(6), micro(e.balance_after).toFixed(6), e.method || "", e.currency || "",
                BOUGHT.includes(e.kind) ? e.amount_minor : "", e.note || ""]);
    }
    if (!d.next_cursor) break;
    cursor = d.next_cursor;
  }
  const text = out.map((r) => r.map((v) => `"${String(v).replaceAll('"', '""')}"`).join(",")).join("\n");
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "credits-history.csv" });
  document.body.append(a);
  a.click();
  a.remove();
}

async function drawChart(el) {
  let u;
  try { u = await call("GET", "/credits/usage?days=30"); } catch (e) { el.textContent = e.message; return; }
  const W = 560, H = 120, max = Math.max(1, ...u.days.map((d) => d.charged_micro));
  const bw = W / u.days.length;
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 16}`);
  svg.setAttribute("class", "cc-svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Credits spent per day");
  u.days.forEach((d, i) => {
    const r = document.createElementNS(svgNS, "rect");
    const bh = (d.charged_micro / max) * H;
    r.setAttribute("x", i * bw + 1); r.setAttribute("y", H - bh); r.setAttribute("width", Math.max(1, bw - 2));
    r.setAttribute("height", bh);
    const t = document.createElementNS(svgNS, "title");
    t.textContent = `${new Date(d.day_ms).toLocaleDateString()}: ${fmtCredits(d.charged_micro)} credits`;
    r.append(t);
    svg.append(r);
  });
  el.replaceChildren(svg, h("div", { class: "cc-row cc-muted" },
    u.families.length ? u.families.map((f) => h("span", { class: "cc-chip" }, `${f.family}: ${fmtCredits(f.charged_micro)} (${f.runs} runs)`))
                      : "No API runs in the last 30 days."));
}

// A key's limits (POST /credits/keys/<id>/limits): a cap on what it may spend in all (held or charged) and
// the last UTC day it works. Both are sent; empty means no cap / never. The server's words say what is wrong.
// keyLimits() and keyLimitsForm() are also the admin dashboard's (web/credits_admin.js), which saves through
// POST /credits/admin/keys/<id>/limits instead (options.path) and says so in its own message line (options.saved).
const utcDay = (ms) => new Date(ms - 1).toISOString().slice(0, 10);  // the last day a key works

export function keyLimits(k) {
  const bits = [k.cap == null ? "no cap" : `cap ${fmtCredits(k.cap_micro)} · used or held ${fmtCredits(k.cap_used)} · ` +
                                           `${fmtCredits(k.left_micro)} left`,
                // An expired key stays listed (marked, with its last day) until revoked; it does not work until
                // someone sets a later last day below.
                k.expired ? `expired: its last day was ${utcDay(k.expires_ms)} (UTC), it does not work`
                  : k.expires_ms ? `works through ${utcDay(k.expires_ms)} (UTC)` : "never expires"];
  return bits.join(" · ");
}

export function keyLimitsForm(k, redraw, options = {}) {
  const path = options.path || `/credits/keys/${k.id}/limits`;
  const saved = options.saved || (() => toast("success", "Key limits saved", `${k.hint}…`));
  const cap = h("input", { type: "text", inputmode: "decimal", placeholder: "no cap", size: 9, value: k.cap ?? "",
                           "data-testid": "cc-key-cap", "aria-label": `Cap for key ${k.hint} in credits (empty = none)` });
  const expires = h("input", { type: "date", value: k.expires_ms ? utcDay(k.expires_ms) : "",
                               "data-testid": "cc-key-expires", "aria-label": `Last day key ${k.hint} works (UTC; empty = never)` });
  const msg = h("span", { class: "cc-error", role: "alert", "data-testid": "cc-key-error" });
  const save = h("button", { class: "cc-btn cc-secondary", type: "submit", "data-testid": "cc-key-save" }, "Save limits");
  return h("form", { class: "cc-form cc-key-limits", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    const c = cap.value.trim();
    if (c && !/^\d+(\.\d{1,6})?$/.test(c)) { msg.textContent = "Cap: an amount of credits such as 50, or empty for none."; cap.focus(); return; }
    msg.textContent = "";
    save.disabled = true;
    try {
      const r = await call("POST", path, { cap: c || null, expires: expires.value || null });
      saved(r.key);
      await redraw();
    } catch (e) { msg.textContent = e.message; save.disabled = false; }
  } },
    h("label", { class: "cc-field" }, h("span", {}, "Cap (credits)"), cap),
    h("label", { class: "cc-field" }, h("span", {}, "Last day (UTC)"), expires), save, msg);
}

async function drawKeys(el) {
  let d;
  try { d = await call("GET", "/credits/keys"); } catch (e) { el.textContent = e.message; return; }
  const label = h("input", { placeholder: "What is it for?", maxlength: 100 });
  const shown = h("p", { class: "cc-secret" });
  const redraw = () => drawKeys(el);
  el.replaceChildren(
    h("p", { class: "cc-muted" }, "For headless runs: send the key as extra_data.api_key_comfy_org or 'Authorization: Bearer <key>' on /prompt. ",
      "A key can have its own cap on what it may spend and a last day; a run past either is refused."),
    h("ul", { class: "cc-keys-list" }, d.keys.map((k) => h("li", { "data-testid": "cc-key", "data-key-id": k.id,
                                                                  "data-expired": k.expired ? "true" : null },
      h("div", { class: "cc-row" }, h("code", {}, `${k.hint}…`), k.label || "",
        h("span", { class: "cc-muted", "data-testid": "cc-key-limits" }, keyLimits(k)),
        h("button", { class: "cc-btn cc-secondary", onclick: async () => { await call("DELETE", `/credits/keys/${k.id}`); redraw(); } }, "Revoke")),
      keyLimitsForm(k, redraw)))),
    h("div", { class: "cc-row" }, label, h("button", { class: "cc-btn cc-secondary", "data-testid": "cc-key-create", onclick: async () => {
      const k = await call("POST", "/credits/keys", { label: label.value });
      await drawKeys(el);
      el.append(h("p", { class: "cc-secret" }, "Copy it now, it is shown once: ", h("code", {}, k.key)));
    } }, "Create key")), shown);
}

// ---------------------------------------------------------------- balance in the top bar
// Where each era puts extension items in its top bar, in the normal flow (so
// never above a modal nor over the canvas toolbar):
// - 1.5x: the integrated tab bar's actions (data-testid
//   integrated-tab-bar-actions), before Comfy.org's account button. The
//   `topbarBadges` API would be the native spot, but badges are read once from
//   the markRaw'd extension object (extensionStore.ts, topbarBadgeStore.ts), so
//   their text cannot follow a balance.
// - 1.2x–1.3x: the menu bar, before the settings button group
//   (app.menu.settingsGroup, where ComfyUI-Manager puts its buttons too).
// Without either (legacy menu), the balance stays in Settings → Credits.
let chip = null;
function chipHost() {
  const bar = document.querySelector("[data-testid=integrated-tab-bar-actions]");
  if (bar) return { place: (el) => bar.prepend(el), inside: bar };
  const group = app.menu?.settingsGroup?.element;
  if (group?.isConnected) return { place: (el) => group.before(el), inside: group.parentElement };
  return null;
}

function updateChip() {
  if (!state.account) { chip?.remove(); chip = null; return; }
  if (!chip) chip = h("button", { class: "cc-topchip", type: "button", "data-testid": "cc-topchip",
                                   title: "Your credits on this server (opens Settings → Credits)", onclick: openCreditsPanel });
  const host = chipHost();
  if (host && (!chip.isConnected || !host.inside.contains(chip))) host.place(chip);
  const text = `${fmtCredits(state.account.balance_micro)} credits`;
  if (chip.textContent !== text) chip.textContent = text;
  chip.setAttribute("aria-label", `Your credits on this server: ${text}`);
  chip.classList.toggle("cc-low", micro(state.account.available_micro ?? state.account.balance_micro) < 10);
}

async function refreshBalance() {
  if (!state.account) return;
  try {
    state.account = { ...state.account, ...(await call("GET", "/credits/balance")) };
    state.lastUpdated = Date.now();
  } catch (e) {
    if (e.status === 401 || e.status === 403) { await refreshSession(); return; }
  }
  updateChip();
  document.querySelectorAll("[data-testid=cc-panel] .cc-balance").forEach((el) => drawBalance(el));
}

// A run ends one of three ways; each may have charged or released credits.
for (const ev of ["execution_success", "execution_error", "execution_interrupted"]) {
  api.addEventListener(ev, () => { refreshBalance(); });
}

// ---------------------------------------------------------------- dialogs
// The frontend's dialog service takes only Vue components
// (showExtensionDialog) or a fixed Confirm/Cancel pair (confirm), neither of
// which a no-build ES module can use for "Buy credits" / "Sign in", so a
// refusal gets our own modal: one at a time, focus moved in and trapped,
// Escape and a click outside close it and give focus back, the body scrolls
// inside max-height with the buttons always visible, and no second dialog
// from the app (see the queue wrapper below). Non-blocking notices use the
// frontend's own toast API.
let closeOpenDialog = null;
const FOCUSABLE = "button:not([disabled]), [href], input:not([disabled]), select, textarea, [tabindex]:not([tabindex='-1'])";

function modal({ title, body, actions, testid }) {
  closeOpenDialog?.();
  const before = document.activeElement;
  const id = `cc-dialog-${Date.now()}`;
  const box = h("div", { class: "cc-dialog-box", role: "dialog", "aria-modal": "true", "aria-labelledby": `${id}-t`,
                         "aria-describedby": `${id}-b` },
    h("h3", { id: `${id}-t` }, title), h("div", { class: "cc-dialog-body", id: `${id}-b` }, body),
    h("div", { class: "cc-row cc-dialog-actions" }, actions));
  const overlay = h("div", { class: "cc-dialog", "data-testid": testid }, box);
  const close = (restoreFocus = true) => {
    if (!overlay.isConnected) return;
    overlay.remove();
    document.removeEventListener("keydown", onKey, true);
    closeOpenDialog = null;
    if (restoreFocus && before?.isConnected) before.focus?.();
  };
  const onKey = (ev) => {
    // Keys go to the dialog only: no app shortcut (Ctrl+Enter would queue again) fires underneath.
    ev.stopPropagation();
    if (ev.key === "Escape") { ev.preventDefault(); close(); return; }
    if (ev.key !== "Tab") return;
    const f = [...box.querySelectorAll(FOCUSABLE)];
    if (!f.length) return;
    const i = f.indexOf(document.activeElement);
    if (ev.shiftKey && i <= 0) { ev.preventDefault(); f[f.length - 1].focus(); }
    else if (!ev.shiftKey && (i === -1 || i === f.length - 1)) { ev.preventDefault(); f[0].focus(); }
  };
  overlay.addEventListener("mousedown", (ev) => { if (ev.target === overlay) close(); });
  document.addEventListener("keydown", onKey, true);
  document.body.append(overlay);
  // Capture: the dialog is gone before a button's own action runs (which may open Settings and take focus).
  for (const b of actions) b.addEventListener("click", () => close(!b.onclickNavigates), true);
  actions[0]?.focus();
  closeOpenDialog = close;
  return close;
}

// "OpenAIDalle3 (#4) up to 8.44, … and 117 more": at most NODES_SHOWN_MAX lines.
const NODES_SHOWN_MAX = 3;
function nodeSummary(nodeErrors) {
  const items = Object.entries(nodeErrors || {}).map(([id, ne]) => {
    const est = ne?.errors?.[0]?.extra_info?.estimate_micro;
    return `${ne?.class_type ?? "node"} (#${id})${est != null ? ` up to ${fmtCredits(est)} credits` : ""}`;
  });
  if (!items.length) return null;
  const more = items.length - NODES_SHOWN_MAX;
  return h("ul", { class: "cc-nodes", "data-testid": "cc-nodes" },
    items.slice(0, NODES_SHOWN_MAX).map((t) => h("li", {}, t)),
    more > 0 ? h("li", { class: "cc-muted" }, `… and ${more} more`) : null);
}

const clip = (text, n = 280) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

function refusalDialog({ type, title, details, nodeErrors, extra }) {
  const needsSignIn = type === "credits_sign_in_required" || !state.account;
  const canBuy = type === "insufficient_credits" && state.account;
  let text = details || "";
  if (type === "insufficient_credits" && extra?.needed_micro != null) {
    text = `This workflow needs up to ${fmtCredits(extra.needed_micro)} credits; you have ` +
           `${fmtCredits(extra.available_micro ?? 0)} available.`;
  } else if (type === "credits_sign_in_required" && nodeErrors && Object.keys(nodeErrors).length) {
    text = "This workflow uses paid API nodes. Sign in with this server's credits account to run it.";
  }
  const actions = [];
  if (type !== "credits_unavailable" && type !== "credits_account_disabled") {
    if (needsSignIn) {
      actions.push(Object.assign(h("button", { class: "cc-btn", "data-testid": "cc-dialog-buy", onclick: () => openSignIn() },
                                   "Sign in"), { onclickNavigates: true }));
    } else if (type === "credits_cap_reached" && state.account) {
      actions.push(Object.assign(h("button", { class: "cc-btn", "data-testid": "cc-dialog-caps", onclick: () => openCreditsPanel() },
                                   "See my caps"), { onclickNavigates: true }));
    } else if (canBuy) {
      actions.push(Object.assign(h("button", { class: "cc-btn", "data-testid": "cc-dialog-buy", onclick: () => openCreditsPanel() },
                                   "Buy credits"), { onclickNavigates: true }));
    }
  }
  actions.push(h("button", { class: "cc-btn cc-secondary", "data-testid": "cc-dialog-close" }, "Close"));
  modal({ title, testid: "cc-refused", actions,
          body: [h("p", {}, clip(text)), nodeSummary(nodeErrors)] });
}

// ---------------------------------------------------------------- refused runs
const OUR_TYPES = ["insufficient_credits", "credits_sign_in_required", "credits_account_disabled", "credits_unavailable",
                   "credits_cap_reached"];  // a spending cap (#13): its message says which, its window and reset
const OUR_TITLES = ["Not enough credits", "Sign in to run API nodes", "Your Credits session has expired", "Spending cap reached",
                    "This Credits account is disabled", "Paid API nodes are disabled on this server",
                    "Credits are unavailable on this server"];

// Queue time: /prompt answered with our error type. The app catches the
// throw: 1.2x–1.3x (and 1.5x with its Issues tab turned off) then open
// "Prompt execution failed" with GitHub buttons on top of ours; 1.5x with the
// Issues tab (setting Comfy.RightSidePanel.ShowErrorsTab, default on) only
// files it there and outlines the refused nodes, no dialog. So where the
// Issues tab is on we rethrow (a resolved answer would make 1.5x announce
// "Job queued"); elsewhere we answer like a prompt that queued nothing
// ({node_errors: {}}, no prompt_id) and ours is the one dialog. Any other
// error is rethrown untouched.
function appFilesPromptErrorsQuietly() {
  try { return app.extensionManager?.setting?.get?.("Comfy.RightSidePanel.ShowErrorsTab") === true; }
  catch { return false; }
}
const originalQueue = api.queuePrompt.bind(api);
api.queuePrompt = async function (...args) {
  try {
    return await originalQueue(...args);
  } catch (e) {
    // 1.2x–1.5x keep the JSON body as e.response; fall back to the text, which starts with our message.
    const body = e?.response;
    const err = body?.error ?? e?.error;
    const text = String(e?.message ?? e);
    const title = OUR_TITLES.find((t) => text.startsWith(t));
    if ((err && OUR_TYPES.includes(err.type)) || title) {
      refusalDialog({ type: err?.type ?? (title === "Not enough credits" ? "insufficient_credits" : "credits_sign_in_required"),
                      title: err?.message ?? title, details: err?.details ?? text.slice(title?.length ?? 0).replace(/^:\s*/, ""),
                      nodeErrors: body?.node_errors, extra: err?.extra_info });
      if (err?.type === "credits_sign_in_required" || err?.type === "credits_account_disabled") refreshSession();
      e.comfyCreditsHandled = true;
      if (appFilesPromptErrorsQuietly()) throw e;
      return { node_errors: {}, comfy_credits_refused: err?.type ?? "refused" };
    }
    throw e;
  }
};

// Execution time: registered at module load, so before the app's own
// listener (frontend.md §6); our messages never say "Payment Required", so
// Comfy.org's top-up dialog cannot open for them.
api.addEventListener("execution_error", (ev) => {
  const m = ev.detail?.exception_message || "";
  if (m.startsWith("Spending cap reached for ")) {  // api_nodes.py: a cap refused the hold when the node ran
    ev.stopImmediatePropagation?.();
    refusalDialog({ type: "credits_cap_reached", title: "Spending cap reached",
                    details: m.split("\n")[0].replace(/^Spending cap reached for [^:]*:\s*/, "") });
    return;
  }
  if (m.includes("Not enough credits to run") || m.includes("signed-in Credits account")) {
    ev.stopImmediatePropagation?.();
    refusalDialog({ type: m.includes("signed-in") ? "credits_sign_in_required" : "insufficient_credits",
                    title: m.includes("signed-in") ? "Sign in to run API nodes" : "Not enough credits",
                    details: m.split("\n")[0] });
    refreshSession();
  }
});

// ---------------------------------------------------------------- price badges on API nodes
// Each API node shows the operator's price in credits beside the frontend's
// own badge (1.2x–1.3x draw Comfy.org's "$0.04/Run" from a table built into
// the frontend, useNodePricing.ts; 1.5x draw "credits/Run" only for node
// definitions that carry a price_badge, which ComfyUI 0.3.64 does not send).
// Both eras draw LGraphNode.badges, where a function is called every frame
// and its result drawn with getWidth(ctx) / draw(ctx, x, y) / height
// (LGraphNode.drawBadges), so the badge is a small object of ours, pushed in
// nodeCreated. The price is the worst case a run holds, for the node's
// current widget values (a linked input counts at its worst), from
// POST /credits/prices: the same table and C call as admission.
const PRICE_DEBOUNCE_MS = 250;
const priceOf = new WeakMap();          // node -> {sig, text}
let pricePending = new Map();           // node -> request
let priceTimer = null;

function nodeInputs(node) {
  const inputs = {};
  for (const w of node.widgets || []) {
    if (w?.name && (typeof w.value !== "object" || w.value === null)) inputs[w.name] = w.value;
  }
  for (const slot of node.inputs || []) {
    if (slot?.link != null && slot.name) inputs[slot.widget?.name || slot.name] = ["0", 0];  // linked: worst case
  }
  return inputs;
}

function lightTheme() {
  const bg = getComputedStyle(document.documentElement).getPropertyValue("--comfy-menu-bg").trim();
  const m = bg.match(/^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i);
  if (!m) return false;
  const [r, g, b] = m.slice(1).map((x) => parseInt(x, 16));
  return 0.299 * r + 0.587 * g + 0.114 * b > 150;
}

async function flushPrices() {
  priceTimer = null;
  const batch = [...pricePending.entries()].slice(0, 500);
  pricePending = new Map();
  if (!batch.length) return;
  let res;
  try {
    res = await call("POST", "/credits/prices", { nodes: batch.map(([, r], i) => ({ id: i, class_type: r.class_type, inputs: r.inputs })) });
  } catch { return; }  // no backend: no badge rather than a wrong one
  for (const p of res.prices) {
    const [node, r] = batch[p.id] || [];
    if (!node) continue;
    const text = p.error ? "" : `${p.used_default ? "~" : "up to "}${fmtCredits(p.micro)} credits`;
    priceOf.set(node, { sig: r.sig, text });
  }
  app.graph?.setDirtyCanvas?.(true, true);
  app.canvas?.setDirty?.(true, true);
}

function priceText(node) {
  const type = node.constructor?.nodeData?.name || node.type;
  const inputs = nodeInputs(node);
  const sig = `${type}|${JSON.stringify(inputs)}`;
  const known = priceOf.get(node);
  if (known?.sig === sig) return known.text;
  if (pricePending.get(node)?.sig !== sig) pricePending.set(node, { class_type: type, inputs, sig });
  priceTimer ??= setTimeout(flushPrices, PRICE_DEBOUNCE_MS);
  return known?.text ?? "";   // the last price until the new one arrives (no flicker)
}

function creditsBadge(node) {
  const badge = {
    text: "", height: 20, fontSize: 12, padding: 6, _rect: [0, 0, 0, 0],
    get boundingRect() { return this._rect; },
    get visible() { return this.text.length > 0; },
    getWidth(ctx) {
      if (!this.text) return 0;
      const font = ctx.font;
      ctx.font = `${this.fontSize}px sans-serif`;
      const w = ctx.measureText(this.text).width + this.padding * 2;
      ctx.font = font;
      return w;
    },
    draw(ctx, x, y) {
      if (!this.text) return;
      const w = this.getWidth(ctx);
      this._rect.splice(0, 4, x, y, w, this.height);
      const { font, fillStyle, textBaseline, textAlign } = ctx;
      const light = lightTheme();
      ctx.fillStyle = light ? "#f2dcae" : "#2f5d3a";
      ctx.beginPath();
      ctx.roundRect ? ctx.roundRect(x, y, w, this.height, 5) : ctx.rect(x, y, w, this.height);
      ctx.fill();
      ctx.font = `${this.fontSize}px sans-serif`;
      ctx.fillStyle = light ? "#3a2a00" : "#e8ffe9";
      ctx.textBaseline = "middle";
      ctx.textAlign = "left";
      ctx.fillText(this.text, x + this.padding, y + this.height / 2 + 1);
      Object.assign(ctx, { font, fillStyle, textBaseline, textAlign });
    },
  };
  return () => { badge.text = priceText(node); return badge; };
}

// ---------------------------------------------------------------- invite links
// ?credits_invite=<invite> (python -m comfy_credits_ext invite EMAIL): Settings
// → User opens on a sign-up form for the invited email; a link that is not
// valid, expired or already used says so there instead.
async function openInvite() {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("credits_invite");
  if (!token) return;
  params.delete("credits_invite");
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}${location.hash}`);
  try {
    const info = await call("GET", `/credits/invite?invite=${encodeURIComponent(token)}`);
    state.invite = { token, email: info.email };
    state.inviteError = null;
  } catch (e) {
    state.invite = null;
    state.inviteError = e.message;
  }
  document.querySelectorAll(".cc-account").forEach((el) => el.replaceWith(accountSection()));
  await openSettingsAt("user", "User");
  for (let i = 0; i < 150; i++) {
    const target = document.querySelector(".cc-account [data-testid=cc-invite-password], .cc-account [data-testid=cc-invite-error]");
    if (target) {
      target.scrollIntoView({ block: "center" });
      if (target.tagName !== "INPUT") return;
      target.focus();
      // The dialog may still move focus to its own first control as it opens: take it back.
      for (let j = 0; j < 10 && target.isConnected; j++) {
        await new Promise((ok) => setTimeout(ok, 100));
        if (!document.activeElement?.closest(".cc-account")) target.focus();
      }
      return;
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

// ---------------------------------------------------------------- return from checkout
async function completeCheckout() {
  const params = new URLSearchParams(window.location.search);
  const sid = params.get("credits_checkout");
  if (!sid) return;
  params.delete("credits_checkout");
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}${location.hash}`);
  if (sid === "cancelled") { toast("info", "Purchase cancelled", "Nothing was charged."); return; }
  toast("info", "Payment received", "Confirming it with the payment provider…");
  for (let i = 0; i < 30; i++) {
    try {
      const r = await call("GET", `/credits/checkout/${encodeURIComponent(sid)}`);
      if (r.state === "credited" || r.state === "already_credited") {
        toast("success", "Credits added", `Your balance is ${r.balance} credits.`);
        await refreshSession();
        return;
      }
      if (r.state === "not_paid") { toast("warn", "Payment not completed", "No credits were added."); return; }
      if (r.state === "needs_attention") { toast("warn", "Purchase under review", r.message); return; }
    } catch { /* not signed in yet, or the provider is slow */ }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
  toast("warn", "Payment still pending", "Your balance updates when the payment completes.");
}

app.registerExtension({
  name: "comfy.credits",
  nodeCreated(node) {
    if (node.constructor?.nodeData?.api_node && Array.isArray(node.badges)) {
      node.badges.push(creditsBadge(node));
      node.ccPriceBadge = true;
    }
  },
  async setup() {
    await checkAvailable();
    state.signupAllowed = state.available && (await call("GET", "/credits/signup").catch(() => null))?.allowed === true;
    await refreshSession();
    completeCheckout();
    if (state.available) openInvite();
    setInterval(() => { if (state.account && document.visibilityState === "visible") refreshSession(); }, 60_000);
  },
});
