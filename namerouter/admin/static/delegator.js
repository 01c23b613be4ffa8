// The dtab playground: pick a router (or, on namerd, a namespace), type a path and
// optionally a dtab override, see how the name is delegated step by step. The state is
// the query string (?namespace=&path=&dtab=), so every result has a URL to share.
import {el, replace, getJSON, send, validateDtab, debounce, topNav, setStatus,
  ROUTER_LINKS, NAMERD_LINKS} from "/ui/common.js";
import {renderDelegateTree} from "/ui/delegate_tree.js";

const MODE = document.body.dataset.mode === "namerd" ? "namerd" : "router";
const $ = (id) => document.getElementById(id);
const qs = new URLSearchParams(location.search);
let bases = {};          // namespace -> base dtab text (router: Dtab.show, namerd: stored dtab)
let overrideValid = true;
let liveTimer = null;

const modes = {
  router: {
    links: ROUTER_LINKS, brand: "namerouter",
    intro: "How a router resolves a name: each step names the dtab entry that rewrote the path, " +
      "and bound names show their live addresses. The override is appended to the router's dtab " +
      "(as an l5d-dtab header would be), so its entries win.",
    async namespaces() {
      const routers = await getJSON("/admin/routers.json");
      bases = Object.fromEntries(routers.map(r => [r.label, {text: r.dtab,
        lines: r.dentries.map(d => `${d.prefix} => ${d.dst};`)}]));
      return routers.map(r => r.label);
    },
    async base(ns) { return bases[ns]; },
    async delegate(ns, path, override) {
      const body = {namespace: ns, path};
      const base = (bases[ns] || {}).text || "";
      if (override.trim()) body.dtab = base ? base + ";\n" + override : override;
      return send("POST", "/delegator.json", JSON.stringify(body), {"Content-Type": "application/json"});
    },
  },
  namerd: {
    links: NAMERD_LINKS, brand: "namerd",
    intro: "How namerd binds a name with a namespace's dtab. The extra dtab is appended to the " +
      "namespace's (as a router's own dtab is when it uses io.l5d.namerd.http).",
    async namespaces() { return getJSON("/namespaces.json"); },
    async base(ns) {
      const r = await send("GET", "/admin/dtab/" + encodeURIComponent(ns));
      if (!r.ok) return {text: "", lines: [], missing: true};
      return {text: r.body.dtab, lines: r.body.dtab.split("\n").filter(Boolean), version: r.body.version};
    },
    async delegate(ns, path, override) {
      const p = new URLSearchParams({namespace: ns, path});
      if (override.trim()) p.set("dtab", override);
      return send("GET", "/dtab/delegator.json?" + p.toString());
    },
  },
};
const mode = modes[MODE];

async function showBase() {
  const ns = $("namespace").value;
  const b = ns ? await mode.base(ns) : null;
  replace($("base-title"), MODE === "router" ? `dtab of router ${ns}` : `dtab of namespace ${ns}`,
    b && b.version ? el("span", {class: "muted", text: `  version ${b.version}`}) : null);
  replace($("base"), !b ? "" : b.missing ? el("span", {class: "muted", text: "(namespace does not exist: empty dtab)"})
    : b.lines.length ? b.lines.join("\n") : el("span", {class: "muted", text: "(empty)"}));
}

async function checkOverride() {
  const text = $("override").value;
  if (!text.trim()) { overrideValid = true; replace($("override-status")); return; }
  const v = await validateDtab(text);
  overrideValid = !!v.valid;
  replace($("override-status"), v.valid
    ? el("div", {class: "msg ok", text: `valid: ${v.dentries} entr${v.dentries === 1 ? "y" : "ies"}`})
    : el("div", {class: "msg error", id: "override-error", text: `line ${v.line}, column ${v.column}: ${v.message}`}));
}

function saveUrl(ns, path, override) {
  const p = new URLSearchParams();
  if (ns) p.set("namespace", ns);
  if (path) p.set("path", path);
  if (override.trim()) p.set("dtab", override);
  history.replaceState(null, "", "?" + p.toString());
}

async function run() {
  const ns = $("namespace").value, path = $("path").value.trim(), override = $("override").value;
  saveUrl(ns, path, override);
  if (!path) { replace($("result"), el("div", {class: "msg warn", text: "Type a path, e.g. /svc/web"})); return; }
  if (!overrideValid) {
    replace($("result"), el("div", {class: "msg error", text: "Fix the dtab override first."}));
    return;
  }
  setStatus("delegating…");
  let r;
  try {
    r = await mode.delegate(ns, path, override);
  } catch (e) {
    setStatus("no answer: " + e.message, "bad");
    return;
  }
  setStatus("updated " + new Date().toLocaleTimeString());
  if (!r.ok || typeof r.body !== "object") {
    replace($("result"), el("div", {class: "msg error", id: "delegate-error",
      text: `${r.status}: ${String(typeof r.body === "object" ? JSON.stringify(r.body) : r.body).trim()}`}));
    return;
  }
  const {tree, bound} = renderDelegateTree(r.body);
  replace($("result"), el("div", {class: "card"},
    el("h3", {}, "delegation of ", el("code", {text: path})),
    el("p", {id: "bound-summary"}, bound.length
      ? ["bound to ", bound.map((b, i) => [i ? ", " : "", el("code", {text: b.id})])]
      : el("span", {class: "bad", text: "no bound name: this path does not route"})),
    tree));
}

function setLive(on) {
  clearInterval(liveTimer);
  liveTimer = on ? setInterval(() => { if ($("path").value.trim()) run(); }, 2000) : null;
}

async function init() {
  $("nav").replaceWith(topNav("/delegator", {brand: mode.brand, links: mode.links}));
  $("intro").textContent = mode.intro;
  if (MODE === "namerd") {
    $("title").textContent = "Delegator";
    $("ns-label").textContent = "namespace";
    $("override-note").textContent = "(extra entries after the namespace's dtab)";
  } else {
    $("override-note").textContent = "(appended to the router's dtab; later entries win)";
  }
  let names = [];
  try { names = await mode.namespaces(); } catch (e) { setStatus("cannot list: " + e.message, "bad"); }
  const want = qs.get("namespace") || "";
  if (want && !names.includes(want)) names = [want, ...names];
  replace($("namespace"), names.map(n => el("option", {value: n, text: n})));
  if (want) $("namespace").value = want;
  $("path").value = qs.get("path") || "";
  $("override").value = qs.get("dtab") || "";
  $("namespace").addEventListener("change", () => { showBase(); if ($("path").value.trim()) run(); });
  $("override").addEventListener("input", debounce(checkOverride, 200));
  $("form").addEventListener("submit", async (ev) => { ev.preventDefault(); await checkOverride(); run(); });
  $("live").addEventListener("change", () => setLive($("live").checked));
  await showBase();
  await checkOverride();
  if ($("path").value.trim()) run();
}

init();
