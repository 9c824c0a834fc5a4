// Instance detail: fields, actions, fault, operations with their events, console
// log and diagnostics.
import {
  $, ApiError, actionButton, allowedActions, badge, fmtAge, fmtMB, get, h, poll, pollStatus,
  powerName, replace, request, serverStatus, shortId, showError, timeEl, traceLink,
} from "./common.js";

const serverId = $("#instance").dataset.serverId;
const base = `/v2.1/servers/${encodeURIComponent(serverId)}`;
const status = pollStatus($("#poll-errors"));
const flavors = new Map();
const images = new Map();
const openActions = new Set(); // request ids whose events are shown
let current = null;
let gone = false;
let toolbarKey = null;
let updates = null;

async function loadNames() {
  try {
    const [flavorList, imageList] = await Promise.all([
      get("/v2.1/flavors/detail"), get("/v2.1/images/detail")]);
    for (const f of flavorList.flavors) flavors.set(f.id, f);
    for (const i of imageList.images) images.set(i.id, i);
  } catch {
    // Names are a nicety: ids are shown instead.
  }
}

// -- the server ----------------------------------------------------------------------

function field(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...(value.length ? value : [h("span", { class: "muted" }, "—")]))];
}

function renderFields(s) {
  // From microversion 2.47 the server holds a copy of its flavor (no id).
  const flavor = s.flavor?.original_name ? { ...s.flavor, name: s.flavor.original_name }
    : flavors.get(s.flavor?.id);
  const image = images.get(s.image?.id);
  const task = s["OS-EXT-STS:task_state"];
  replace($("#fields"),
    field("Status", serverStatus(s)),
    field("VM state", h("span", { class: "mono" }, s["OS-EXT-STS:vm_state"])),
    field("Task state", ...(task ? [h("span", { class: "mono" }, task)] : [])),
    field("Power state", powerName(s["OS-EXT-STS:power_state"])),
    field("Host", ...(s["OS-EXT-SRV-ATTR:host"] ? [s["OS-EXT-SRV-ATTR:host"]] : [])),
    field("Availability zone", ...(s["OS-EXT-AZ:availability_zone"] ? [s["OS-EXT-AZ:availability_zone"]] : [])),
    field("Flavor", flavor ? `${flavor.name} · ${flavor.vcpus} vCPU · ${fmtMB(flavor.ram)} RAM · ${flavor.disk} GB disk`
      : s.flavor?.id || ""),
    field("Image", image ? image.name : "", h("span", { class: "sub mono muted" }, ` ${s.image?.id || ""}`)),
    field("Project / user", `${s.tenant_id} / ${s.user_id}`),
    field("Created", timeEl(s.created), h("span", { class: "muted" }, ` (${fmtAge(s.created)} ago)`)),
    field("Launched", ...(s["OS-SRV-USG:launched_at"] ? [timeEl(s["OS-SRV-USG:launched_at"])] : [])),
    field("Updated", timeEl(s.updated)),
    field("Locked", s.locked ? `yes${s.locked_reason ? ` (${s.locked_reason})` : ""}` : "no"),
    field("Metadata", ...(Object.keys(s.metadata || {}).length
      ? [h("span", { class: "mono" }, JSON.stringify(s.metadata))] : [])));
}

function renderToolbar(s) {
  const allowed = allowedActions(s);
  const key = JSON.stringify([allowed.map((a) => a.name), s.name]);
  if (key === toolbarKey) return;
  toolbarKey = key;
  const focused = $("#toolbar").contains(document.activeElement)
    ? document.activeElement.dataset.action : null;
  const done = () => updates.now();
  replace($("#toolbar"), allowed.length
    ? allowed.map((a) => actionButton(a, s, { errors: $("#action-errors"), done }))
    : h("p", { class: "empty" }, `Nothing can be started while the instance is ${s.status}`
      + `${s["OS-EXT-STS:task_state"] ? ` (${s["OS-EXT-STS:task_state"]})` : ""}.`));
  if (focused) $(`button[data-action="${focused}"]`, $("#toolbar"))?.focus();
}

function renderFault(s) {
  if (s.status !== "ERROR") {
    replace($("#fault"));
    return;
  }
  const fault = s.fault;
  replace($("#fault"), h("section", { class: "message error", "aria-labelledby": "fault-title" },
    h("p", {}, h("strong", { id: "fault-title" }, "Fault: "),
      fault ? fault.message : "The instance is in ERROR; no fault was recorded."),
    fault ? h("p", { class: "meta" }, `code ${fault.code} · `, timeEl(fault.created)) : null,
    fault?.details ? h("details", {}, h("summary", {}, "Technical details"),
      h("pre", { class: "block" }, fault.details)) : null));
}

// -- operations (instance actions) ---------------------------------------------------

function eventsTable(events) {
  if (!events.length) return h("p", { class: "empty" }, "No step has finished yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "compact" },
    h("thead", {}, h("tr", {}, ["Event", "Result", "Host", "Started", "Finished", "Details"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, events.map((e) => h("tr", {},
      h("td", { class: "mono" }, e.event),
      h("td", {}, badge(e.result, e.result === "Success" ? "ok" : "bad")),
      h("td", {}, e.host || ""),
      h("td", { class: "nowrap" }, timeEl(e.start_time, (e.start_time || "").slice(11, 19))),
      h("td", { class: "nowrap" }, timeEl(e.finish_time, (e.finish_time || "").slice(11, 19))),
      h("td", {}, e.details ? h("pre", { class: "block" }, e.details) : ""))))));
}

async function loadEvents(requestId, container) {
  try {
    const body = await get(`${base}/os-instance-actions/${encodeURIComponent(requestId)}`);
    replace(container, eventsTable(body.instanceAction.events));
  } catch (err) {
    showError(container, err, "Events could not be loaded");
  }
}

const actionViews = new Map(); // request id -> {details, key}

function renderHistory(actions, flows) {
  const flowOf = new Map(flows.map((f) => [f.request_id, f]));
  if (!actions.length) {
    replace($("#history"), h("p", { class: "empty" }, "No operations recorded."));
    return;
  }
  const list = actions.map((a) => {
    const flow = flowOf.get(a.request_id);
    const key = JSON.stringify([a.message, flow?.status]);
    let view = actionViews.get(a.request_id);
    if (!view) {
      const events = h("div", { class: "events" });
      const details = h("details", { class: "action", dataset: { requestId: a.request_id, action: a.action } });
      details.addEventListener("toggle", () => {
        if (details.open) {
          openActions.add(a.request_id);
          replace(events, h("p", { class: "empty" }, "Loading…"));
          loadEvents(a.request_id, events);
        } else openActions.delete(a.request_id);
      });
      view = { details, events, key: null };
      actionViews.set(a.request_id, view);
    }
    if (view.key !== key) {
      const result = a.message ? badge("Error", "bad")
        : flow && !flow.finished ? badge(flow.status) : badge("Success", "ok");
      replace(view.details,
        h("summary", {}, h("span", { class: "row" },
          h("strong", {}, a.action),
          h("span", { class: "small nowrap" }, timeEl(a.start_time), h("span", { class: "muted" },
            ` · ${fmtAge(a.start_time)} ago`)),
          h("span", {}, result),
          h("span", { class: "small" }, "request ", traceLink(a.request_id)),
          flow ? h("a", { href: `/dashboard/flows/${flow.id}`, class: "small" }, "flow view")
            : h("span", {}))),
        view.events);
      view.key = key;
    }
    return view.details;
  });
  const container = $("#history");
  const first = container.firstElementChild?.tagName === "P";
  if (first) replace(container);
  list.forEach((el, i) => {
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
  });
  while (container.children.length > list.length) container.lastElementChild.remove();
  if (first) list[0].open = true; // the latest operation's events, to begin with
}

// -- console log and diagnostics (optional endpoints: "not available" otherwise) ------

function unavailable(what, err) {
  return h("p", { class: "muted" }, `${what} not available`,
    err instanceof ApiError && err.message ? `: ${err.message}` : ".");
}

async function loadConsole() {
  try {
    const answer = await request(`${base}/action`, {
      method: "POST", body: { "os-getConsoleOutput": { length: 50 } },
    });
    const output = answer.data?.output ?? "";
    replace($("#console"), output
      ? h("pre", { class: "block console", tabindex: "0", "aria-label": "Console log" }, output)
      : h("p", { class: "empty" }, "The console log is empty."));
  } catch (err) {
    replace($("#console"), unavailable("The console log is", err));
  }
}

// A diagnostics value: plain values as text, objects as "key value" pairs, lists
// one item a line.
function diagnosticsValue(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
  if (Array.isArray(value)) {
    return value.length ? value.map((item, i) => h("div", {}, value.length > 1 ? `${i + 1}: ` : "",
      diagnosticsValue(item))) : h("span", { class: "muted" }, "none");
  }
  if (typeof value === "object") {
    return Object.entries(value).map(([k, v], i) => [i ? " · " : "",
      h("span", { class: "muted" }, `${k.replaceAll("_", " ")} `), diagnosticsValue(v)]);
  }
  return String(value);
}

function diagnosticsTable(diag) {
  return h("table", { class: "compact kv" }, h("tbody", {}, Object.entries(diag).map(([k, v]) =>
    h("tr", {}, h("th", { scope: "row" }, k.replaceAll("_", " ")), h("td", {}, diagnosticsValue(v))))));
}

async function loadDiagnostics() {
  try {
    replace($("#diagnostics"), diagnosticsTable(await get(`${base}/diagnostics`)));
  } catch (err) {
    replace($("#diagnostics"), unavailable("Diagnostics are", err));
  }
}

// -- live updates --------------------------------------------------------------------

async function refresh() {
  try {
    const [server, actions, flows] = await Promise.all([
      gone ? Promise.resolve(null) : get(base).catch((err) => {
        if (err.status === 404) return null;
        throw err;
      }),
      get(`${base}/os-instance-actions`).catch((err) => {
        if (err.status === 404) return { instanceActions: [] };
        throw err;
      }),
      get(`/dashboard/api/flows?instance=${encodeURIComponent(serverId)}`).catch((err) => {
        if (err.status === 403) return { flows: [] };  // flow runs are the admin's
        throw err;
      }),
    ]);
    if (server) {
      const s = server.server;
      // What the hypervisor says changes with the state: read it again then.
      const changed = current === null || current.status !== s.status
        || current["OS-EXT-STS:task_state"] !== s["OS-EXT-STS:task_state"];
      current = s;
      document.title = `${s.name} · vmflow`;
      $("#name").textContent = s.name;
      replace($("#status"), serverStatus(s));
      renderFields(s);
      renderToolbar(s);
      renderFault(s);
      if (changed && !s["OS-EXT-STS:task_state"]) {
        loadConsole();
        loadDiagnostics();
      } else if (changed) {
        const wait = () => h("p", { class: "muted" }, `Read again once ${s["OS-EXT-STS:task_state"]} is over.`);
        replace($("#console"), wait());
        replace($("#diagnostics"), wait());
      }
    } else if (!gone) {
      gone = true;
      replace($("#status"), badge("DELETED", "off"));
      replace($("#toolbar"), h("p", { class: "empty" }, "This instance no longer exists."));
      replace($("#fields"), field("Status", "deleted (or never existed)"));
      replace($("#console"), h("p", { class: "muted" }, "The console log is not available."));
      replace($("#diagnostics"), h("p", { class: "muted" }, "Diagnostics are not available."));
    }
    renderHistory(actions.instanceActions, flows.flows);
    for (const requestId of openActions) {
      const view = actionViews.get(requestId);
      if (view) loadEvents(requestId, view.events);
    }
    status.ok();
  } catch (err) {
    status.failed(err);
  }
}

$("#console-refresh").addEventListener("click", loadConsole);
$("#diag-refresh").addEventListener("click", loadDiagnostics);
$("#name").textContent = `Instance ${shortId(serverId)}`;
await loadNames();
updates = poll(refresh, 2000);
