// Shared helpers of the admin pages. Everything a page shows that came from a client
// (service names, bound ids, dtabs, error messages) goes through el()/text nodes, never
// through innerHTML, so it is always text.

/** el("td", {class: "num", title: "…"}, child, "text", …) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "href") node.setAttribute("href", safeHref(v));
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
}

/** Links only to this origin: a relative URL (no scheme, no //host). */
export function safeHref(v) {
  const s = String(v);
  return /^\/(?!\/)/.test(s) || /^\?/.test(s) ? s : "#";
}

export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

export function replace(node, ...children) { clear(node); append(node, children); return node; }

export async function getJSON(url) {
  const r = await fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"});
  if (!r.ok) throw new HttpError(r.status, (await r.text()).trim());
  return r.json();
}

/** fetch that answers {status, ok, body (parsed JSON or text), headers}. */
export async function send(method, url, body, headers) {
  const r = await fetch(url, {method, body, headers: headers || {}, cache: "no-store"});
  const text = await r.text();
  let parsed = text;
  if ((r.headers.get("Content-Type") || "").includes("json")) {
    try { parsed = JSON.parse(text); } catch (_) { /* keep text */ }
  }
  return {status: r.status, ok: r.ok, body: parsed, headers: r.headers};
}

export class HttpError extends Error {
  constructor(status, text) { super(text || `HTTP ${status}`); this.status = status; }
}

/** Ask the server where a dtab is wrong (the pages never parse dtabs themselves). */
export async function validateDtab(text) {
  const r = await send("POST", "/admin/validate-dtab", text, {"Content-Type": "application/dtab"});
  if (!r.ok) return {valid: false, line: 0, column: 0, message: String(r.body).trim()};
  return r.body;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// Formatting ---------------------------------------------------------------------------

export function fmtRate(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return (v / 1000).toFixed(1) + "k";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function fmtPct(sr) {
  if (sr === null || sr === undefined) return "–";
  const p = sr * 100;
  return (p >= 99.995 ? "100" : p.toFixed(2)) + "%";
}

export function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  if (v >= 10) return v.toFixed(0) + " ms";
  return v.toFixed(2) + " ms";
}

export function fmtInt(v) { return v === null || v === undefined ? "–" : String(Math.round(v)); }

/** Linkerd's dashboard colours: ≥ 99.5 % good, ≥ 95 % warning, below bad. */
export function srClass(sr) {
  if (sr === null || sr === undefined) return "none";
  if (sr >= 0.995) return "good";
  if (sr >= 0.95) return "warn";
  return "bad";
}

export function topNav(active, items) {
  return el("header", {class: "top"},
    el("span", {class: "brand", text: items.brand || "namerouter"}),
    el("nav", {}, (items.links || []).map(([href, label]) =>
      el("a", {href, class: href === active ? "active" : null, text: label}))),
    el("span", {class: "status", id: "status"}));
}

export function setStatus(text, cls) {
  const s = document.getElementById("status");
  if (s) { s.textContent = text; s.className = "status " + (cls || ""); }
}

export const ROUTER_LINKS = [["/", "Dashboard"], ["/delegator", "Dtab playground"],
  ["/admin/metrics.json?pretty=1", "metrics.json"], ["/client_state.json?pretty", "client state"],
  ["/config.json?pretty=1", "config"]];
export const NAMERD_LINKS = [["/", "Namespaces"], ["/delegator", "Delegator"],
  ["/storage.json", "storage"], ["/admin/metrics.json?pretty=1", "metrics.json"]];
