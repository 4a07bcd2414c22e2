// subrelay dashboard: plain JavaScript over the admin API (/admin/api/...), authenticated by
// the session cookie; every state-changing call carries the session's CSRF token. Pages are
// built with DOM calls (never innerHTML from data) and show times in the browser's time zone.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const view = document.getElementById("view");
const flash = document.getElementById("flash");

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function notify(message, isError) {
  flash.textContent = message;
  flash.className = isError ? "error" : "";
  flash.hidden = false;
}

class ApiError extends Error {}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["x-csrf-token"] = CSRF;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    window.location.assign("/admin/login");
    throw new ApiError("signed out");
  }
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = value && value.error ? value.error.message : response.statusText;
    throw new ApiError(message);
  }
  return value;
}

/** Runs an action, reports its outcome, and redraws the page. */
async function act(what, fn) {
  try {
    await fn();
    notify(what);
  } catch (e) {
    notify(e.message, true);
  }
  await route();
}

const localTime = (value) => (value ? new Date(value).toLocaleString() : "—");
const num = (n) => Number(n || 0).toLocaleString();
const usd = (n) => "$" + Number(n || 0).toFixed(4);
const pct = (part, whole) => (whole ? ((100 * part) / whole).toFixed(1) + "%" : "—");
const nowSecs = () => Math.floor(Date.now() / 1000);
const secsOf = (input) => (input ? Math.floor(new Date(input).getTime() / 1000) : undefined);

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  return q.toString();
}

/** Round tick steps for values up to `max`: about four steps of 1, 2, 2.5 or 5 × 10^n
 * (whole numbers for counts, 25% steps for percentages). */
function yScale(max, kind) {
  if (kind === "pct") return { top: 100, step: 25 };
  if (!(max > 0)) return kind === "count" ? { top: 1, step: 1 } : { top: 1, step: 0.25 };
  const raw = max / 4;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / magnitude;
  let step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * magnitude;
  if (kind === "count") step = Math.max(1, Math.ceil(step));
  return { top: step * Math.ceil(max / step - 1e-9), step };
}

/** Decimals that show `step` (and its multiples) exactly. */
function decimalsOf(step) {
  for (let d = 0; d < 10; d += 1) {
    const scaled = step * Math.pow(10, d);
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6) return d;
  }
  return 10;
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

function tickLabel(value, step, kind) {
  if (kind === "pct") return value.toFixed(0) + "%";
  if (kind === "usd") return "$" + String(Number(value.toFixed(decimalsOf(step))));
  return compact.format(value);
}

/** A bar chart as SVG with a labelled y axis: `points` is [{label, value}]; `kind` is
 * `count`, `usd` or `pct` (how the axis is scaled and labelled). */
function barChart(title, points, format, kind) {
  const left = 58;
  const width = 330;
  const top = 8;
  const height = 116;
  const bottom = top + height;
  const max = Math.max(0, ...points.map((p) => p.value));
  const scale = yScale(max, kind);
  const step = (width - left) / Math.max(1, points.length);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${bottom + 16}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const shape = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  const ticks = Math.round(scale.top / scale.step);
  for (let t = 0; t <= ticks; t += 1) {
    const v = t * scale.step;
    const y = bottom - (t / ticks) * height;
    shape("line", { class: t === 0 ? "axis" : "grid", x1: left - 3, x2: width, y1: y, y2: y });
    shape("text", { class: "y-tick", x: left - 6, y: y + 3, "text-anchor": "end" }, tickLabel(v, scale.step, kind));
  }
  shape("line", { class: "axis", x1: left, x2: left, y1: top, y2: bottom });
  points.forEach((p, i) => {
    const h = (p.value / scale.top) * height;
    const rect = shape("rect", { x: left + i * step + 1, y: bottom - h, width: Math.max(1, step - 2), height: h });
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${p.label}: ${format(p.value)}`;
    rect.append(tip);
    if (points.length <= 8 || i % Math.ceil(points.length / 6) === 0) {
      shape("text", { x: left + i * step + 1, y: bottom + 13 }, p.label);
    }
  });
  return el("div", { class: "card chart", "data-max": String(max) }, el("div", { class: "label" }, `${title} (max ${format(max)})`), svg);
}

function card(label, value, id) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

/** Up to `cap` usage rows matching `params`, newest first, and the full count. */
async function usageRows(params, cap) {
  const rows = [];
  let total = 0;
  for (let offset = 0; offset < cap; offset += 1000) {
    const page = await api("GET", "/admin/api/usage?" + query({ ...params, limit: 1000, offset }));
    total = page.total;
    rows.push(...page.rows);
    if (rows.length >= total || page.rows.length === 0) break;
  }
  return { rows, total };
}

function summarize(rows) {
  const ok = rows.filter((r) => r.success).length;
  const tokens = rows.reduce((s, r) => s + r.input_tokens + r.output_tokens, 0);
  const cost = rows.reduce((s, r) => s + r.cost_usd, 0);
  return { ok, tokens, cost };
}

/** Per-bucket sums of `rows` over `count` buckets of `size` ms ending now. */
function buckets(rows, count, size, labelOf) {
  const end = Date.now();
  const start = end - count * size;
  const out = Array.from({ length: count }, (_, i) => ({
    label: labelOf(new Date(start + i * size)),
    requests: 0,
    tokens: 0,
    cost: 0,
    ok: 0,
  }));
  for (const r of rows) {
    const i = Math.floor((r.at_ms - start) / size);
    if (i < 0 || i >= count) continue;
    out[i].requests += 1;
    out[i].ok += r.success ? 1 : 0;
    out[i].tokens += r.input_tokens + r.output_tokens;
    out[i].cost += r.cost_usd;
  }
  return out;
}

// ---------- Overview ----------

async function overview() {
  const HOUR = 3600 * 1000;
  const [pool, day, week] = await Promise.all([
    api("GET", "/admin/api/accounts"),
    usageRows({ from: nowSecs() - 86400 }, 20000),
    usageRows({ from: nowSecs() - 7 * 86400 }, 50000),
  ]);
  const accounts = pool.accounts;
  const inFlight = accounts.reduce((s, a) => s + a.in_flight, 0);
  const usable = accounts.filter((a) => a.state === "available" || a.state === "busy");
  const cooling = accounts.filter((a) => a.state === "cooling");
  const disabled = accounts.filter((a) => a.state === "disabled");
  const d = summarize(day.rows);
  const w = summarize(week.rows);
  const partial = (set) => (set.rows.length < set.total ? ` (of the newest ${set.rows.length})` : "");
  const hourly = buckets(day.rows, 24, HOUR, (t) => t.getHours() + "h");
  const daily = buckets(week.rows, 7, 24 * HOUR, (t) => t.toLocaleDateString(undefined, { weekday: "short" }));
  const problems = cooling.concat(disabled);
  return [
    el("h1", {}, "Overview"),
    el("h2", {}, "Accounts"),
    el(
      "div",
      { class: "health", id: "health" },
      card("Usable", String(usable.length), "health-usable"),
      card("Cooling", String(cooling.length), "health-cooling"),
      card("Disabled", String(disabled.length), "health-disabled"),
      card("In flight now", String(inFlight), "ov-inflight"),
    ),
    problems.length
      ? el(
          "ul",
          { id: "problems" },
          problems.map((a) =>
            el(
              "li",
              {},
              el("a", { href: "#accounts" }, a.name),
              ` — ${a.state}: ${a.cooldown_reason || a.disabled_reason || (a.last_error && errorMessage(a.last_error)) || "no reason given"}`,
              a.cooldown_until ? ` (until ${localTime(a.cooldown_until)})` : "",
            ),
          ),
        )
      : el("p", { class: "muted" }, "Every account is healthy."),
    el("h2", {}, "Last 24 hours"),
    el(
      "div",
      { class: "cards" },
      card("Requests", num(day.total), "ov-requests-24h"),
      card("Success rate" + partial(day), pct(d.ok, day.rows.length), "ov-success-24h"),
      card("Tokens" + partial(day), num(d.tokens), "ov-tokens-24h"),
      card("Cost" + partial(day), usd(d.cost), "ov-cost-24h"),
    ),
    el(
      "div",
      { class: "charts" },
      barChart("Requests per hour", hourly.map((b) => ({ label: b.label, value: b.requests })), num, "count"),
      barChart("Tokens per hour", hourly.map((b) => ({ label: b.label, value: b.tokens })), num, "count"),
      barChart("Cost per hour", hourly.map((b) => ({ label: b.label, value: b.cost })), usd, "usd"),
      barChart(
        "Success rate per hour (%)",
        hourly.map((b) => ({ label: b.label, value: b.requests ? (100 * b.ok) / b.requests : 0 })),
        (v) => v.toFixed(0) + "%",
        "pct",
      ),
    ),
    el("h2", {}, "Last 7 days"),
    el(
      "div",
      { class: "cards" },
      card("Requests", num(week.total), "ov-requests-7d"),
      card("Success rate" + partial(week), pct(w.ok, week.rows.length), "ov-success-7d"),
      card("Tokens" + partial(week), num(w.tokens), "ov-tokens-7d"),
      card("Cost" + partial(week), usd(w.cost), "ov-cost-7d"),
    ),
    el(
      "div",
      { class: "charts" },
      barChart("Requests per day", daily.map((b) => ({ label: b.label, value: b.requests })), num, "count"),
      barChart("Tokens per day", daily.map((b) => ({ label: b.label, value: b.tokens })), num, "count"),
      barChart("Cost per day", daily.map((b) => ({ label: b.label, value: b.cost })), usd, "usd"),
      barChart(
        "Success rate per day (%)",
        daily.map((b) => ({ label: b.label, value: b.requests ? (100 * b.ok) / b.requests : 0 })),
        (v) => v.toFixed(0) + "%",
        "pct",
      ),
    ),
  ];
}

// ---------- Accounts ----------

/** The message inside an error body in the shapes the upstreams use: OpenAI and Codex
 * `{"error":{"message"}}`, Anthropic `{"type":"error","error":{"message"}}`, OAuth
 * `{"error","error_description"}`, and `{"detail"}`. */
function messageOf(value) {
  if (!value || typeof value !== "object") return null;
  const { error, detail } = value;
  if (typeof error === "string") return value.error_description ? `${error}: ${value.error_description}` : error;
  if (error && typeof error === "object") return error.message || error.code || error.type || null;
  if (typeof detail === "string") return detail;
  if (detail && typeof detail === "object") return detail.message || detail.code || null;
  return typeof value.message === "string" ? value.message : null;
}

/** An account's last error for people: "upstream answered 429 …: <message>" instead of the
 * JSON body it quotes. The gateway keeps only the body's first bytes, so a cut-off body is
 * searched for its message by hand. */
function errorMessage(text) {
  const at = text.indexOf("{");
  if (at < 0) return text;
  const prefix = text.slice(0, at).replace(/[\s:]+$/, "");
  const body = text.slice(at);
  let message = null;
  try {
    message = messageOf(JSON.parse(body));
  } catch (_) {
    const found = body.match(/"(?:message|detail|error_description)"\s*:\s*"((?:[^"\\]|\\.)*)("?)/);
    if (found) {
      try {
        message = JSON.parse(`"${found[1]}"`);
      } catch (_) {
        message = found[1];
      }
      if (!found[2]) message += "…";
    }
  }
  if (!message) return text;
  return prefix ? `${prefix}: ${message}` : message;
}

/** The last error's message, with the text as the gateway recorded it on demand. */
function lastError(text) {
  if (!text) return "—";
  const message = errorMessage(text);
  return el(
    "div",
    { class: "last-error" },
    el("span", { class: "message" }, message),
    message === text ? null : el("details", {}, el("summary", {}, "Details"), el("pre", { class: "raw" }, text)),
  );
}

/** Text cut to its cell's width, whole in a tooltip. */
const clip = (text) => el("span", { class: "clip", title: text }, text);

/** A time within a day as hours and minutes, a later one as its date (the tooltip has both). */
function shortTime(value) {
  const at = new Date(value);
  const soon = at.getTime() - Date.now() < 86400 * 1000;
  return soon
    ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : at.toLocaleDateString([], { month: "short", day: "numeric" });
}

function quotaBar(label, window) {
  if (!window) return null;
  const used = Math.max(0, Math.min(100, window.used_percent));
  return el(
    "div",
    { title: window.resets_at ? `resets ${localTime(window.resets_at)}` : "" },
    `${label} `,
    el("span", { class: "bar" }, el("span", { style: `width:${used}%` })),
    ` ${used.toFixed(0)}%`,
    window.resets_at ? el("div", { class: "muted" }, `resets ${shortTime(window.resets_at)}`) : null,
  );
}

// The last 5 minutes: success rate, median time to first token, and whether the account is
// demoted (far worse than the others of its groups: ranked after them, not disabled).
function recentOutcomes(p) {
  if (!p || !p.attempts) return null;
  const parts = [`${Math.round(p.success_rate * 100)}% ok of ${p.attempts}`];
  if (p.ttft_p50_ms != null) parts.push(`TTFT ${(p.ttft_p50_ms / 1000).toFixed(1)} s`);
  const why = p.demoted_for === "ttft" ? "slow first tokens" : "errors";
  return el(
    "div",
    { class: "performance muted", title: "last 5 minutes: answers ÷ attempts, median time to first token" },
    parts.join(" · "),
    p.demoted ? el("span", { class: "reason", title: "ranked after the other accounts of its groups, still used when they have no room" }, ` demoted (${why})`) : null,
  );
}

async function accounts() {
  const data = await api("GET", "/admin/api/accounts");
  const stored = new Map(data.stored.map((s) => [s.name, s]));
  const path = (name, rest) => "/admin/api/accounts/" + encodeURIComponent(name) + (rest || "");
  const rows = data.accounts.map((a) => {
    const s = stored.get(a.name);
    const fromConfig = !s || s.source === "config";
    const why = a.cooldown_reason || a.disabled_reason;
    return el(
      "tr",
      { "data-account": a.name },
      el("td", {}, clip(a.name), el("div", { class: "muted" }, `${a.platform} · ${a.type}`)),
      el(
        "td",
        {},
        el("span", { class: "state " + a.state }, a.state),
        why ? el("div", { class: "reason" }, why) : null,
        a.last_probe
          ? el("div", { class: "probe muted", title: a.last_probe.detail }, `probe ${a.last_probe.ok ? "ok" : "failed"} ${shortTime(a.last_probe.at)}`)
          : null,
        recentOutcomes(a.performance),
      ),
      el("td", {}, localTime(a.cooldown_until)),
      el("td", { class: "nowrap" }, `${a.in_flight} / ${a.concurrency || "∞"}`),
      el("td", { class: "nowrap" }, a.quota ? [quotaBar("5 h", a.quota.primary), quotaBar("7 d", a.quota.secondary)] : "—"),
      el("td", {}, localTime(a.token_expires_at)),
      el("td", { class: "error-cell" }, lastError(a.last_error)),
      el("td", {}, clip((a.groups || []).join(", "))),
      el(
        "td",
        { class: "actions" },
        el("button", { type: "button", "data-action": "reset", onclick: () => act(`${a.name}: reset`, () => api("POST", path(a.name, "/reset"))) }, "Reset"),
        el("button", { type: "button", "data-action": "test", title: "Probe the account now (no quota used)", onclick: () => act(`${a.name}: tested`, () => api("POST", path(a.name, "/test"))) }, "Test"),
        a.type === "oauth"
          ? el("button", { type: "button", "data-action": "refresh", onclick: () => act(`${a.name}: token refreshed`, () => api("POST", path(a.name, "/refresh"))) }, "Refresh token")
          : null,
        fromConfig
          ? el("span", { class: "muted" }, "from the config file")
          : [
              el(
                "button",
                { type: "button", "data-action": "toggle", onclick: () => act(`${a.name}: ${s.enabled ? "disabled" : "enabled"}`, () => api("PATCH", path(a.name), { enabled: !s.enabled })) },
                s.enabled ? "Disable" : "Enable",
              ),
              el("button", { type: "button", "data-action": "edit", onclick: () => editAccount(a, s) }, "Edit"),
              el(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "data-action": "delete",
                  onclick: () => {
                    if (window.confirm(`Delete account ${a.name}? Its credentials are gone for good.`)) {
                      act(`${a.name}: deleted`, () => api("DELETE", path(a.name)));
                    }
                  },
                },
                "Delete",
              ),
            ],
      ),
    );
  });
  const form = el(
    "form",
    { class: "inline", id: "add-account" },
    el("div", {}, el("label", { for: "acc-name" }, "Name"), el("input", { id: "acc-name", required: true })),
    el(
      "div",
      {},
      el("label", { for: "acc-platform" }, "Platform"),
      el("select", { id: "acc-platform" }, el("option", { value: "openai" }, "openai"), el("option", { value: "anthropic" }, "anthropic")),
    ),
    el("div", {}, el("label", { for: "acc-base" }, "Base URL (optional)"), el("input", { id: "acc-base", type: "url" })),
    el("div", {}, el("label", { for: "acc-key" }, "API key (write-only)"), el("input", { id: "acc-key", type: "password", autocomplete: "off", required: true })),
    el("div", {}, el("label", { for: "acc-groups" }, "Groups (comma-separated)"), el("input", { id: "acc-groups" })),
    el("div", {}, el("label", { for: "acc-conc" }, "Concurrency (0 = unlimited)"), el("input", { id: "acc-conc", type: "number", min: "0" })),
    el("button", { type: "submit", class: "primary" }, "Add account"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (id) => document.getElementById(id).value.trim();
    const body = { name: value("acc-name"), platform: value("acc-platform"), type: "apikey", api_key: value("acc-key") };
    if (value("acc-base")) body.base_url = value("acc-base");
    if (value("acc-groups")) body.groups = value("acc-groups").split(",").map((g) => g.trim()).filter(Boolean);
    if (value("acc-conc")) body.concurrency = Number(value("acc-conc"));
    document.getElementById("acc-key").value = "";
    act(`account ${body.name} added`, () => api("POST", "/admin/api/accounts", body));
  });
  return [
    el("h1", {}, "Accounts"),
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "accounts-table", class: "fit" },
        el("thead", {}, el("tr", {}, ["Account", "State", "Cooling until", "In flight", "Quota", "Token expires", "Last error", "Groups", "Actions"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows),
      ),
    ),
    el("h2", {}, "Add an API-key account"),
    form,
    el("p", {}, "Or ", el("a", { href: "#signin" }, "sign a ChatGPT or Claude account in"), " (OAuth)."),
  ];
}

function editAccount(a, s) {
  const concurrency = window.prompt(`Concurrency limit for ${a.name} (0 = unlimited)`, String(s.concurrency));
  if (concurrency === null) return;
  const groups = window.prompt(`Groups of ${a.name} (comma-separated)`, s.groups.join(", "));
  if (groups === null) return;
  act(`${a.name}: saved`, () =>
    api("PATCH", "/admin/api/accounts/" + encodeURIComponent(a.name), {
      concurrency: Number(concurrency),
      groups: groups.split(",").map((g) => g.trim()).filter(Boolean),
    }),
  );
}

// ---------- Sign an account in ----------

let signIn = null;

async function signin() {
  const value = (id) => document.getElementById(id).value.trim();
  const start = el(
    "form",
    { class: "inline", id: "signin-start" },
    el(
      "div",
      {},
      el("label", { for: "si-platform" }, "Provider"),
      el("select", { id: "si-platform" }, el("option", { value: "openai" }, "OpenAI (ChatGPT / Codex)"), el("option", { value: "anthropic" }, "Anthropic (Claude)")),
    ),
    el("div", {}, el("label", { for: "si-name" }, "Account name"), el("input", { id: "si-name", required: true })),
    el("div", {}, el("label", { for: "si-base" }, "Base URL (optional)"), el("input", { id: "si-base", type: "url" })),
    el("div", {}, el("label", { for: "si-groups" }, "Groups (comma-separated)"), el("input", { id: "si-groups" })),
    el("div", {}, el("label", { for: "si-priority" }, "Priority (lower is tried first)"), el("input", { id: "si-priority", type: "number" })),
    el("button", { type: "submit", class: "primary" }, "Start sign-in"),
  );
  start.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const platform = value("si-platform");
      const started = await api("POST", "/admin/api/oauth/start", { platform });
      signIn = {
        flow: started.flow,
        url: started.authorize_url,
        name: value("si-name"),
        base_url: value("si-base") || undefined,
        groups: value("si-groups") ? value("si-groups").split(",").map((g) => g.trim()).filter(Boolean) : undefined,
        priority: value("si-priority") ? Number(value("si-priority")) : undefined,
      };
      route();
    } catch (e) {
      notify(e.message, true);
    }
  });
  if (!signIn) {
    return [
      el("h1", {}, "Sign an account in"),
      el("p", {}, "Starts an OAuth sign-in (authorization code with PKCE). You sign in at the provider, then paste back the address it led to."),
      start,
    ];
  }
  const flow = signIn;
  const finish = el(
    "form",
    { class: "inline", id: "signin-finish" },
    el("div", {}, el("label", { for: "si-callback" }, "The address you were sent to (or the code)"), el("input", { id: "si-callback", required: true, autocomplete: "off" })),
    el("button", { type: "submit", class: "primary" }, "Finish sign-in"),
  );
  finish.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { flow: flow.flow, callback: value("si-callback"), name: flow.name };
    for (const k of ["base_url", "groups", "priority"]) if (flow[k] !== undefined) body[k] = flow[k];
    signIn = null;
    api("POST", "/admin/api/oauth/finish", body).then(
      () => {
        notify(`account ${flow.name} signed in`);
        window.location.hash = "#accounts";
      },
      (e) => {
        notify(e.message, true);
        route();
      },
    );
  });
  const cancel = el("button", { type: "button", onclick: () => { signIn = null; route(); } }, "Cancel");
  return [
    el("h1", {}, "Sign an account in"),
    el("p", {}, "1. Open the provider's page and sign in:"),
    el("p", {}, el("a", { href: flow.url, target: "_blank", rel: "noopener noreferrer", id: "authorize-link" }, "Open the sign-in page")),
    el("p", {}, "2. Copy the address of the page it leads to (it may fail to load; the address is what counts) and paste it here:"),
    finish,
    el("p", {}, cancel),
  ];
}

// ---------- Keys ----------

const money = (n) => "$" + Number(n).toFixed(2);

/** Every limit of a key, one kind a line: concurrency and rate, spend, models. */
function keyLimits(k) {
  const spend = [];
  if (k.daily_spend_limit !== null && k.daily_spend_limit !== undefined) spend.push(`${money(k.daily_spend_limit)} a day`);
  if (k.monthly_spend_limit !== null && k.monthly_spend_limit !== undefined) spend.push(`${money(k.monthly_spend_limit)} a month`);
  return [
    el("div", { "data-limit": "rate" }, `${k.concurrency || "∞"} at once · ${k.rpm_limit || "∞"} a minute`),
    el("div", { "data-limit": "spend" }, spend.length ? spend.join(" · ") : "no spending limit"),
    el("div", { "data-limit": "models" }, k.allowed_models ? "models: " + k.allowed_models.join(", ") : "every model"),
  ];
}

let createdKey = null;

async function keys() {
  const monthStart = new Date();
  monthStart.setDate(1);
  monthStart.setHours(0, 0, 0, 0);
  const [list, month] = await Promise.all([
    api("GET", "/admin/api/keys"),
    api("GET", "/admin/api/usage/totals?" + query({ by: "key", from: Math.floor(monthStart.getTime() / 1000) })),
  ]);
  const byKey = new Map(month.totals.map((t) => [t.bucket, t]));
  const path = (name, rest) => "/admin/api/keys/" + encodeURIComponent(name) + (rest || "");
  const rows = list.keys.map((k) => {
    const used = byKey.get(k.name);
    const expired = k.expires_at && k.expires_at * 1000 < Date.now();
    const state = !k.enabled ? "disabled" : expired ? "expired" : "enabled";
    return el(
      "tr",
      { "data-key": k.name },
      el("td", {}, clip(k.name)),
      el("td", { class: "nowrap" }, el("code", {}, `${k.prefix}…${k.suffix}`)),
      el("td", {}, clip(k.group)),
      el("td", {}, el("span", { class: "state " + (state === "enabled" ? "enabled" : "disabled") }, state)),
      el("td", {}, k.expires_at ? localTime(k.expires_at * 1000) : "never"),
      el("td", {}, num(used ? used.requests : 0)),
      el("td", {}, usd(used ? used.cost_usd : 0)),
      el("td", { class: "limits" }, keyLimits(k)),
      el(
        "td",
        { class: "actions" },
        k.source === "config"
          ? el("span", { class: "muted" }, "from the config file")
          : [
              k.enabled
                ? el("button", { type: "button", "data-action": "disable", onclick: () => act(`key ${k.name} disabled`, () => api("POST", path(k.name, "/disable"))) }, "Disable")
                : el("button", { type: "button", "data-action": "enable", onclick: () => act(`key ${k.name} enabled`, () => api("PATCH", path(k.name), { enabled: true })) }, "Enable"),
              el(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "data-action": "delete",
                  onclick: () => {
                    if (window.confirm(`Delete key ${k.name}? Clients using it are refused at once.`)) {
                      act(`key ${k.name} deleted`, () => api("DELETE", path(k.name)));
                    }
                  },
                },
                "Delete",
              ),
            ],
      ),
    );
  });
  const form = el(
    "form",
    { class: "inline", id: "create-key" },
    el("div", {}, el("label", { for: "key-name" }, "Name"), el("input", { id: "key-name", required: true })),
    el("div", {}, el("label", { for: "key-group" }, "Group"), el("input", { id: "key-group", placeholder: "default" })),
    el("div", {}, el("label", { for: "key-conc" }, "Concurrency (0 = unlimited)"), el("input", { id: "key-conc", type: "number", min: "0" })),
    el("div", {}, el("label", { for: "key-rpm" }, "Requests a minute (0 = unlimited)"), el("input", { id: "key-rpm", type: "number", min: "0" })),
    el("div", {}, el("label", { for: "key-daily" }, "Daily spend limit (USD)"), el("input", { id: "key-daily", type: "number", min: "0", step: "0.01" })),
    el("div", {}, el("label", { for: "key-monthly" }, "Monthly spend limit (USD)"), el("input", { id: "key-monthly", type: "number", min: "0", step: "0.01" })),
    el("div", {}, el("label", { for: "key-models" }, "Allowed models (comma-separated; empty = every model)"), el("input", { id: "key-models" })),
    el("div", {}, el("label", { for: "key-expires" }, "Expires (local time)"), el("input", { id: "key-expires", type: "datetime-local" })),
    el("button", { type: "submit", class: "primary" }, "Create key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (id) => document.getElementById(id).value.trim();
    const body = { name: value("key-name") };
    if (value("key-group")) body.group = value("key-group");
    if (value("key-conc")) body.concurrency = Number(value("key-conc"));
    if (value("key-rpm")) body.rpm_limit = Number(value("key-rpm"));
    if (value("key-daily")) body.daily_spend_limit = Number(value("key-daily"));
    if (value("key-monthly")) body.monthly_spend_limit = Number(value("key-monthly"));
    if (value("key-models")) body.allowed_models = value("key-models").split(",").map((m) => m.trim()).filter(Boolean);
    if (value("key-expires")) body.expires_at = secsOf(value("key-expires"));
    act(`key ${body.name} created`, async () => {
      const created = await api("POST", "/admin/api/keys", body);
      createdKey = { name: created.key.name, secret: created.api_key };
    });
  });
  // The new key is shown on this one rendering only, then forgotten.
  const shown = createdKey;
  createdKey = null;
  return [
    el("h1", {}, "Keys"),
    shown ? newKeyBox(shown) : null,
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "keys-table", class: "fit" },
        el("thead", {}, el("tr", {}, ["Name", "Key", "Group", "State", "Expires", "Requests this month", "Cost this month", "Limits", "Actions"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows),
      ),
    ),
    el("h2", {}, "Create a key"),
    form,
  ];
}

function newKeyBox(created) {
  const secret = el("div", { class: "secret", id: "new-key" }, created.secret);
  const copy = el("button", { type: "button", id: "copy-key" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(created.secret);
    } catch (_) {
      // No clipboard API outside a secure context: select the text for a manual copy.
      const range = document.createRange();
      range.selectNodeContents(secret);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      document.execCommand("copy");
    }
    copy.textContent = "Copied";
  });
  return el(
    "div",
    { class: "card" },
    el("p", {}, `The key ${created.name}. It is shown this once: copy it now.`),
    secret,
    el("p", {}, copy),
  );
}

// ---------- Usage ----------

const PAGE = 50;
const usageState = { filter: {}, offset: 0 };

async function usage() {
  const f = usageState.filter;
  const [page, perDay] = await Promise.all([
    api("GET", "/admin/api/usage?" + query({ ...f, limit: PAGE, offset: usageState.offset })),
    api("GET", "/admin/api/usage/totals?" + query({ ...f, by: "day" })),
  ]);
  const input = (id, label, type, value) =>
    el("div", {}, el("label", { for: id }, label), el("input", { id, type: type || "text", value: value || "" }));
  const localInput = (secs) => {
    if (!secs) return "";
    const t = new Date(secs * 1000);
    t.setMinutes(t.getMinutes() - t.getTimezoneOffset());
    return t.toISOString().slice(0, 16);
  };
  const form = el(
    "form",
    { class: "inline", id: "usage-filter" },
    input("f-key", "Key", "text", f.key),
    input("f-account", "Account", "text", f.account),
    input("f-model", "Model", "text", f.model),
    input("f-status", "Status (ok, failed or a code)", "text", f.status),
    input("f-from", "From (local time)", "datetime-local", localInput(f.from)),
    input("f-to", "To (local time)", "datetime-local", localInput(f.to)),
    el("button", { type: "submit", class: "primary" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (id) => document.getElementById(id).value.trim();
    usageState.filter = {
      key: value("f-key") || undefined,
      account: value("f-account") || undefined,
      model: value("f-model") || undefined,
      status: value("f-status") || undefined,
      from: secsOf(value("f-from")),
      to: secsOf(value("f-to")),
    };
    usageState.offset = 0;
    route();
  });
  const rows = page.rows.map((r) =>
    el(
      "tr",
      { "data-request": r.request_id },
      el("td", {}, localTime(r.at_ms)),
      el("td", {}, r.key),
      el("td", {}, r.account || "—"),
      el("td", {}, r.model),
      el("td", {}, r.transport === "websocket" ? "WebSocket" : "HTTP"),
      el("td", {}, `${r.status} ${r.success ? "ok" : "failed"}`),
      el("td", {}, num(r.input_tokens)),
      el("td", {}, num(r.output_tokens)),
      el("td", {}, r.priced ? usd(r.cost_usd) : "unpriced"),
      el("td", {}, `${r.duration_ms} ms`),
    ),
  );
  const last = Math.min(page.total, usageState.offset + page.rows.length);
  const pager = el(
    "div",
    { class: "pager" },
    el(
      "button",
      { type: "button", id: "prev-page", disabled: usageState.offset === 0, onclick: () => { usageState.offset = Math.max(0, usageState.offset - PAGE); route(); } },
      "← Newer",
    ),
    el("span", { id: "usage-count" }, page.total ? `${usageState.offset + 1}–${last} of ${page.total}` : "no rows"),
    el(
      "button",
      { type: "button", id: "next-page", disabled: last >= page.total, onclick: () => { usageState.offset += PAGE; route(); } },
      "Older →",
    ),
    el("button", { type: "button", id: "export-csv", onclick: () => exportCsv(f) }, "Export CSV"),
  );
  return [
    el("h1", {}, "Usage"),
    form,
    el("div", { class: "charts" }, barChart("Requests per day (UTC)", perDay.totals.map((t) => ({ label: t.bucket.slice(5), value: t.requests })), num, "count")),
    pager,
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "usage-table" },
        el("thead", {}, el("tr", {}, ["Time", "Key", "Account", "Model", "Via", "Status", "Input tokens", "Output tokens", "Cost", "Duration"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows),
      ),
    ),
  ];
}

const CSV_COLUMNS = ["request_id", "at_ms", "key", "account", "endpoint", "model", "stream", "status", "success", "input_tokens", "cached_input_tokens", "cache_creation_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "priced", "duration_ms", "ttft_ms", "attempts", "client_disconnected", "transport"];

// A text cell starting with = + - @ tab or CR would be a live formula in a spreadsheet (a model
// name `=HYPERLINK(...)` from any API key): prefixed with ' as OWASP advises. Numbers stay.
function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

async function exportCsv(filter) {
  try {
    const { rows } = await usageRows(filter, Number.MAX_SAFE_INTEGER);
    const lines = [["time", ...CSV_COLUMNS].join(",")];
    for (const r of rows) {
      lines.push([new Date(r.at_ms).toISOString(), ...CSV_COLUMNS.map((c) => r[c])].map(csvCell).join(","));
    }
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "subrelay-usage.csv", id: "csv-link" });
    document.body.append(link);
    link.click();
    link.remove();
    notify(`exported ${rows.length} rows`);
  } catch (e) {
    notify(e.message, true);
  }
}

// ---------- Audit ----------

// Newest first; "Older" follows the server's cursor, "Newest" goes back to the top.
const auditState = { action: "", cursors: [] };

/** The top-level fields a change touched (a creation or deletion: the whole thing). */
function auditChanged(before, after) {
  if (!before || !after || typeof before !== "object" || typeof after !== "object") return "—";
  const skip = new Set(["restart_needed", "requested_by", "updated_at"]);
  const fields = Object.keys(after).filter((k) => !skip.has(k) && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  return fields.length ? fields.join(", ") : "—";
}

async function audit() {
  const cursor = auditState.cursors[auditState.cursors.length - 1];
  const page = await api("GET", "/admin/api/audit?" + query({ action: auditState.action, limit: PAGE, cursor }));
  const form = el(
    "form",
    { class: "inline", id: "audit-filter" },
    el("div", {}, el("label", { for: "a-action" }, "Action starts with (key., account., group., config.)"), el("input", { id: "a-action", type: "text", value: auditState.action })),
    el("button", { type: "submit", class: "primary" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    auditState.action = document.getElementById("a-action").value.trim();
    auditState.cursors = [];
    route();
  });
  const detail = (value) => (value === null || value === undefined ? "—" : el("details", {}, el("summary", {}, "show"), el("pre", {}, JSON.stringify(value, null, 2))));
  const rows = page.entries.map((e) =>
    el(
      "tr",
      { "data-audit": String(e.id) },
      el("td", {}, localTime(e.at_ms)),
      el("td", {}, e.actor),
      el("td", {}, e.client || "—"),
      el("td", {}, el("code", {}, e.action)),
      el("td", {}, e.target),
      el("td", {}, auditChanged(e.before, e.after)),
      el("td", {}, detail(e.before)),
      el("td", {}, detail(e.after)),
    ),
  );
  const pager = el(
    "div",
    { class: "pager" },
    el("button", { type: "button", id: "audit-newest", disabled: auditState.cursors.length === 0, onclick: () => { auditState.cursors = []; route(); } }, "← Newest"),
    el("span", { id: "audit-count" }, page.entries.length ? `${page.entries.length} entries` : "no entries"),
    el("button", { type: "button", id: "audit-older", disabled: page.next_cursor === null, onclick: () => { auditState.cursors.push(page.next_cursor); route(); } }, "Older →"),
  );
  return [
    el("h1", {}, "Audit"),
    el("p", { class: "muted" }, "Every change to keys, accounts, groups and the configuration: who, when, from where, and the thing before and after (secrets are never stored)."),
    form,
    pager,
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { id: "audit-table" },
        el("thead", {}, el("tr", {}, ["Time", "Who", "Client", "Action", "Target", "Changed", "Before", "After"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows),
      ),
    ),
  ];
}

// ---------- Settings ----------

async function settings() {
  const s = await api("GET", "/admin/api/settings");
  return [
    el("h1", {}, "Settings"),
    el("p", {}, "Config file: ", el("code", { id: "config-file" }, s.file || "none (defaults and the environment)")),
    el("h2", {}, "From the environment"),
    s.from_env.length
      ? el("ul", { id: "from-env" }, s.from_env.map((e) => el("li", {}, el("code", {}, e.key), " ← ", el("code", {}, e.variable))))
      : el("p", { class: "muted", id: "from-env" }, "No value came from the environment."),
    el("h2", {}, "Effective configuration (secrets redacted)"),
    el("pre", { class: "scroll", id: "effective-config" }, s.effective_yaml),
    el("p", { class: "muted" }, "Change the file (or the environment) and restart subrelay to change these."),
  ];
}

// ---------- routing ----------

const PAGES = { overview, accounts, signin, keys, usage, audit, settings };

async function route() {
  const name = (window.location.hash || "#overview").slice(1);
  const render = PAGES[name] || overview;
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", link.id === "nav-" + name);
  }
  try {
    const nodes = await render();
    view.replaceChildren(...nodes.flat().filter(Boolean));
    view.setAttribute("data-page", name);
  } catch (e) {
    if (!(e instanceof ApiError && e.message === "signed out")) {
      view.replaceChildren(el("p", { class: "error" }, e.message));
    }
  }
}

document.getElementById("signout").addEventListener("click", async () => {
  await fetch("/admin/logout", { method: "POST", headers: { "x-csrf-token": CSRF }, credentials: "same-origin" });
  window.location.assign("/admin/login");
});
// A message stays until the user moves on through the menu.
for (const link of document.querySelectorAll("header nav a")) {
  link.addEventListener("click", () => {
    flash.hidden = true;
  });
}
window.addEventListener("hashchange", () => route());
route();
