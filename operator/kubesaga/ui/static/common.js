// Helpers shared by the pages. Everything from the cluster goes into textContent or an
// attribute value through these, never through an HTML parser.
export const SVG_NS = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function phaseBadge(phase) {
  return el("span", { className: `phase phase-${phase}`, text: phase, "data-phase": phase });
}

export function age(timestamp, now = Date.now()) {
  if (!timestamp) return "";
  const seconds = Math.max(0, Math.round((now - Date.parse(timestamp)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

// Show whether the page's event stream is up; EventSource reconnects by itself.
export function connect(url, handlers) {
  const status = document.getElementById("connection");
  const source = new EventSource(url);
  source.onopen = () => { status.textContent = "live"; status.className = "connection live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "connection down"; };
  for (const [kind, handler] of Object.entries(handlers)) {
    source.addEventListener(kind, (event) => handler(JSON.parse(event.data)));
  }
  return source;
}
