// Admin: read-only tables of hypervisors (with their instances), services, flavors,
// images, aggregates and zones, each straight from the compute API.
import {
  $, badge, fmtBytes, fmtMB, fmtTime, get, h, replace, shortId, showError,
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

async function services() {
  const body = await get("/v2.1/os-services");
  return table(["Binary", "Host", "Zone", "State", "Status", "Disabled reason", "Last heartbeat"],
    body.services.map((s) => [h("span", { class: "mono" }, s.binary), s.host, s.zone, badge(s.state),
      badge(s.status), s.disabled_reason || muted("—"), s.updated_at ? fmtTime(s.updated_at) : muted("never")]));
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
  section("flavors", flavors);
  section("images", images);
  section("aggregates", aggregates);
  section("zones", zones);
}

$("#refresh").addEventListener("click", refresh);
refresh();
