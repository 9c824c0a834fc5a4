// What every dashboard page shares: calling the API, showing its errors, building
// DOM safely (never innerHTML with data), formatting, polling, the dialog, and the
// instance actions (which ones the state allows comes from the page's meta data,
// rendered by the server from vmflow/states/actions.py).

export const META = JSON.parse(document.getElementById("vmflow-meta").textContent);

// Keep equal to MAX_VERSION in webapp/api/microversion.py (a test checks it).
export const COMPUTE_VERSION = "2.85";

export class ApiError extends Error {
  constructor(message, { status = 0, kind = null, requestId = null } = {}) {
    super(message);
    this.status = status;
    this.kind = kind;
    this.requestId = requestId;
  }
}

// One request; resolves to {data, status, requestId} or throws ApiError whose
// message is the API's own (Nova's {"<kind>": {"code": N, "message": "..."}}).
export async function request(path, { method = "GET", body } = {}) {
  // X-Vmflow-Dashboard: the API accepts the login session's token (kept in an
  // HttpOnly cookie) only with this header, which no cross-site form can send.
  const headers = { Accept: "application/json", "X-Vmflow-Dashboard": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // The compute microversion the pages are written for (the API's maximum: lock
  // reasons, embedded flavors, event details...).  The compute API's proxy to the
  // images ended at 2.35, and the pages still read images through it.
  if (path.startsWith("/v2.1/")) {
    headers["OpenStack-API-Version"] =
      `compute ${path.startsWith("/v2.1/images") ? "2.35" : COMPUTE_VERSION}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The vmflow API cannot be reached. Is it running?");
  }
  if (response.status === 401) {
    // The session's token expired or was revoked: log in again, then come back here.
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/dashboard/login?expired=1&next=${encodeURIComponent(here)}`);
    throw new ApiError("Your session has expired. Please log in again.", { status: 401 });
  }
  const requestId = response.headers.get("X-OpenStack-Request-Id");
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    let kind = null;
    let message = null;
    if (data && typeof data === "object" && !Array.isArray(data)) {
      const keys = Object.keys(data);
      const inner = keys.length === 1 ? data[keys[0]] : null;
      if (inner && typeof inner.message === "string") {
        kind = keys[0];
        message = inner.message;
      }
    }
    throw new ApiError(
      message || `The API answered ${response.status} ${response.statusText || ""}`.trim() + ".",
      { status: response.status, kind, requestId });
  }
  return { data, status: response.status, requestId };
}

export async function get(path) {
  return (await request(path)).data;
}

// -- DOM ------------------------------------------------------------------------------

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function replace(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

// -- formatting -----------------------------------------------------------------------

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtAge(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
}

export function fmtMB(mb) {
  if (mb === null || mb === undefined) return "";
  return mb >= 1024 ? `${(mb / 1024).toFixed(mb % 1024 ? 1 : 0)} GB` : `${mb} MB`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(value < 10 ? 1 : 0) : value} ${units[unit]}`;
}

export function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}

export function powerName(value) {
  return META.power_states[String(value)] || String(value ?? "");
}

export function timeEl(iso, text) {
  return iso ? h("time", { datetime: iso, title: fmtTime(iso) }, text ?? fmtTime(iso)) : "";
}

// -- status badges: colour and text, never colour alone -------------------------------

const TONES = {
  ACTIVE: "ok", BUILD: "busy", REBOOT: "busy", HARD_REBOOT: "busy", REBUILD: "busy",
  SHUTOFF: "off", PAUSED: "warn", SUSPENDED: "warn", RESCUE: "warn", ERROR: "bad",
  DELETED: "off", SHELVED: "off", SHELVED_OFFLOADED: "off", VERIFY_RESIZE: "warn",
  done: "ok", running: "busy", waiting: "busy", pending: "off", skipped: "off",
  failed: "bad", reverting: "warn", reverted: "revert",
  up: "ok", down: "bad", enabled: "ok", disabled: "warn",
  INFO: "off", DEBUG: "off", WARNING: "warn", CRITICAL: "bad",
};

export function tone(text) {
  return TONES[text] || "off";
}

export function badge(text, toneName) {
  return h("span", { class: `badge tone-${toneName || tone(text)}` }, text);
}

export function serverStatus(server) {
  const status = server.status;
  return h("span", { class: "status-cell" },
    badge(status),
    server.locked ? h("span", { class: "lock", title: "Locked" }, "locked") : null);
}

// -- messages -------------------------------------------------------------------------

export function traceLink(requestId, text) {
  return h("a", { href: `/dashboard/trace/${encodeURIComponent(requestId)}`, class: "mono" },
    text || requestId);
}

// An API error as a readable message: the API's words, then what and where.
export function errorBox(err, prefix) {
  const facts = [];
  if (err.status) facts.push(`HTTP ${err.status}${err.kind ? ` ${err.kind}` : ""}`);
  return h("div", { class: "message error", role: "alert" },
    h("p", {}, prefix ? h("strong", {}, `${prefix}: `) : null, err.message),
    facts.length || err.requestId ? h("p", { class: "meta" }, facts.join(" "),
      err.requestId ? [facts.length ? " · request " : "request ", traceLink(err.requestId)] : null)
      : null);
}

export function showError(container, err, prefix) {
  if (!(err instanceof ApiError)) console.error(err);
  replace(container, errorBox(err instanceof ApiError ? err
    : new ApiError(`Something went wrong in the page: ${err.message || err}`), prefix));
}

let toastTimer = null;
export function toast(...content) {
  const el = $("#toast");
  replace(el, h("div", { class: "toast-body" }, ...content));
  el.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("shown"), 6000);
}

// -- polling --------------------------------------------------------------------------

// Run ``fn`` now and then every ``ms`` after it finishes (never two at once);
// paused while the tab is hidden.  Returns {stop(), now()}.
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false;
  async function tick() {
    clearTimeout(timer);
    if (stopped) return;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (err) { console.error(err); }
    running = false;
    if (stopped) return;
    if (again) { again = false; tick(); return; }
    timer = setTimeout(() => (document.hidden ? waitVisible() : tick()), ms);
  }
  function waitVisible() {
    document.addEventListener("visibilitychange", function onShow() {
      if (document.hidden) return;
      document.removeEventListener("visibilitychange", onShow);
      tick();
    });
  }
  tick();
  return { stop() { stopped = true; clearTimeout(timer); }, now: tick };
}

// Keep the latest error of a poll visible in ``container`` (cleared on success).
export function pollStatus(container) {
  return {
    ok() { replace(container); },
    failed(err) { showError(container, err, "Live updates failed (retrying)"); },
  };
}

// -- the dialog -----------------------------------------------------------------------

// Ask for confirmation and/or values; resolves to {field: value} or null if cancelled.
export function ask({ title, text = "", confirm = "OK", danger = false, fields = [] }) {
  const dialog = $("#dialog");
  $("#dialog-title").textContent = title;
  $("#dialog-text").textContent = text;
  $("#dialog-text").hidden = !text;
  const confirmButton = $("#dialog-confirm");
  confirmButton.textContent = confirm;
  confirmButton.classList.toggle("danger", danger);
  confirmButton.classList.toggle("primary", !danger);
  const inputs = fields.map((field, i) => {
    const id = `dialog-field-${i}`;
    const input = field.kind === "select"
      ? h("select", { id, name: field.name },
        (field.options || []).map((o) => h("option", { value: o.value }, o.label)))
      : h("input", { id, name: field.name, type: "text", value: field.default || "",
        autocomplete: "off" });
    return { field, input, row: h("div", { class: "field" }, h("label", { for: id }, field.label), input) };
  });
  replace($("#dialog-fields"), inputs.map((i) => i.row));
  return new Promise((resolve) => {
    const cancel = () => dialog.close("cancel");
    $("#dialog-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", () => {
      $("#dialog-cancel").removeEventListener("click", cancel);
      const values = {};
      for (const { field, input } of inputs) values[field.name] = input.value.trim();
      resolve(dialog.returnValue === "confirm" ? values : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    // A question about something that cannot be undone starts on Cancel.
    (inputs[0]?.input || (text ? $("#dialog-cancel") : confirmButton)).focus();
  });
}

// -- instance actions -----------------------------------------------------------------

// The actions ``server``'s state allows now, as the page offers them.
export function allowedActions(server) {
  const task = server["OS-EXT-STS:task_state"];
  const row = META.allowed[server["OS-EXT-STS:vm_state"]];
  if (!row) return [];
  const names = new Set(row[task ? "busy" : "idle"]);
  return META.actions.filter((a) => names.has(a.name)
    && (!a.when || Object.entries(a.when).every(([key, value]) => Boolean(server[key]) === value))
    && (!a.unless_task_state || task !== a.unless_task_state));
}

async function imageOptions() {
  const images = (await get("/v2.1/images/detail")).images;
  return images.filter((i) => i.status === "ACTIVE")
    .map((i) => ({ value: i.id, label: `${i.name} (${shortId(i.id)})` }));
}

// Ask what the action needs (confirmation, fields), then send it.  Resolves to the
// response ({status, requestId, ...}), or null if the user cancelled.
export async function perform(action, server) {
  const name = server.name || server.id;
  const fill = (text) => (text || "").replaceAll("{name}", name);
  let values = {};
  if (action.confirm || action.fields.length) {
    const fields = [];
    for (const field of action.fields) {
      if (field.kind === "image") {
        fields.push({ ...field, kind: "select", options: await imageOptions() });
      } else fields.push({ ...field, default: fill(field.default) });
    }
    values = await ask({ title: `${action.label} ${name}`, text: fill(action.confirm),
      confirm: action.label, danger: action.danger, fields });
    if (values === null) return null;
  }
  const path = `/v2.1/servers/${encodeURIComponent(server.id)}`;
  if (action.method === "DELETE") return request(path, { method: "DELETE" });
  const args = { ...(action.args || {}) };
  for (const field of action.fields) {
    if (values[field.name] !== "" || !field.optional) args[field.name] = values[field.name];
  }
  return request(`${path}/action`, {
    method: "POST", body: { [action.api]: Object.keys(args).length ? args : null },
  });
}

// A button for ``action`` on ``server``; reports the outcome as a toast (accepted)
// or an error message in ``errors``; calls ``done`` after an accepted request.
export function actionButton(action, server, { errors, done, className = "" } = {}) {
  return h("button", {
    type: "button", class: `${action.danger ? "danger-outline" : ""} ${className}`.trim(),
    dataset: { action: action.name },
    "aria-label": `${action.label} ${server.name || server.id}`,
    onclick: async (event) => {
      const button = event.currentTarget;
      if (errors) replace(errors);
      button.disabled = true;
      try {
        const result = await perform(action, server);
        if (result) {
          toast(`${action.label} of ${server.name || shortId(server.id)} accepted`,
            result.requestId ? [" · ", traceLink(result.requestId, "trace")] : null);
          if (done) done(action, result);
        }
      } catch (err) {
        if (errors) showError(errors, err, `${action.label} ${server.name || ""}`.trim());
        else toast(err.message);
      } finally {
        button.disabled = false;
      }
    },
  }, action.label);
}
