// Renders Linkerd's delegate-tree JSON (delegator.json, namerd's /delegate) as a nested
// list: every node with the path looked up, the dentry that produced it, and for bound
// leaves the bound id, residual path and the live address set. Failures are red.
import {el} from "/ui/common.js";

function dentryText(d) {
  return d ? `${d.prefix} => ${d.dst}` : null;
}

function addrView(addr) {
  if (!addr) return null;
  if (addr.type === "bound") {
    const addrs = addr.addrs || [];
    return el("div", {class: "addrs"},
      addrs.length ? addrs.map(a => el("div", {class: "addr", "data-addr": `${a.ip}:${a.port}`},
        `${a.ip}:${a.port}`,
        a.meta && Object.keys(a.meta).length ? el("span", {class: "muted", text: "  " + JSON.stringify(a.meta)}) : null))
        : el("span", {class: "bad", text: "address set is empty"}));
  }
  if (addr.type === "failed") return el("div", {class: "addrs bad", text: "address lookup failed: " + (addr.cause || "")});
  if (addr.type === "neg") return el("div", {class: "addrs bad", text: "no such name at the namer (neg)"});
  return el("div", {class: "addrs muted", text: addr.type});
}

const KIND_TEXT = {
  delegate: "", leaf: "bound", alt: "alternatives: the first that binds wins", union: "union: weighted split",
  neg: "no match (~)", fail: "fail (!)", empty: "empty ($)", exception: "error", transformation: "transformed",
};

function nodeClass(n) {
  if (n.type === "exception" || n.type === "fail") return "error";
  if (n.type === "neg") return "neg";
  if (n.type === "leaf") {
    const a = n.bound && n.bound.addr;
    if (a && (a.type === "failed" || a.type === "neg" || (a.type === "bound" && !(a.addrs || []).length))) return "error";
    return "bound";
  }
  return "";
}

function renderNode(n) {
  if (!n || typeof n !== "object") return el("li", {}, el("span", {class: "node error", text: "?"}));
  const box = el("div", {class: "node " + nodeClass(n), "data-type": n.type},
    el("span", {class: "path", text: n.type === "transformation" ? (n.name || "") : (n.path || "")}),
    n.dentry ? el("span", {class: "dentry", text: "by " + dentryText(n.dentry)}) : null,
    KIND_TEXT[n.type] ? el("span", {class: "kind badge " + (nodeClass(n) === "error" ? "bad" : ""), text: KIND_TEXT[n.type]}) : null);
  const kids = [];
  if (n.type === "leaf" && n.bound) {
    box.appendChild(el("div", {class: "bound-id mono"}, "bound id ", el("strong", {text: n.bound.id}),
      n.bound.path && n.bound.path !== "/" ? el("span", {class: "muted", text: "  residual " + n.bound.path}) : null));
    box.appendChild(addrView(n.bound.addr));
  }
  if (n.type === "exception") box.appendChild(el("div", {class: "bad message", text: n.message || "error"}));
  if (n.type === "delegate") kids.push(n.delegate);
  if (n.type === "alt") kids.push(...(n.alt || []));
  if (n.type === "transformation") {
    if (n.bound) box.appendChild(el("div", {class: "muted mono", text: "before: " + (n.bound.id || "")}));
    kids.push(n.tree);
  }
  const li = el("li", {}, box);
  if (n.type === "union") {
    li.appendChild(el("ul", {}, (n.union || []).map(u => {
      const child = renderNode(u.tree);
      child.insertBefore(el("span", {class: "badge weight", text: `weight ${u.weight}`}), child.firstChild);
      return child;
    })));
  } else if (kids.length) {
    li.appendChild(el("ul", {}, kids.map(renderNode)));
  }
  return li;
}

/** The tree of a delegator answer, plus the list of bound ids it reaches. */
export function renderDelegateTree(doc) {
  const bound = [];
  (function walk(n) {
    if (!n || typeof n !== "object") return;
    if (n.type === "leaf" && n.bound) bound.push(n.bound);
    for (const c of [n.delegate, n.tree, ...(n.alt || []), ...((n.union || []).map(u => u.tree))]) walk(c);
  })(doc);
  return {tree: el("ul", {class: "tree", id: "delegate-tree"}, renderNode(doc)), bound};
}
