// The router dashboard: polls /admin/dashboard.json once a second and redraws. Filter,
// router, sort and page live in the query string, so a view can be shared as a URL.
import {el, replace, getJSON, fmtRate, fmtPct, fmtMs, fmtInt, srClass, topNav, setStatus,
  ROUTER_LINKS, debounce} from "/ui/common.js";
import {chart, sparkline} from "/ui/chart.js";

const POLL_MS = 1000;
const LIMIT = 25;
const TOP_SLOTS = 300;   // router/server history points (server keeps 5 min at 1/s)
const NAME_SLOTS = 120;  // service/client history points (2 min)

const qs = new URLSearchParams(location.search);
const state = {
  q: qs.get("q") || "",
  router: qs.get("router") || "",
  sort: qs.get("sort") || "successRate",
  soffset: Math.max(0, parseInt(qs.get("soffset") || "0", 10) || 0),
  coffset: Math.max(0, parseInt(qs.get("coffset") || "0", 10) || 0),
};

function dataUrl() {
  const p = new URLSearchParams({sort: state.sort, soffset: state.soffset, coffset: state.coffset,
    slimit: LIMIT, climit: LIMIT});
  if (state.q) p.set("q", state.q);
  if (state.router) p.set("router", state.router);
  return "/admin/dashboard.json?" + p.toString();
}

function saveState() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v && !(k === "sort" && v === "successRate")) p.set(k, v);
  const s = p.toString();
  history.replaceState(null, "", s ? "?" + s : location.pathname);
}

// Polling: one request at a time; a change of filter polls at once. -------------------
let timer = null, inflight = false, again = false;
function schedule(ms) { clearTimeout(timer); timer = setTimeout(tick, ms); }
async function tick() {
  if (inflight) { again = true; return; }
  inflight = true;
  try {
    const doc = await getJSON(dataUrl());
    render(doc);
    setStatus("live · " + new Date().toLocaleTimeString(), "");
  } catch (e) {
    setStatus("no answer from the admin server: " + e.message, "bad");
  } finally {
    inflight = false;
    schedule(again ? 0 : POLL_MS);
    again = false;
  }
}

// Rendering ----------------------------------------------------------------------------
function figure(label, value, cls, key) {
  return el("div", {class: "figure", "data-figure": key},
    el("div", {class: "v " + (cls || ""), text: value}), el("div", {class: "k", text: label}));
}

function failures(series) {
  return series.rps.map((r, i) => (r === null || series.success[i] === null) ? null : Math.max(0, r - series.success[i]));
}

function trafficChart(series, slots) {
  return el("div", {class: "chart"},
    el("div", {class: "title"}, "requests/s ", el("span", {class: "legend"},
      el("span", {class: "l-rps", text: "■ all"}), el("span", {class: "l-fail", text: "■ failures"}))),
    chart({slots, series: [{values: series.rps, cls: "s-rps", area: true},
      {values: failures(series), cls: "s-fail", area: true}]}));
}

function latencyChart(series, slots) {
  return el("div", {class: "chart"},
    el("div", {class: "title"}, "latency ", el("span", {class: "legend"},
      el("span", {class: "l-p50", text: "p50"}), el("span", {class: "l-p95", text: "p95"}),
      el("span", {class: "l-p99", text: "p99"}))),
    chart({slots, unit: "ms", series: [{values: series.p50, cls: "s-p50"}, {values: series.p95, cls: "s-p95"},
      {values: series.p99, cls: "s-p99"}]}));
}

function routerCard(r) {
  const f = r.figures;
  const sc = srClass(f.successRate);
  return el("div", {class: "card router", "data-router": r.label},
    el("h3", {}, "router ", el("code", {text: r.label})),
    el("div", {class: "figures"},
      figure("requests/s", fmtRate(f.rps), "", "rps"),
      figure("success rate", fmtPct(f.successRate), sc, "successRate"),
      figure("p50", fmtMs(f.p50), "", "p50"), figure("p95", fmtMs(f.p95), "", "p95"),
      figure("p99", fmtMs(f.p99), "", "p99"),
      figure("connections", fmtInt(f.connections), "", "connections"),
      figure("requests", fmtInt(f.requests), "muted", "requests")),
    el("div", {class: "charts"}, trafficChart(r.series, TOP_SLOTS), latencyChart(r.series, TOP_SLOTS)),
    el("table", {class: "servers"},
      el("thead", {}, el("tr", {}, el("th", {text: "server"}), ...["req/s", "success", "p50", "p95", "p99",
        "connections"].map(t => el("th", {class: "num", text: t})))),
      el("tbody", {}, r.servers.map(s => el("tr", {class: "row-" + srClass(s.figures.successRate), "data-server": s.id},
        el("td", {class: "name", text: s.id}),
        el("td", {class: "num", text: fmtRate(s.figures.rps)}),
        el("td", {class: "num sr " + srClass(s.figures.successRate), text: fmtPct(s.figures.successRate)}),
        el("td", {class: "num", text: fmtMs(s.figures.p50)}), el("td", {class: "num", text: fmtMs(s.figures.p95)}),
        el("td", {class: "num", text: fmtMs(s.figures.p99)}),
        el("td", {class: "num", text: fmtInt(s.figures.connections)}))))));
}

function pager(table, key, container) {
  const from = table.matched ? table.offset + 1 : 0;
  const to = Math.min(table.offset + table.items.length, table.matched);
  const go = (off) => () => { state[key] = Math.max(0, off); saveState(); schedule(0); };
  return el("div", {class: "pager"},
    el("button", {class: "secondary", disabled: table.offset <= 0, onclick: go(table.offset - LIMIT), text: "‹ prev"}),
    el("span", {text: `${from}–${to} of ${table.matched}` + (table.matched !== table.total ? ` (filtered from ${table.total})` : "")}),
    el("button", {class: "secondary", disabled: to >= table.matched, onclick: go(table.offset + LIMIT), text: "next ›"}));
}

function rowSpark(series) {
  return sparkline([{values: series.rps, cls: "s-rps", area: true}, {values: failures(series), cls: "s-fail", area: true}],
    NAME_SLOTS);
}

function serviceTable(t) {
  const head = ["service", "router"].map(x => el("th", {text: x}))
    .concat(["req/s", "success", "p50", "p95", "p99", "retries"].map(x => el("th", {class: "num", text: x})))
    .concat([el("th", {text: "last 2 min"})]);
  return el("table", {id: "service-table"},
    el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, t.items.map(it => {
      const f = it.figures, sc = srClass(f.successRate);
      return el("tr", {class: "row-" + sc, "data-name": it.name, "data-router": it.router},
        el("td", {class: "name", text: it.name}), el("td", {text: it.router}),
        el("td", {class: "num rps", text: fmtRate(f.rps)}),
        el("td", {class: "num sr " + sc, text: fmtPct(f.successRate)}),
        el("td", {class: "num", text: fmtMs(f.p50)}), el("td", {class: "num", text: fmtMs(f.p95)}),
        el("td", {class: "num", text: fmtMs(f.p99)}),
        el("td", {class: "num", text: fmtInt(f["retries/total"])}),
        el("td", {}, rowSpark(it.series)));
    })));
}

const ACCRUAL_CLASS = {alive: "good", probing: "warn", dead: "bad"};

// An endpoint's failure-accrual state: alive, dead (removed from the balancer until the
// next probe) or probing, with the policy's figure in the tooltip.
function accrualBadge(fa) {
  if (!fa) return null;
  const bits = [`failure accrual ${fa.kind}: ${fa.state}`];
  if (fa.consecutiveFailures !== undefined) bits.push(`${fa.consecutiveFailures} consecutive failures`);
  if (fa.successRate !== undefined) bits.push(`success rate ${fmtPct(fa.successRate)}`);
  if (fa.removedForMs !== undefined) bits.push(`removed for ${(fa.removedForMs / 1000).toFixed(1)} s`);
  if (fa.retryInMs !== undefined) bits.push(`next probe in ${(fa.retryInMs / 1000).toFixed(1)} s`);
  const text = fa.state === "dead" && fa.retryInMs !== undefined ? `dead ${Math.ceil(fa.retryInMs / 1000)}s` : fa.state;
  return el("span", {class: "badge accrual " + (ACCRUAL_CLASS[fa.state] || ""), "data-accrual": fa.state,
    title: bits.join(" · "), text});
}

function endpointList(st) {
  if (!st) return el("span", {class: "muted", text: "–"});
  const eps = st.endpoints || [];
  const max = st.pool && st.pool.maxSize;
  return el("div", {class: "endpoints"},
    eps.length ? eps.map(e => el("div", {"data-endpoint": `${e.ip}:${e.port}`},
      `${e.ip}:${e.port} `, accrualBadge(e.failureAccrual), el("span", {class: "muted",
        text: `  out ${e.outstanding} · conn ${e.connections}${max ? "/" + max : ""} · idle ${e.idle} · wait ${e.waiters}` +
          (e.weight !== undefined && e.weight !== 1 ? ` · w ${e.weight}` : "")})))
      : el("span", {class: "muted", text: "no endpoints"}),
    st.failure ? el("div", {class: "bad", text: st.failure}) : null);
}

// hostConnectionPool.maxSize per endpoint ("∞": unbounded, Linkerd's default)
function poolMax(st) {
  if (!st || !st.pool) return "–";
  return st.pool.maxSize ? fmtInt(st.pool.maxSize) : "∞";
}

function clientTable(t) {
  const head = ["client", "router", "state"].map(x => el("th", {text: x}))
    .concat(["req/s", "success", "p99", "conns", "pool max", "removed", "requeues"].map(x => el("th", {class: "num", text: x})))
    .concat([el("th", {text: "endpoints (accrual · outstanding · connections · idle · waiters)"}), el("th", {text: "last 2 min"})]);
  return el("table", {id: "client-table"},
    el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, t.items.map(it => {
      const f = it.figures, sc = srClass(f.successRate);
      const st = it.state;
      const stName = st ? st.state : "gone";
      const removed = f["failure_accrual/removed"];
      return el("tr", {class: "row-" + sc, "data-name": it.name, "data-router": it.router},
        el("td", {class: "name", text: it.name}), el("td", {text: it.router}),
        el("td", {}, el("span", {class: "badge " + (stName === "bound" ? "good" : stName === "pending" ? "warn" : "bad"),
          text: stName}), st && st.loadBalancer ? el("div", {class: "muted", text: st.loadBalancer}) : null),
        el("td", {class: "num rps", text: fmtRate(f.rps)}),
        el("td", {class: "num sr " + sc, text: fmtPct(f.successRate)}),
        el("td", {class: "num", text: fmtMs(f.p99)}),
        el("td", {class: "num", text: fmtInt(f.connections)}),
        el("td", {class: "num pool-max", title: "hostConnectionPool maxSize (per endpoint)", text: poolMax(st)}),
        el("td", {class: "num " + (removed > 0 ? "bad" : ""), title: `failure accrual: ${fmtInt(f["failure_accrual/removals"])} removals, ${fmtInt(f["failure_accrual/revivals"])} revivals`,
          text: fmtInt(removed)}),
        el("td", {class: "num", text: fmtInt(f["retries/requeues"])}),
        el("td", {}, endpointList(st)),
        el("td", {}, rowSpark(it.series)));
    })));
}

function syncRouterSelect(labels) {
  const sel = document.getElementById("router-select");
  const have = Array.from(sel.options).map(o => o.value).filter(Boolean);
  if (have.join("\n") === labels.join("\n")) return;
  replace(sel, el("option", {value: "", text: "all routers"}),
    labels.map(l => el("option", {value: l, text: "router " + l})));
  sel.value = state.router;
}

function render(doc) {
  const routers = state.router ? doc.routers.filter(r => r.label === state.router) : doc.routers;
  replace(document.getElementById("routers"),
    routers.length ? el("div", {class: "cards"}, routers.map(routerCard))
      : el("p", {class: "muted", text: "No router has served a request yet."}));
  syncRouterSelect(doc.routers.map(r => r.label));
  replace(document.getElementById("svc-count"), `(${doc.services.total})`);
  replace(document.getElementById("client-count"), `(${doc.clients.total})`);
  replace(document.getElementById("services"), pager(doc.services, "soffset"), serviceTable(doc.services));
  replace(document.getElementById("clients"), pager(doc.clients, "coffset"), clientTable(doc.clients));
  replace(document.getElementById("window-note"),
    `Figures cover the last ${doc.windowS} s; charts show one point per second (routers: 5 min, services and clients: 2 min). ` +
    "Worst success rate first: a name without traffic in the window sorts last.");
}

function init() {
  document.getElementById("nav").replaceWith(topNav("/", {brand: "namerouter", links: ROUTER_LINKS}));
  const filter = document.getElementById("filter");
  filter.value = state.q;
  filter.addEventListener("input", debounce(() => {
    state.q = filter.value.trim(); state.soffset = 0; state.coffset = 0; saveState(); schedule(0);
  }, 200));
  const sel = document.getElementById("router-select");
  sel.addEventListener("change", () => { state.router = sel.value; state.soffset = 0; state.coffset = 0; saveState(); schedule(0); });
  const sort = document.getElementById("sort");
  sort.value = state.sort;
  sort.addEventListener("change", () => { state.sort = sort.value; saveState(); schedule(0); });
  schedule(0);
}

init();
