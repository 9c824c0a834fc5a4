// Admin: tables of hypervisors (with their instances), services (enable, disable with
// a reason), usage per project over a period (os-simple-tenant-usage), flavors,
// images, aggregates and zones, each straight from the compute API.
import {
  $, ask, badge, fmtBytes, fmtMB, fmtTime, get, h, replace, request, shortId, showError,
  traceLink,
} from "./common.js";

function table(headers, rows, empty = "None.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", { class: "compact" },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", class: t.endsWith("#") ? "num" : "" },
      t.replace(/#$/, ""))))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD"
      ? c : h("td", {}, c))))))));
}

const num = (value) => h("td", { class: "num" }, value);
const muted = (text) => h("span", { class: "muted" }, text);

async function section(id, render) {
  try {
    replace($(`#${id}`), await render());
  } catch (err) {
    showError($(`#${id}`), err, "Could not be loaded");
  }
}

async function hypervisors() {
  const [hv, servers] = await Promise.all([get("/v2.1/os-hypervisors/detail"),
    get("/v2.1/servers/detail?all_tenants=1")]);
  const byHost = new Map();
  for (const s of servers.servers) {
    const host = s["OS-EXT-SRV-ATTR:host"];
    if (host) byHost.set(host, [...(byHost.get(host) || []), s]);
  }
  return table(["Hypervisor", "State", "Status", "vCPUs used#", "RAM used#", "Disk used#", "Instances"],
    hv.hypervisors.map((x) => {
      const on = byHost.get(x.service.host) || [];
      return [h("strong", {}, x.hypervisor_hostname), badge(x.state), badge(x.status),
        num(`${x.vcpus_used} / ${x.vcpus}`), num(`${fmtMB(x.memory_mb_used)} / ${fmtMB(x.memory_mb)}`),
        num(`${x.local_gb_used} / ${x.local_gb} GB`),
        on.length ? on.map((s, i) => [i ? ", " : "", h("a", { href: `/dashboard/instances/${s.id}` }, s.name),
          s.status !== "ACTIVE" ? h("span", { class: "muted" }, ` (${s.status})`) : null]) : muted("none")];
    }));
}

// -- services: enable, disable with a reason ----------------------------------------

const serviceKey = (s) => `${s.binary}@${s.host}`;

function serviceQuestion(s, disable) {
  const what = `${s.binary} on ${s.host}`;
  const compute = s.binary === "vmflow-compute";
  if (disable) {
    return {
      title: `Disable ${what}?`,
      text: compute ? "The scheduler sends it no new instances; the instances on it keep running."
        : "Its status becomes disabled, with your reason, for every operator to see.",
      confirm: "Disable", danger: true,
      fields: [{ name: "reason", label: "Reason (shown with the service)", kind: "text" }],
    };
  }
  return {
    title: `Enable ${what}?`,
    text: compute ? "The scheduler may send it new instances again." : "Its status becomes enabled.",
    confirm: "Enable",
  };
}

async function changeService(s, disable) {
  const values = await ask(serviceQuestion(s, disable));
  if (values === null) return;
  const result = $("#service-result");
  replace(result);
  // From microversion 2.53 a service is changed through its id (a UUID).
  const body = disable ? { status: "disabled", disabled_reason: values.reason } : { status: "enabled" };
  try {
    const answer = await request(`/v2.1/os-services/${encodeURIComponent(s.id)}`, { method: "PUT", body });
    const changed = answer.data.service;
    replace(result, h("div", { class: "message ok", role: "status" },
      h("p", {}, h("strong", {}, `${changed.binary} on ${changed.host}`), " is now ", changed.status,
        changed.disabled_reason ? [" (reason: ", changed.disabled_reason, ")"] : null, "."),
      h("p", { class: "meta" }, `HTTP ${answer.status}`,
        answer.requestId ? [" · request ", traceLink(answer.requestId)] : null)));
  } catch (err) {
    showError(result, err, `${disable ? "Disabling" : "Enabling"} ${s.binary} on ${s.host} failed`);
  }
  await section("services", services);
  section("zones", zones);
  // Keyboard users stay on the row they acted on (its button now does the opposite).
  const again = document.querySelector(`#services button[data-service="${CSS.escape(serviceKey(s))}"]`);
  (again || result).focus();
}

function serviceButton(s) {
  const disable = s.status === "enabled";
  return h("button", {
    type: "button", dataset: { service: serviceKey(s) },
    "aria-label": `${disable ? "Disable" : "Enable"} ${s.binary} on ${s.host}`,
    onclick: () => changeService(s, disable),
  }, disable ? "Disable…" : "Enable…");
}

async function services() {
  const body = await get("/v2.1/os-services");
  return table(["Binary", "Host", "Zone", "State", "Status", "Disabled reason", "Last heartbeat", "Actions"],
    body.services.map((s) => [h("span", { class: "mono" }, s.binary), s.host, s.zone, badge(s.state),
      badge(s.status), s.disabled_reason || muted("—"), s.updated_at ? fmtTime(s.updated_at) : muted("never"),
      h("td", { class: "actions" }, serviceButton(s))]));
}

// -- usage per project ------------------------------------------------------------------

const DAY_MS = 24 * 3600 * 1000;
// datetime-local values are read as UTC, as every time on the dashboard is shown.
const localValue = (date) => date.toISOString().slice(0, 19);

function lastDay() {
  $("#usage-start").value = localValue(new Date(Date.now() - DAY_MS));
  $("#usage-end").value = "";
}

// A datetime-local value (seconds are left out when zero) as the API takes it.
const apiTime = (value) => (value.length === 16 ? `${value}:00` : value);
// The API's times are naive UTC with microseconds.
const utc = (text) => (text ? new Date(`${text.slice(0, 23)}Z`) : null);
const utcText = (text) => (text ? fmtTime(utc(text).toISOString()) : "");

const decimals = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
const small = new Intl.NumberFormat("en", { maximumSignificantDigits: 2 });
function amount(value) {
  if (!value) return "0";
  return value >= 1 ? decimals.format(value) : small.format(value);
}

function fmtUptime(seconds) {
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)} ${unit}`);
      seconds %= size;
    }
  }
  if (!parts.length || (parts.length < 2 && seconds)) parts.push(`${seconds} s`);
  return parts.slice(0, 2).join(" ");
}

const STATE_TONES = { active: "ok", building: "busy", error: "bad", terminated: "off", stopped: "off" };

function serverRows(usage) {
  return h("table", { class: "compact servers" },
    h("caption", { class: "visually-hidden" }, `Servers of project ${usage.tenant_id}`),
    h("thead", {}, h("tr", {}, ["Server", "Flavor", "State", "vCPUs", "RAM", "Disk", "Hours", "Started",
      "Ended", "Uptime"].map((t, i) => h("th", { scope: "col", class: i >= 3 && i <= 6 ? "num" : "" }, t)))),
    h("tbody", {}, usage.server_usages.map((s) => h("tr", { dataset: { server: s.instance_id } },
      h("td", {}, s.state === "terminated" ? [h("span", {}, s.name), " ", muted("(deleted)")]
        : h("a", { href: `/dashboard/instances/${s.instance_id}` }, s.name),
      h("span", { class: "sub mono", title: s.instance_id }, shortId(s.instance_id))),
      h("td", {}, s.flavor || muted("—")),
      h("td", {}, badge(s.state, STATE_TONES[s.state] || "warn")),
      num(s.vcpus), num(fmtMB(s.memory_mb)), num(`${s.local_gb} GB`), num(amount(s.hours)),
      h("td", { class: "nowrap" }, utcText(s.started_at)),
      h("td", { class: "nowrap" }, s.ended_at ? utcText(s.ended_at) : muted("running")),
      h("td", { class: "nowrap" }, fmtUptime(s.uptime))))));
}

function usageTable(usages) {
  const headers = ["Project", "Servers#", "Hours#", "vCPU hours#", "RAM GB hours#", "Disk GB hours#"];
  const total = (key) => usages.reduce((sum, u) => sum + u[key], 0);
  const body = [];
  usages.forEach((u, i) => {
    const id = `usage-servers-${i}`;
    const count = u.server_usages.length;
    const toggle = h("button", {
      type: "button", class: "disclosure", "aria-expanded": "false", "aria-controls": id,
      // The state is aria-expanded's to say: the name stays.
      "aria-label": `${u.tenant_id}, ${count === 1 ? "1 server" : `${count} servers`}`,
    }, h("span", { class: "chevron", "aria-hidden": "true" }, "▸"), h("strong", {}, u.tenant_id));
    const detail = h("tr", { id, class: "detail", hidden: true },
      h("td", { colspan: String(headers.length) }, serverRows(u)));
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      detail.hidden = !open;
    });
    body.push(h("tr", { class: "project", dataset: { project: u.tenant_id } },
      h("td", {}, toggle), num(count), num(amount(u.total_hours)), num(amount(u.total_vcpus_usage)),
      num(amount(u.total_memory_mb_usage / 1024)), num(amount(u.total_local_gb_usage))), detail);
  });
  return h("div", { class: "table-wrap" }, h("table", { class: "compact usage" },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", class: t.endsWith("#") ? "num" : "" },
      t.replace(/#$/, ""))))),
    h("tbody", {}, body),
    usages.length > 1 ? h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "All projects"),
      num(usages.reduce((sum, u) => sum + u.server_usages.length, 0)), num(amount(total("total_hours"))),
      num(amount(total("total_vcpus_usage"))), num(amount(total("total_memory_mb_usage") / 1024)),
      num(amount(total("total_local_gb_usage"))))) : null));
}

async function usage() {
  const start = $("#usage-start").value;
  const end = $("#usage-end").value;
  const params = new URLSearchParams({ detailed: "1" });
  if (start) params.set("start", apiTime(start));
  if (end) params.set("end", apiTime(end));
  const body = await get(`/v2.1/os-simple-tenant-usage?${params}`);
  const usages = body.tenant_usages;
  const period = usages.length
    ? `From ${utcText(usages[0].start)} to ${utcText(usages[0].stop)}`
    : `From ${start ? fmtTime(`${apiTime(start)}Z`) : "now"} to ${end ? fmtTime(`${apiTime(end)}Z`) : "now"}`;
  return [h("p", { class: "muted small period" }, period),
    usages.length ? usageTable(usages)
      : h("p", { class: "empty" }, "No instance of any project ran during this period.")];
}

async function flavors() {
  const body = await get("/v2.1/flavors/detail");
  return table(["ID", "Name", "vCPUs#", "RAM#", "Disk#", "Ephemeral#", "Public"],
    body.flavors.map((f) => [h("span", { class: "mono" }, f.id), h("strong", {}, f.name), num(f.vcpus),
      num(fmtMB(f.ram)), num(`${f.disk} GB`), num(`${f["OS-FLV-EXT-DATA:ephemeral"]} GB`),
      f["os-flavor-access:is_public"] ? "yes" : "no"]));
}

async function images() {
  const body = await get("/v2.1/images/detail");
  return table(["Name", "ID", "Status", "Size#", "Min disk#", "Min RAM#", "Created"],
    body.images.map((i) => [h("strong", {}, i.name), h("span", { class: "mono", title: i.id }, shortId(i.id)),
      badge(i.status, i.status === "ACTIVE" ? "ok" : "busy"),
      num(fmtBytes(i["OS-EXT-IMG-SIZE:size"])),
      num(`${i.minDisk} GB`), num(`${i.minRam} MB`), fmtTime(i.created)]));
}

async function aggregates() {
  const body = await get("/v2.1/os-aggregates");
  return table(["Name", "Zone", "Hosts", "Metadata"], body.aggregates.map((a) => [
    h("strong", {}, a.name), a.availability_zone || muted("—"),
    a.hosts.length ? a.hosts.join(", ") : muted("none"),
    Object.keys(a.metadata).length ? h("span", { class: "mono small" },
      Object.entries(a.metadata).map(([k, v]) => `${k}=${v}`).join(", ")) : muted("—")]),
  "No aggregates: every host is in the default zone.");
}

async function zones() {
  const body = await get("/v2.1/os-availability-zone/detail");
  return table(["Zone", "Available", "Hosts and services"], body.availabilityZoneInfo.map((z) => [
    h("strong", {}, z.zoneName), badge(z.zoneState.available ? "available" : "unavailable",
      z.zoneState.available ? "ok" : "bad"),
    Object.entries(z.hosts || {}).map(([host, svcs], i) => [i ? "; " : "", h("span", {}, host), " ",
      h("span", { class: "muted small" }, `(${Object.entries(svcs).map(([b, s]) =>
        `${b} ${s.active ? "up" : "down"}${s.available ? "" : ", disabled"}`).join(", ")})`)])]));
}

function refresh() {
  section("hypervisors", hypervisors);
  section("services", services);
  section("usage", usage);
  section("flavors", flavors);
  section("images", images);
  section("aggregates", aggregates);
  section("zones", zones);
}

$("#refresh").addEventListener("click", refresh);
$("#usage-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#usage-submit");
  button.disabled = true;
  await section("usage", usage);
  button.disabled = false;
});
$("#usage-last-day").addEventListener("click", () => {
  lastDay();
  section("usage", usage);
});
lastDay();
refresh();
