// namerd's namespace list: every namespace with links to its editor and delegator.
import {el, replace, getJSON, topNav, setStatus, NAMERD_LINKS} from "/ui/common.js";

const NS_RE = /^[A-Za-z0-9_.:@+=-]+$/;
let all = [];

function render() {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  const shown = all.filter(n => !q || n.toLowerCase().includes(q));
  document.getElementById("count").textContent = `(${all.length})`;
  replace(document.querySelector("#namespaces tbody"), shown.length ? shown.map(ns =>
    el("tr", {"data-namespace": ns},
      el("td", {class: "name"}, el("a", {href: "/namespaces/" + encodeURIComponent(ns), text: ns})),
      el("td", {}, el("a", {href: "/namespaces/" + encodeURIComponent(ns), text: "edit"})),
      el("td", {}, el("a", {href: "/delegator?namespace=" + encodeURIComponent(ns), text: "delegate"}))))
    : el("tr", {}, el("td", {colspan: 3, class: "muted", text: all.length ? "no match" : "no namespaces yet"})));
}

async function init() {
  document.getElementById("nav").replaceWith(topNav("/", {brand: "namerd", links: NAMERD_LINKS}));
  document.getElementById("filter").addEventListener("input", render);
  document.getElementById("new-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = document.getElementById("new-name").value.trim();
    if (NS_RE.test(name)) location.href = "/namespaces/" + encodeURIComponent(name);
  });
  try {
    all = await getJSON("/namespaces.json");
    setStatus("");
  } catch (e) {
    setStatus("cannot list namespaces: " + e.message, "bad");
  }
  render();
}

init();
