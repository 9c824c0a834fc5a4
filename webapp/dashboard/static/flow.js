// Flow view: the task graph of one operation, each step coloured by its state (with
// a text label and an icon too), live while it runs; a step's details beside it; and
// for an operator, Resume and Roll back (os-flows actions) where the run allows them.
import {
  $, ask, badge, fmtDuration, fmtTime, get, h, poll, pollStatus, replace, request, shortId,
  showError, svg, timeEl, traceLink,
} from "./common.js";

const flowId = $("#flow").dataset.flowId;
const status = pollStatus($("#poll-errors"));
const STATES = ["pending", "running", "done", "failed", "reverting", "reverted"];
const ICONS = {
  pending: "○", running: "●", done: "✓", failed: "✕", reverting: "↺", reverted: "↩", skipped: "–",
};
let selected = null;
let chosen = false; // the user picked a step: keep it
let lastKey = null;
let view = null;
let updates = null;

// What an operator may ask of the run.  Which of them the run's state allows comes
// with the page's data (webapp/dashboard/data.py:run_actions); the API decides.
const OPERATOR_ACTIONS = {
  resume: {
    label: "Resume", noun: "Resume", body: { resume: null }, primary: true,
    hint: "Hand the run to a conductor, which carries on from its last saved step",
    accepted: "Resume accepted: a conductor takes the run and carries on from its last saved step.",
  },
  rollback: {
    label: "Roll back", noun: "Rollback", body: { rollback: null }, danger: true,
    hint: "Undo every step that has run, in reverse order",
    confirm: (run) => ({
      title: `Roll back this ${run.operation}${run.instance_name ? ` of ${run.instance_name}` : ""}?`,
      text: "Every step that has run is undone, in reverse order (each step's revert). "
        + "The run ends REVERTED, or FAILURE if a revert fails. A rollback cannot be undone.",
      confirm: "Roll back", danger: true,
    }),
    accepted: "Rollback accepted: a conductor reverts the steps that have run.",
  },
};
let actionsKey = null;
let acting = false;
// After an accepted action, follow the run (even one that has ended) until its
// state changes or the time is up: {state, until}.
let following = null;
const FOLLOW_MS = 30000;
let accepted = null; // the action accepted last, until the run's outcome is shown

function statusText(step) {
  return step.status === "failed" && step.reverted ? "failed, reverted" : step.status;
}

function facts(step) {
  const parts = [statusText(step)];
  if (step.duration_ms !== null) parts.push(fmtDuration(step.duration_ms));
  if (step.host) parts.push(step.host);
  if (step.attempts) parts.push(`attempt ${step.attempts}`);
  return parts.join(" · ");
}

// Shorten an SVG text element (already in the document) to ``width``.
function fit(text, width) {
  const full = text.textContent;
  if (text.getComputedTextLength() <= width) return;
  let low = 0;
  let high = full.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    text.textContent = `${full.slice(0, mid)}…`;
    if (text.getComputedTextLength() <= width) low = mid;
    else high = mid - 1;
  }
  text.textContent = `${full.slice(0, low)}…`;
}

function nodeLabel(step) {
  const parts = [`${step.name}${step.kind === "retry" ? " (retry)" : ""}`, statusText(step)];
  if (step.duration_ms !== null) parts.push(fmtDuration(step.duration_ms));
  if (step.host) parts.push(`on ${step.host}`);
  if (step.error) parts.push(`error: ${step.error}`);
  return parts.join(", ");
}

function select(name, { focus = false } = {}) {
  selected = name;
  for (const node of document.querySelectorAll("svg.flow-graph .node")) {
    const on = node.dataset.step === name;
    node.classList.toggle("selected", on);
    node.setAttribute("aria-pressed", String(on));
    if (on && focus) node.focus();
  }
  renderStep();
}

function drawGraph(graph, run) {
  const order = graph.nodes.map((n) => n.name);
  const nodes = graph.nodes.map((step) => {
    const g = svg("g", {
      class: `node s-${step.status} kind-${step.kind}`, transform: `translate(${step.x},${step.y})`,
      tabindex: "0", role: "button", "aria-pressed": String(step.name === selected),
      "aria-label": nodeLabel(step), dataset: { step: step.name, status: step.status },
    },
    svg("title", {}, step.name),
    svg("rect", { class: "box", width: step.w, height: step.h, rx: step.kind === "retry" ? 18 : 7 }),
    svg("text", { class: "icon", x: 12, y: 20, "aria-hidden": "true" }, ICONS[step.status] || "•"),
    svg("text", { class: "name", x: 30, y: 20 },
      step.kind === "retry" ? `${step.label} (retry)` : step.label),
    svg("text", { class: "facts", x: 30, y: 37 }, facts(step)),
    step.error ? svg("text", { class: "error", x: 30, y: 55 }, step.error) : null);
    const choose = () => {
      chosen = true;
      select(step.name);
    };
    g.addEventListener("click", choose);
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        choose();
      } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        const next = order[order.indexOf(step.name) + (e.key === "ArrowDown" ? 1 : -1)];
        if (next) {
          chosen = true;
          select(next, { focus: true });
        }
      }
    });
    if (step.name === selected) g.classList.add("selected");
    return g;
  });
  const boxes = graph.groups.filter((g) => g.w > 0);
  const groups = boxes.map((g) => svg("g", { class: "group" },
    svg("rect", { x: g.x, y: g.y, width: g.w, height: g.h, rx: 10 })));
  // Labels after the edges, so an edge passes behind them.
  const labels = boxes.map((g) => svg("g", { class: "group" },
    svg("text", { x: g.x + 10, y: g.y + 17 }, g.label),
    g.retry ? svg("text", { class: "retry", x: g.x + g.w - 10, y: g.y + 17, "text-anchor": "end" },
      `↻ retried by ${g.retry.replace(`${run.operation}.`, "")}`) : null));
  const edges = graph.edges.map((e) => svg("g", {},
    svg("path", { class: "edge", d: e.path, "marker-end": "url(#arrow)" }),
    e.via.length ? svg("text", { class: "edge-label", x: e.label_x, y: e.label_y }, e.via.join(", "))
      : null));
  return svg("svg", {
    class: "flow-graph", width: graph.width, height: graph.height,
    viewBox: `0 0 ${graph.width} ${graph.height}`, role: "group",
    "aria-label": `Task graph of ${run.operation}: ${graph.nodes.length} steps. `
      + "Use Tab or the arrow keys to move between steps.",
  },
  svg("defs", {}, svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7",
    orient: "auto-start-reverse",
  }, svg("path", { d: "M0,0 L10,5 L0,10 z" }))),
  groups, edges, labels, nodes);
}

function fact(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...(value.length ? value : [h("span", { class: "muted" }, "—")]))];
}

function driver(run, now) {
  if (run.finished) return [h("span", { class: "muted" }, "nobody: the run has ended")];
  const held = run.owner && run.lease_expires_at && Date.parse(run.lease_expires_at) > Date.parse(now);
  if (held) {
    return [h("span", { class: "mono" }, run.owner), h("span", { class: "muted small" }, " (lease until ",
      timeEl(run.lease_expires_at), ")")];
  }
  if (run.owner) {
    return [h("span", { class: "mono" }, run.owner), " ", h("strong", {}, "(lease expired)"),
      h("span", { class: "muted" }, ": nobody drives it until a conductor takes it over or it is resumed")];
  }
  return [h("strong", {}, "nobody"), h("span", { class: "muted" },
    ": no conductor has taken it (its message may have been lost, or its conductor died)")];
}

function renderRun(run, graph, now) {
  const counts = new Map();
  for (const n of graph.nodes) counts.set(n.status, (counts.get(n.status) || 0) + 1);
  const tally = ["done", "running", "failed", "reverting", "reverted", "pending", "skipped"]
    .filter((s) => counts.get(s)).map((s) => `${counts.get(s)} ${s}`).join(" · ");
  const title = `${run.operation}${run.instance_name ? ` of ${run.instance_name}` : ""}`;
  document.title = `Flow ${title} · vmflow`;
  $("#title").textContent = `Flow: ${title}`;
  replace($("#run-status"), badge(run.status), " ", h("span", { class: "muted small mono" }, run.state || ""));
  if (run.instance_uuid) {
    replace($("#crumbs"), h("a", { href: "/dashboard/instances" }, "Instances"), " / ",
      h("a", { href: `/dashboard/instances/${run.instance_uuid}` },
        run.instance_name || shortId(run.instance_uuid)), " /");
  }
  const took = run.finished ? Date.parse(run.updated_at) - Date.parse(run.created_at) : null;
  replace($("#run-facts"),
    fact("Operation", h("strong", {}, run.operation)),
    fact("Instance", ...(run.instance_uuid ? [h("a", { href: `/dashboard/instances/${run.instance_uuid}` },
      run.instance_name || run.instance_uuid)] : [])),
    fact("Request", traceLink(run.request_id), h("span", { class: "muted small" }, "  (every log line of it)")),
    fact("State", badge(run.status), " ", h("span", { class: "mono small muted" }, run.state || "not started")),
    fact("Steps", `${graph.nodes.length}: ${tally}`),
    fact("Started", timeEl(run.created_at)),
    fact(run.finished ? "Finished" : "Last change", timeEl(run.updated_at),
      took !== null ? h("span", { class: "muted" }, ` (took ${fmtDuration(took)})`) : null),
    fact("Driven by", ...driver(run, now)),
    fact("Asked by", `${run.user_id || "?"} in project ${run.project_id || "?"}`),
    ...(run.failed_step ? fact("First failure", h("span", { class: "mono" }, run.failed_step),
      run.error ? h("span", {}, `: ${run.error}`) : null) : []));
}

function historyTable(events, { withStep = true } = {}) {
  if (!events.length) return h("p", { class: "empty" }, "Nothing has finished yet.");
  const headers = [withStep ? "Step" : null, "Phase", "Result", "Host", "Finished", "Took"]
    .filter(Boolean);
  const rows = [];
  for (const e of events) {
    rows.push(h("tr", { class: e.error ? "has-error" : "" },
      withStep ? h("td", { class: "step" }, h("button", {
        type: "button", class: "link mono", onclick: () => {
          chosen = true;
          select(e.step, { focus: true });
        },
      }, e.step)) : null,
      h("td", {}, e.phase),
      h("td", {}, badge(e.error ? "failed" : e.status, e.error ? "bad" : undefined)),
      h("td", { class: "host" }, e.host || ""),
      h("td", { class: "nowrap mono small" }, timeEl(e.finished_at, (e.finished_at || "").slice(11, 23))),
      h("td", { class: "num nowrap" }, fmtDuration(e.duration_ms))));
    if (e.error) {
      rows.push(h("tr", { class: "error-row" }, h("td", { colspan: String(headers.length) },
        h("span", { class: "error-type" }, e.error_type), " ", e.error)));
    }
  }
  return h("div", { class: "table-wrap" }, h("table", { class: "compact history" },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
}

function renderStep() {
  const step = view?.graph.nodes.find((n) => n.name === selected);
  if (!step) {
    $("#step-title").textContent = "Step";
    replace($("#step"), h("p", { class: "empty" },
      "Select a step in the graph (click it, or Tab to it and press Enter)."));
    return;
  }
  const group = view.graph.groups.find((g) => g.retry === step.name);
  $("#step-title").textContent = step.label;
  replace($("#step"),
    h("p", {}, badge(step.status), step.status === "failed" && step.reverted
      ? [" ", badge("reverted")] : null),
    h("dl", { class: "fields" },
      fact("Step", h("span", { class: "mono" }, step.name)),
      fact("Kind", step.kind === "retry"
        ? `retry: runs ${group ? group.name : "its flow"} again when it fails` : "task"),
      fact("TaskFlow state", h("span", { class: "mono" }, step.state)),
      fact("Host", ...(step.host ? [step.host] : [])),
      fact("Started", ...(step.started_at ? [timeEl(step.started_at, fmtTime(step.started_at))] : [])),
      fact("Took", ...(step.duration_ms !== null ? [fmtDuration(step.duration_ms)] : [])),
      ...(step.revert_ms !== null ? fact("Revert took", fmtDuration(step.revert_ms)) : []),
      ...(step.attempts ? fact("Attempt", String(step.attempts)) : []),
      fact("Executions", String(step.runs))),
    step.error ? h("div", { class: "step-error" }, h("div", { class: "message error", role: "alert" },
      h("p", {}, h("strong", {}, step.reverted ? "Failed, then reverted: " : "Failed: "), step.error),
      step.error_type ? h("p", { class: "meta" }, "exception ", h("span", { class: "mono" }, step.error_type))
        : null,
      step.traceback ? h("details", {}, h("summary", { class: "small" }, "Traceback"),
        h("pre", { class: "block" }, step.traceback)) : null)) : null,
    h("h3", {}, "Its history"),
    historyTable(step.history, { withStep: false }));
}

// -- operator actions --------------------------------------------------------------

function actionButtons() {
  return [...document.querySelectorAll("#flow-actions button")];
}

function renderActions(data) {
  const key = JSON.stringify(data.actions);
  if (acting || key === actionsKey) return;
  actionsKey = key;
  const focused = $("#flow-actions").contains(document.activeElement)
    ? document.activeElement.dataset.action : null;
  replace($("#flow-actions"), data.actions.filter((name) => OPERATOR_ACTIONS[name]).map((name) => {
    const action = OPERATOR_ACTIONS[name];
    return h("button", {
      type: "button", class: action.danger ? "danger-outline" : action.primary ? "primary" : "",
      dataset: { action: name },
      title: action.hint, onclick: () => act(name),
    }, action.label);
  }));
  if (focused) ($(`button[data-action="${focused}"]`, $("#flow-actions")) || $("#action-result")).focus();
}

// Poll again now (stopped or not): it stops by itself once the run has ended.
function restart() {
  updates?.stop();
  updates = poll(refresh, 1000);
}

function follow(state) {
  following = { state, until: Date.now() + FOLLOW_MS };
  restart();
}

async function act(name) {
  const action = OPERATOR_ACTIONS[name];
  const run = view.run;
  if (action.confirm && !(await ask(action.confirm(run)))) return;
  const result = $("#action-result");
  replace(result);
  acting = true;
  for (const button of actionButtons()) button.disabled = true;
  try {
    const answer = await request(`/v2.1/os-flows/${encodeURIComponent(flowId)}/action`,
      { method: "POST", body: action.body });
    replace(result, h("div", { class: "message ok", role: "status", dataset: { action: name } },
      h("p", {}, action.accepted),
      h("p", { class: "meta" }, `HTTP ${answer.status}`,
        answer.requestId ? [" · request ", traceLink(answer.requestId)] : null)));
    accepted = name;
    follow(run.state);
  } catch (err) {
    showError(result, err, `${action.noun} was not accepted`);
    restart(); // the page may be behind: show the run as it is now
  } finally {
    acting = false;
    for (const button of actionButtons()) button.disabled = false;
    actionsKey = null;
    renderActions(view);
    result.focus(); // the answer, where a keyboard or screen reader user goes next
  }
}

// Once the run an action was accepted for has ended, say how.
function showOutcome(run) {
  accepted = null;
  const message = $("#action-result .message.ok");
  if (!message) return;
  message.append(h("p", { class: "outcome" }, "The run has ended: ", badge(run.status), " ",
    h("span", { class: "mono small" }, run.state)));
}

async function refresh() {
  try {
    const data = await get(`/dashboard/api/flows/${encodeURIComponent(flowId)}`);
    status.ok();
    const { now, ...rest } = data;
    const key = JSON.stringify(rest);
    const waiting = following !== null && data.run.state === following.state
      && Date.now() < following.until;
    if (!waiting) following = null;
    const live = waiting || !data.run.finished
      || data.graph.nodes.some((n) => ["running", "reverting"].includes(n.status));
    $("#live").textContent = waiting ? "waiting for a conductor to act on it"
      : live ? "live: updated every second" : "finished";
    if (!live) updates?.stop();
    view = data;
    renderActions(data);
    if (accepted && !live) showOutcome(data.run);
    if (key === lastKey) return;
    lastKey = key;
    if (!chosen) {
      const focus = data.graph.nodes.find((n) => n.status === "failed")
        || data.graph.nodes.find((n) => ["running", "reverting"].includes(n.status));
      selected = focus ? focus.name : selected;
    }
    const focusedStep = document.activeElement?.closest?.(".node")?.dataset.step;
    replace($("#note"), data.note ? h("p", { class: "message warn" }, data.note) : null);
    renderRun(data.run, data.graph, now);
    const drawing = drawGraph(data.graph, data.run);
    replace($("#graph"), drawing);
    for (const node of drawing.querySelectorAll(".node")) {
      const width = Number(node.querySelector("rect").getAttribute("width")) - 40;
      for (const text of node.querySelectorAll("text.name, text.facts, text.error")) fit(text, width);
    }
    if (focusedStep) drawing.querySelector(`.node[data-step="${CSS.escape(focusedStep)}"]`)?.focus();
    renderStep();
    replace($("#events"), historyTable(data.events));
  } catch (err) {
    if (err.status !== 404) {
      status.failed(err);
    } else {
      showError($("#poll-errors"), err);
      updates?.stop();
      replace($("#run-facts"));
      replace($("#graph"), h("p", { class: "empty" }, "There is no flow run with this id."));
    }
  }
}

replace($("#legend"), STATES.map((s) => h("li", {}, badge(s))));
updates = poll(refresh, 1000);
