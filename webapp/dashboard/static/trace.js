// Request trace: every log line, flow event and notification of one request id, in
// time order.
import {
  $, badge, fmtTime, get, h, replace, shortId, showError,
} from "./common.js";

const requestId = $("#trace").dataset.requestId;
const LEVEL_TONES = { ERROR: "bad", CRITICAL: "bad", WARNING: "warn", INFO: "off", DEBUG: "off" };
let entries = [];

function shown() {
  const sources = new Set([...document.querySelectorAll("#filters input:checked")].map((i) => i.value));
  return entries.filter((e) => sources.has(e.source));
}

function renderEntries() {
  const visible = shown();
  const modules = new Set(entries.filter((e) => e.source === "log").map((e) => e.module));
  $("#count").textContent = `${visible.length} of ${entries.length} shown · `
    + `${modules.size} modules logged`;
  let day = null;
  const rows = [];
  for (const e of visible) {
    const date = (e.time || "").slice(0, 10);
    if (date !== day) {
      day = date;
      rows.push(h("tr", { class: "day" }, h("th", { colspan: "5", scope: "rowgroup" }, date)));
    }
    const source = e.source === "log" ? e.service : e.source === "flow" ? "flow event" : "notification";
    rows.push(h("tr", { class: `level-${e.level} source-${e.source}`, dataset: { source: e.source } },
      h("td", { class: "time" }, h("time", { datetime: e.time, title: fmtTime(e.time) }, (e.time || "").slice(11, 23))),
      h("td", { class: "nowrap" }, h("span", { class: `src src-${e.source}`, title: e.service }, source),
        e.pid ? h("span", { class: "pid mono", title: "process id" }, e.pid) : null),
      h("td", {}, badge(e.level, LEVEL_TONES[e.level] || "off")),
      h("td", { class: "module" }, e.flow_id
        ? h("a", { href: `/dashboard/flows/${e.flow_id}` }, e.module) : e.module),
      h("td", { class: "msg" }, e.message)));
  }
  replace($("#entries tbody"), rows.length ? rows
    : h("tr", {}, h("td", { colspan: "5", class: "empty" }, entries.length
      ? "Nothing to show with these filters." : "Nothing was recorded for this request id.")));
}

function renderSummary(data) {
  const logs = data.entries.filter((e) => e.source === "log").length;
  const flows = data.entries.filter((e) => e.source === "flow").length;
  const notes = data.entries.filter((e) => e.source === "notification").length;
  const parts = [];
  if (!data.log_dir) {
    parts.push(h("p", { class: "message warn", id: "no-log-dir" },
      "No log directory is configured (log_dir), so log lines cannot be shown here; ",
      "the flow events and notifications of the request are below. ",
      "Set log_dir (VMFLOW_LOG_DIR) to give every service a log file; ",
      h("span", { class: "mono" }, "vmflow up"), " uses ",
      h("span", { class: "mono" }, "<data dir>/logs"), " by default."));
  }
  parts.push(h("section", { class: "panel" }, h("dl", { class: "fields" },
    h("dt", {}, "Found"), h("dd", {}, `${logs} log lines, ${flows} flow events, ${notes} notifications`
      + (data.truncated ? " (only the first ones are shown)" : "")),
    data.log_dir ? [h("dt", {}, "Log files"), h("dd", { class: "mono small" },
      `${data.log_dir}: ${data.log_files.length ? data.log_files.join(", ") : "none yet"}`)] : null,
    data.runs.length ? [h("dt", {}, "Operations"), h("dd", {}, data.runs.map((r, i) => [i ? ", " : "",
      h("a", { href: `/dashboard/flows/${r.id}` }, r.operation),
      r.instance_uuid ? [" of ", h("a", { href: `/dashboard/instances/${r.instance_uuid}` },
        r.instance_name || shortId(r.instance_uuid))] : null, " ", badge(r.status)]))] : null)));
  replace($("#summary"), parts);
}

async function load() {
  replace($("#errors"));
  try {
    const data = await get(`/dashboard/api/trace/${encodeURIComponent(requestId)}`);
    entries = data.entries;
    renderSummary(data);
    renderEntries();
  } catch (err) {
    showError($("#errors"), err, "The trace could not be loaded");
  }
}

if (requestId) {
  $("#nav-request-id").value = requestId;
  for (const box of document.querySelectorAll("#filters input")) box.addEventListener("change", renderEntries);
  $("#refresh").addEventListener("click", load);
  load();
}
