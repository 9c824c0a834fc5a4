// Overview: hosts up/down, capacity, instances by status, recent failures.
import {
  $, badge, fmtAge, fmtMB, get, h, plural, poll, pollStatus, replace, shortId, timeEl, tone,
} from "./common.js";

const status = pollStatus($("#poll-errors"));

function meter(label, used, total, format = (v) => String(v)) {
  const share = total > 0 ? used / total : 0;
  const percent = Math.round(share * 100);
  return h("div", { class: "meter" },
    h("div", { class: "meter-head" }, h("span", {}, label),
      h("span", { class: "figures" }, `${format(used)} of ${format(total)} (${percent}%)`)),
    h("div", {
      class: `bar${share >= 1 ? " full" : share >= 0.8 ? " high" : ""}`, role: "meter",
      "aria-label": `${label} used`, "aria-valuemin": "0", "aria-valuemax": String(total),
      "aria-valuenow": String(used), "aria-valuetext": `${percent}%`,
    }, h("span", { style: `width: ${Math.min(100, percent)}%` })));
}

function renderHosts(services, hypervisors, servers) {
  const computes = services.filter((s) => s.binary === "vmflow-compute");
  const up = computes.filter((s) => s.state === "up");
  const down = computes.filter((s) => s.state !== "up");
  const disabled = computes.filter((s) => s.status === "disabled");
  const placed = new Map();
  for (const s of servers) {
    const host = s["OS-EXT-SRV-ATTR:host"];
    if (host) placed.set(host, (placed.get(host) || 0) + 1);
  }
  const others = services.length - computes.length;
  replace($("#hosts"),
    h("div", { class: "stat-row" },
      h("div", { class: "stat" }, h("span", { class: "value", id: "hosts-up" }, up.length),
        badge("up", "ok")),
      h("div", { class: "stat" }, h("span", { class: "value", id: "hosts-down" }, down.length),
        badge("down", down.length ? "bad" : "off")),
      disabled.length ? h("div", { class: "stat" }, h("span", { class: "value" }, disabled.length),
        badge("disabled", "warn")) : null),
    h("ul", { class: "host-list", "aria-label": "Compute hosts" }, computes.map((s) => h("li", {},
      h("span", { class: "host-name" }, s.host), badge(s.state),
      s.status === "disabled" ? badge("disabled") : null,
      h("span", { class: "muted small" }, plural(placed.get(s.host) || 0, "instance"))))),
    h("p", { class: "muted small", style: "margin-top: 10px" },
      `${plural(hypervisors.length, "hypervisor")} · ${plural(others, "other service")}`));
}

function renderCapacity(stats) {
  replace($("#capacity"),
    meter("vCPUs", stats.vcpus_used, stats.vcpus),
    meter("RAM", stats.memory_mb_used, stats.memory_mb, fmtMB),
    meter("Disk", stats.local_gb_used, stats.local_gb, (v) => `${v} GB`),
    h("p", { class: "muted small" }, `${plural(stats.running_vms, "instance")} placed on `,
      `${plural(stats.count, "hypervisor")}. Totals are physical; allocation ratios let vCPUs `,
      "and RAM be overcommitted."));
}

function renderStatuses(servers) {
  if (!servers.length) {
    replace($("#statuses"), h("p", { class: "empty" }, "No instances yet."),
      h("p", {}, h("a", { href: "/dashboard/instances" }, "Launch one")));
    return;
  }
  const counts = new Map();
  for (const s of servers) counts.set(s.status, (counts.get(s.status) || 0) + 1);
  const max = Math.max(...counts.values());
  const rows = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  replace($("#statuses"),
    h("ul", { class: "counts", id: "status-counts" }, rows.map(([name, count]) => h("li", {},
      h("a", { href: `/dashboard/instances?status=${encodeURIComponent(name)}` }, badge(name)),
      h("div", { class: "bar", "aria-hidden": "true" },
        h("span", { class: `tone-${tone(name)}`, style: `width: ${Math.round((count / max) * 100)}%` })),
      h("span", { class: "count" }, count)))),
    h("p", { class: "muted small" }, `${plural(servers.length, "instance")} in all projects`));
}

function renderErrors(servers) {
  const failed = servers.filter((s) => s.status === "ERROR");
  if (!failed.length) {
    replace($("#error-instances"), h("p", { class: "empty" }, "None."));
    return;
  }
  replace($("#error-instances"), h("div", { class: "table-wrap" }, h("table", { class: "compact" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Instance"),
      h("th", { scope: "col" }, "Fault"), h("th", { scope: "col" }, "When"))),
    h("tbody", {}, failed.map((s) => h("tr", {},
      h("td", {}, h("a", { href: `/dashboard/instances/${s.id}` }, s.name),
        h("span", { class: "sub mono" }, shortId(s.id))),
      h("td", {}, s.fault ? s.fault.message : h("span", { class: "muted" }, "no fault recorded")),
      h("td", { class: "nowrap" }, s.fault ? timeEl(s.fault.created, `${fmtAge(s.fault.created)} ago`)
        : "")))))));
}

function renderFlows(flows) {
  if (!flows.length) {
    replace($("#failed-flows"), h("p", { class: "empty" }, "None."));
    return;
  }
  replace($("#failed-flows"), h("div", { class: "table-wrap" }, h("table", { class: "compact" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Operation"),
      h("th", { scope: "col" }, "Failed step and error"), h("th", { scope: "col" }, "When"))),
    h("tbody", {}, flows.map((f) => h("tr", {},
      h("td", {}, h("a", { href: `/dashboard/flows/${f.id}` }, f.operation),
        f.instance_uuid ? h("span", { class: "sub" }, "on ",
          h("a", { href: `/dashboard/instances/${f.instance_uuid}` },
            f.instance_name || shortId(f.instance_uuid))) : null),
      h("td", {}, f.failed_step ? h("span", { class: "mono" }, f.failed_step) : "",
        f.error ? h("span", { class: "sub" }, f.error) : null),
      h("td", { class: "nowrap" }, timeEl(f.updated_at, `${fmtAge(f.updated_at)} ago`),
        h("span", { class: "sub" }, h("a", { href: `/dashboard/trace/${f.request_id}` }, "trace")))))))));
}

async function refresh() {
  try {
    const [stats, hypervisors, services, servers, flows] = await Promise.all([
      get("/v2.1/os-hypervisors/statistics"), get("/v2.1/os-hypervisors/detail"),
      get("/v2.1/os-services"), get("/v2.1/servers/detail?all_tenants=1"),
      get("/dashboard/api/flows?failed=1&limit=8"),
    ]);
    renderHosts(services.services, hypervisors.hypervisors, servers.servers);
    renderCapacity(stats.hypervisor_statistics);
    renderStatuses(servers.servers);
    renderErrors(servers.servers);
    renderFlows(flows.flows);
    $("#updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    status.ok();
  } catch (err) {
    status.failed(err);
  }
}

poll(refresh, 5000);
