// Instances: the launch form and the live list with per-row actions.
import {
  $, META, actionButton, allowedActions, fmtAge, fmtMB, get, h, poll, pollStatus, powerName,
  replace, request, serverStatus, shortId, showError, timeEl, traceLink,
} from "./common.js";

const flavors = new Map();
const images = new Map();
const rows = new Map(); // server id -> {tr, key, actionsKey}
const status = pollStatus($("#poll-errors"));
let list = null;

// -- the launch form -----------------------------------------------------------------

async function loadChoices() {
  const [flavorList, imageList, zones] = await Promise.all([
    get("/v2.1/flavors/detail"), get("/v2.1/images/detail"), get("/v2.1/os-availability-zone"),
  ]);
  for (const f of flavorList.flavors) flavors.set(f.id, f);
  for (const i of imageList.images) images.set(i.id, i);
  replace($("#launch-flavor"), flavorList.flavors.map((f) => h("option", { value: f.id },
    `${f.name} · ${f.vcpus} vCPU · ${fmtMB(f.ram)} · ${f.disk} GB`)));
  replace($("#launch-image"), imageList.images.filter((i) => i.status === "ACTIVE")
    .map((i) => h("option", { value: i.id }, i.name)));
  replace($("#launch-zone"), h("option", { value: "" }, "Any zone"),
    zones.availabilityZoneInfo.map((z) => h("option", { value: z.zoneName },
      z.zoneState.available ? z.zoneName : `${z.zoneName} (unavailable)`)));
}

async function launch(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const result = $("#launch-result");
  replace(result);
  const name = form.elements.name.value.trim();
  const server = { name, flavorRef: form.elements.flavor.value, imageRef: form.elements.image.value,
    networks: "none" }; // required from microversion 2.37; vmflow has no networking yet
  if (form.elements.zone.value) server.availability_zone = form.elements.zone.value;
  const countText = form.elements.count.value.trim();
  if (countText !== "" && countText !== "1") {
    // Sent as the user typed it: the API says what it accepts.
    const count = Number(countText);
    server.min_count = Number.isInteger(count) ? count : countText;
    server.max_count = server.min_count;
  }
  const button = $("#launch-submit");
  button.disabled = true;
  try {
    const answer = await request("/v2.1/servers", { method: "POST", body: { server } });
    const created = answer.data.server;
    replace(result, h("div", { class: "message ok", role: "status" }, h("p", {},
      "Launch of ", h("a", { href: `/dashboard/instances/${created.id}` }, name || created.id),
      " accepted. ", h("span", { class: "meta" }, "Request ", traceLink(answer.requestId)))));
    form.elements.name.value = "";
    list?.now();
  } catch (err) {
    showError(result, err, "The launch was refused");
    form.elements.name.focus();
  } finally {
    button.disabled = false;
  }
}

// -- the list ------------------------------------------------------------------------

function flavorName(server) {
  if (server.flavor?.original_name) return server.flavor.original_name; // embedded (2.47 on)
  const flavor = flavors.get(server.flavor?.id);
  return flavor ? flavor.name : shortId(server.flavor?.id);
}

function imageName(server) {
  const image = images.get(server.image?.id);
  return image ? image.name : shortId(server.image?.id);
}

function closeMenus(except) {
  for (const menu of document.querySelectorAll(".menu")) {
    if (menu === except) continue;
    const panel = $(".menu-panel", menu);
    if (!panel.hidden) {
      panel.hidden = true;
      $("button.menu-toggle", menu).setAttribute("aria-expanded", "false");
    }
  }
}

function moreMenu(server, actions, done) {
  const panelId = `menu-${server.id}`;
  const toggle = h("button", {
    type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": panelId,
    "aria-label": `More actions for ${server.name}`,
  }, "More ▾");
  const panel = h("div", { class: "menu-panel", id: panelId, hidden: true },
    actions.map((a) => actionButton(a, server, { errors: $("#action-errors"), done })));
  const menu = h("div", { class: "menu" }, toggle, panel);
  toggle.addEventListener("click", () => {
    const open = panel.hidden;
    closeMenus(menu);
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) $("button", panel)?.focus();
  });
  panel.addEventListener("click", (e) => {
    if (e.target.closest("button")) {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
    }
  });
  menu.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });
  return menu;
}

function actionsCell(server) {
  const allowed = allowedActions(server);
  const done = () => list.now();
  const quick = allowed.filter((a) => a.quick).slice(0, 3);
  const rest = allowed.filter((a) => !quick.includes(a));
  return [quick.map((a) => actionButton(a, server, { errors: $("#action-errors"), done })),
    rest.length ? moreMenu(server, rest, done) : null];
}

function cells(server) {
  const task = server["OS-EXT-STS:task_state"];
  return [
    h("td", {}, h("a", { href: `/dashboard/instances/${server.id}`, class: "name" }, server.name),
      h("span", { class: "sub mono" }, shortId(server.id))),
    h("td", { class: "status" }, serverStatus(server)),
    h("td", { class: "task" }, task ? h("span", { class: "mono" }, task) : h("span", { class: "muted" }, "—")),
    h("td", { class: "power" }, powerName(server["OS-EXT-STS:power_state"])),
    h("td", { class: "host" }, server["OS-EXT-SRV-ATTR:host"] || h("span", { class: "muted" }, "—")),
    h("td", {}, flavorName(server)),
    h("td", {}, imageName(server)),
    h("td", { class: "num nowrap" }, timeEl(server.created, fmtAge(server.created))),
  ];
}

function renderRow(server) {
  const key = JSON.stringify([server.name, server.status, server["OS-EXT-STS:task_state"],
    server["OS-EXT-STS:power_state"], server["OS-EXT-SRV-ATTR:host"], server.locked,
    fmtAge(server.created)]);
  const actionsKey = JSON.stringify([allowedActions(server).map((a) => a.name), server.name]);
  let row = rows.get(server.id);
  if (!row) {
    const data = cells(server);
    const actions = h("td", { class: "actions" });
    row = { tr: h("tr", { dataset: { id: server.id } }, data, actions), data, actions, key };
    rows.set(server.id, row);
  } else if (row.key !== key) {
    // Cell by cell: the actions cell stays in place, so keyboard focus in it does too.
    const data = cells(server);
    row.data.forEach((td, i) => td.replaceWith(data[i]));
    row.data = data;
    row.key = key;
  }
  row.tr.dataset.name = server.name;
  row.tr.dataset.status = server.status;
  if (row.actionsKey !== actionsKey) {
    const focused = row.actions.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    replace(row.actions, actionsCell(server));
    row.actionsKey = actionsKey;
    if (focused) $(`button[data-action="${focused}"]`, row.actions)?.focus();
  }
  return row.tr;
}

async function refresh() {
  try {
    const scope = META.admin ? "?all_tenants=1" : "";  // a member sees its project's
    const servers = (await get(`/v2.1/servers/detail${scope}`)).servers;
    const filter = $("#status-filter").value;
    const statuses = new Set(servers.map((s) => s.status));
    if (filter) statuses.add(filter);
    const known = [...$("#status-filter").options].map((o) => o.value);
    for (const s of [...statuses].sort()) {
      if (!known.includes(s)) $("#status-filter").append(h("option", { value: s }, s));
    }
    const shown = servers.filter((s) => !filter || s.status === filter);
    const body = $("#instances tbody");
    const ids = new Set(shown.map((s) => s.id));
    for (const [id, row] of rows) {
      if (!ids.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    shown.forEach((server, i) => {
      const tr = renderRow(server);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    $("#no-instances").hidden = servers.length > 0;
    $("#instances").hidden = servers.length === 0;
    $("#list-count").textContent = filter ? `${shown.length} of ${servers.length} shown`
      : `${servers.length} in all`;
    status.ok();
  } catch (err) {
    status.failed(err);
  }
}

document.addEventListener("click", (e) => {
  if (!e.target.closest(".menu")) closeMenus(null);
});
$("#launch-form").addEventListener("submit", launch);
const wanted = new URLSearchParams(window.location.search).get("status");
if (wanted) $("#status-filter").append(h("option", { value: wanted, selected: true }, wanted));
$("#status-filter").addEventListener("change", () => {
  const url = new URL(window.location.href);
  if ($("#status-filter").value) url.searchParams.set("status", $("#status-filter").value);
  else url.searchParams.delete("status");
  window.history.replaceState(null, "", url);
  list.now();
});
try {
  await loadChoices();
} catch (err) {
  showError($("#launch-result"), err, "Flavors, images or zones could not be loaded");
}
list = poll(refresh, 2000);
