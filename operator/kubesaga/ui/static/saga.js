// One saga: the step graph (laid out by the server), a timeline, step values, Events and YAML,
// redrawn on every change the server's watch sends; Events are fetched again after each change.
import { connect, el, phaseBadge, svg } from "./common.js";

const $ = (id) => document.getElementById(id);
const [, , namespace, name] = location.pathname.split("/").map(decodeURIComponent);
const base = `/api/sagas/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
const NODE = { w: 180, h: 48 };
const PHASES = ["Pending", "Running", "AwaitingApproval", "Succeeded", "Failed", "Skipped", "Compensating", "Compensated", "CompensationFailed"];
let current = null;

document.title = `${name} · kubesaga`;
$("title").textContent = `${namespace}/${name}`;
$("legend").append(...PHASES.map(phaseBadge));

function arrowMarker(id, cls) {
  const marker = svg("marker", { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: cls }));
  return marker;
}

function drawGraph(graph) {
  const root = svg("svg", { width: graph.width, height: graph.height + 14, viewBox: `0 0 ${graph.width} ${graph.height + 14}`, id: "dag", role: "img" });
  root.append(svg("title", {}, `step graph of ${name}`));
  const defs = svg("defs");
  defs.append(arrowMarker("arrow", "arrow"), arrowMarker("arrow-compensation", "arrow-compensation"));
  root.append(defs);
  const at = Object.fromEntries(graph.nodes.map((n) => [n.name, n]));
  for (const edge of graph.edges) {
    const a = at[edge.source], b = at[edge.target];
    // Forward: right side to left side. Compensation (the undo runs against the arrow): left
    // side to right side, lower and bowed down. A long edge passes the slots kept free for it.
    const forward = edge.kind === "forward";
    const dy = forward ? 0 : NODE.h / 2 - 8, bow = forward ? 0 : 22;
    const points = [[forward ? a.x + NODE.w : a.x, a.y + NODE.h / 2 + dy]];
    for (const [left, right, y] of edge.via) {
      points.push(forward ? [left, y] : [right, y + dy], forward ? [right, y] : [left, y + dy]);
    }
    points.push([forward ? b.x : b.x + NODE.w, b.y + NODE.h / 2 + dy]);
    let d = `M${points[0][0]},${points[0][1]}`;
    for (let i = 1; i < points.length; i++) {
      const [x1, y1] = points[i - 1], [x2, y2] = points[i], mx = (x1 + x2) / 2;
      d += y1 === y2 && !bow ? ` L${x2},${y2}` : ` C${mx},${y1 + bow} ${mx},${y2 + bow} ${x2},${y2}`;
    }
    root.append(svg("path", { d, class: `edge ${edge.kind}`, "data-source": edge.source, "data-target": edge.target, "marker-end": `url(#${edge.kind === "forward" ? "arrow" : "arrow-compensation"})` }));
  }
  for (const node of graph.nodes) {
    const g = svg("g", { class: `node phase-${node.phase}`, "data-step": node.name, "data-phase": node.phase, transform: `translate(${node.x},${node.y})` });
    g.append(svg("title", {}, `${node.name}: ${node.phase}`));
    g.append(svg("rect", { width: NODE.w, height: NODE.h }));
    const label = node.name.length > 24 ? `${node.name.slice(0, 23)}…` : node.name;
    g.append(svg("text", { x: 10, y: 20, class: "name" }, label));
    g.append(svg("text", { x: 10, y: 38, class: "state" }, node.phase));
    if (node.undo_order) g.append(svg("text", { x: NODE.w - 50, y: -4, class: "undo", "data-undo": node.undo_order }, `undo ${node.undo_order}`));
    root.append(g);
  }
  $("graph").replaceChildren(root);
}

function drawTimeline(steps) {
  const spans = [];
  const now = Date.now();
  for (const step of steps) {
    // The step's bar shows how the action ended, whatever happened to it since (undone or not).
    const outcome = step.phase === "Failed" ? "Failed" : step.finishedAt ? "Succeeded" : "Running";
    if (step.startedAt) spans.push([step.name, "step", outcome, Date.parse(step.startedAt), step.finishedAt ? Date.parse(step.finishedAt) : now]);
    const c = step.compensation;
    if (c && c.startedAt) spans.push([step.name, "compensation", step.phase, Date.parse(c.startedAt), c.finishedAt ? Date.parse(c.finishedAt) : now]);
  }
  if (spans.length === 0) { $("timeline").replaceChildren(el("p", { text: "nothing dispatched yet" })); return; }
  const t0 = Math.min(...spans.map((s) => s[3])), t1 = Math.max(...spans.map((s) => s[4]), t0 + 1);
  const labelW = 260, barW = 560, rowH = 22, width = labelW + barW + 20;
  const root = svg("svg", { width, height: steps.length * rowH + 24, id: "timeline-svg" });
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * barW;
  steps.forEach((step, i) => {
    const attempts = step.attempt > 1 ? ` · attempt ${step.attempt}/${step.maxAttempts}` : "";
    const retry = step.nextAttemptAt ? " · retry due" : "";
    root.append(svg("text", { x: 0, y: i * rowH + 15, class: "row-label" }, `${step.name}${attempts}${retry}`));
  });
  for (const [stepName, kind, phase, start, end] of spans) {
    const i = steps.findIndex((s) => s.name === stepName);
    const bar = svg("rect", { x: x(start), y: i * rowH + 4 + (kind === "compensation" ? 8 : 0), width: Math.max(2, x(end) - x(start)), height: kind === "compensation" ? 8 : 10, class: `bar ${kind} phase-${phase}` });
    bar.append(svg("title", {}, `${stepName} ${kind}: ${((end - start) / 1000).toFixed(2)} s`));
    root.append(bar);
  }
  root.append(svg("text", { x: labelW, y: steps.length * rowH + 18, class: "axis" }, "0 s"));
  root.append(svg("text", { x: labelW + barW - 40, y: steps.length * rowH + 18, class: "axis" }, `${((t1 - t0) / 1000).toFixed(1)} s`));
  $("timeline").replaceChildren(root);
}

// POST an action; the page changes when the saga does, through the event stream.
async function act(action, body, what) {
  const init = { method: "POST", headers: { "X-Kubesaga-Action": action } };
  if (body) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const answer = await fetch(`${base}/${action}`, init);
  const text = answer.ok ? `${what} requested` : `${action} refused: ${answer.headers.get("Content-Type")?.includes("json") ? (await answer.json()).error : await answer.text()}`;
  $("action-result").textContent = text;
  $("action-result").dataset.ok = String(answer.ok);
}

// Approve / Reject with an optional reason, on a step that can take an answer now.
function approvalBox(step) {
  const input = el("input", { type: "text", className: "reason", placeholder: "reason (optional)", maxlength: "1024", "aria-label": `reason for ${step}` });
  const button = (verb, label) => {
    const b = el("button", { type: "button", className: verb, text: label });
    b.addEventListener("click", () => act(verb, { step, reason: input.value }, `${verb} of ${step}`));
    return b;
  };
  return el("div", { className: "approval" }, input, button("approve", "Approve"), button("reject", "Reject"));
}

// Redrawn on every change, but in place: a step's box and its approval box (the reason input)
// stay the same elements and are never detached, so someone typing a reason keeps the text,
// the focus and the caret while updates arrive. Only the content around them is rebuilt.
function drawSteps(steps, answerable) {
  const list = $("steps");
  const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  const old = new Map([...list.children].map((box) => [box.dataset.step, box]));
  const boxes = steps.map((step) => {
    const box = old.get(step.name) || el("div", { className: "step", "data-step": step.name });
    old.delete(step.name);
    const before = [
      el("h3", {}, el("span", { text: `${step.name} ` }), phaseBadge(step.phase)),
      el("div", { className: "meta", text: `action ${step.action}${step.compensationAction ? ` · compensation ${step.compensationAction}` : ""} · depends on ${step.dependsOn.join(", ") || "nothing"} · attempt ${step.attempt}/${step.maxAttempts}` }),
    ];
    const after = [];
    if (step.compensation) {
      const c = step.compensation;
      after.push(el("div", { className: "meta", text: `compensation: attempt ${c.attempt || 0}${c.error ? ` · error ${c.error.type}: ${c.error.message}` : ""}` }));
    }
    for (const value of step.values) {
      if (value.empty) continue;
      const key = `${step.name}/${value.label}`;
      const details = el("details", { "data-key": key, className: `value value-${value.label}` }, el("summary", { text: value.label }), el("pre", { text: value.text }));
      details.open = open.has(key) || !value.collapsed;
      after.push(details);
    }
    const kept = answerable.includes(step.name) ? box.querySelector(":scope > .approval") : null;
    if (kept) {
      for (const child of [...box.children]) if (child !== kept) child.remove();
      kept.before(...before);
      kept.after(...after);
    } else {
      const approval = answerable.includes(step.name) ? [approvalBox(step.name)] : [];
      box.replaceChildren(...before, ...approval, ...after);
    }
    return box;
  });
  for (const box of old.values()) box.remove();
  let previous = null; // put the boxes in order, moving only those out of place
  for (const box of boxes) {
    if ((previous ? previous.nextElementSibling : list.firstElementChild) !== box) {
      if (previous) previous.after(box);
      else list.prepend(box);
    }
    previous = box;
  }
}

async function loadEvents() {
  const answer = await fetch(`${base}/events`);
  if (!answer.ok) return;
  const data = await answer.json();
  $("events").tBodies[0].replaceChildren(...data.events.map((e) => el("tr", {},
    el("td", { text: e.time || "" }), el("td", { text: e.type }), el("td", { text: e.reason }),
    el("td", { text: e.count > 1 ? `${e.message} (×${e.count})` : e.message }))));
}

function render(saga) {
  current = saga;
  const badge = $("phase");
  badge.textContent = saga.phase;
  badge.className = `phase phase-${saga.phase}`;
  badge.dataset.phase = saga.phase;
  const parts = [`progress ${saga.progress}`];
  if (saga.current) parts.push(`running ${saga.current}`);
  if (saga.reason) parts.push(saga.reason);
  if (saga.message) parts.push(saga.message);
  $("summary").textContent = parts.join(" · ");
  $("error").hidden = !saga.problem;
  $("error").textContent = saga.problem || "";
  const finalOrUndoing = ["Compensating", "Compensated", "Failed"].includes(saga.phase) || saga.compensate;
  $("compensate").hidden = !saga.canCompensate || finalOrUndoing;
  const offered = saga.actions || { approve: [] };
  for (const action of ["suspend", "resume", "redrive"]) $(action).hidden = !offered[action];
  if (saga.graph) drawGraph(saga.graph);
  drawTimeline(saga.steps);
  drawSteps(saga.steps, offered.approve);
  $("yaml").textContent = saga.yaml;
  loadEvents();
  document.body.dataset.ready = "true";
}

$("compensate").addEventListener("click", async () => {
  if (!current || !confirm(`Compensate ${namespace}/${name}? Every step that succeeded is undone.`)) return;
  $("compensate").disabled = true;
  await act("compensate", null, "compensation");
  $("compensate").disabled = false;
});

const CONFIRM = {
  suspend: "Dispatch nothing more until Resume? Attempts in flight finish.",
  resume: "Let the saga go on from where it stood?",
  redrive: "Run the failed compensations again, then the ones they blocked?",
};
for (const [action, question] of Object.entries(CONFIRM)) {
  $(action).addEventListener("click", async () => {
    if (!current || !confirm(`${namespace}/${name}: ${question}`)) return;
    $(action).disabled = true;
    await act(action, null, action);
    $(action).disabled = false;
  });
}

connect(`${base}/stream`, {
  saga: render,
  gone() {
    $("summary").textContent = "this saga does not exist (any more)";
    for (const id of ["compensate", "suspend", "resume", "redrive"]) $(id).hidden = true;
    document.body.dataset.ready = "true";
  },
});
