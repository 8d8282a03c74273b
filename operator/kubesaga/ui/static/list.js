// The saga list: one event stream (a snapshot, then changes from the server's watch), filtered
// in the page. Filters live in the URL so a filtered view can be shared.
import { age, connect, el, phaseBadge } from "./common.js";

const sagas = new Map();
const $ = (id) => document.getElementById(id);
const filters = { namespace: $("f-namespace"), phase: $("f-phase"), labels: $("f-labels"), name: $("f-name") };

function keyOf(saga) { return `${saga.namespace}/${saga.name}`; }

function labelMatch(labels, query) {
  return query.split(",").map((s) => s.trim()).filter(Boolean).every((term) => {
    const [key, ...rest] = term.split("=");
    if (rest.length === 0) return Object.hasOwn(labels, key.trim());
    return labels[key.trim()] === rest.join("=").trim();
  });
}

function visible(saga) {
  const name = filters.name.value.trim().toLowerCase();
  return (!filters.namespace.value || saga.namespace === filters.namespace.value)
    && (!filters.phase.value || saga.phase === filters.phase.value)
    && (!name || saga.name.toLowerCase().includes(name))
    && labelMatch(saga.labels, filters.labels.value);
}

function row(saga) {
  const link = el("a", { href: `/saga/${encodeURIComponent(saga.namespace)}/${encodeURIComponent(saga.name)}`, text: saga.name });
  const labels = el("td", { className: "labels" });
  for (const [key, value] of Object.entries(saga.labels)) labels.append(el("span", { className: "label", text: `${key}=${value}` }));
  const tr = el("tr", { "data-namespace": saga.namespace, "data-name": saga.name, "data-phase": saga.phase },
    el("td", { text: saga.namespace }), el("td", {}, link), el("td", {}, phaseBadge(saga.phase)),
    el("td", { className: "progress", text: saga.progress }), el("td", { text: saga.current }),
    el("td", { className: "age", text: age(saga.created), title: saga.created || "", "data-created": saga.created || "" }),
    el("td", { className: "reason", text: saga.reason, title: saga.message }), labels);
  return tr;
}

function render() {
  const body = $("sagas").tBodies[0];
  const shown = [...sagas.values()].filter(visible).sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  body.replaceChildren(...shown.map(row));
  $("count").textContent = `${shown.length} of ${sagas.size}`;
  const namespaces = [...new Set([...sagas.values()].map((s) => s.namespace))].sort();
  const chosen = filters.namespace.value;
  filters.namespace.replaceChildren(el("option", { value: "", text: "all" }),
    ...namespaces.map((ns) => el("option", { value: ns, text: ns })));
  if (chosen && !namespaces.includes(chosen)) filters.namespace.append(el("option", { value: chosen, text: chosen }));
  filters.namespace.value = chosen;
}

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error || "";
}

function saveFilters() {
  const params = new URLSearchParams();
  for (const [key, input] of Object.entries(filters)) if (input.value) params.set(key, input.value);
  history.replaceState(null, "", params.size ? `?${params}` : location.pathname);
  render();
}

const initial = new URLSearchParams(location.search);
for (const [key, input] of Object.entries(filters)) {
  if (initial.has(key)) {
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === initial.get(key))) {
      input.append(el("option", { value: initial.get(key), text: initial.get(key) }));
    }
    input.value = initial.get(key);
  }
  input.addEventListener("input", saveFilters);
}
$("filters").addEventListener("submit", (event) => event.preventDefault());

connect("/api/stream", {
  snapshot(data) {
    sagas.clear();
    for (const saga of data.sagas) sagas.set(keyOf(saga), saga);
    showError(data.error);
    render();
    document.body.dataset.ready = "true";
  },
  status(data) { showError(data.error); },
  upsert(saga) { sagas.set(keyOf(saga), saga); render(); },
  delete(saga) { sagas.delete(keyOf(saga)); render(); },
});

// Ages move with the clock, not with the cluster: re-render that column only (no request).
setInterval(() => {
  for (const cell of document.querySelectorAll("td.age")) cell.textContent = age(cell.dataset.created);
}, 10000);
