// namerd's dtab editor. namerd checks the text as you type (POST /admin/validate-dtab);
// "Review changes" runs the dry run (which bound names change destination); "Save" then
// writes with If-Match: the version loaded. A concurrent change is reported and nothing
// is overwritten: the editor keeps your text and shows theirs.
import {el, replace, send, validateDtab, debounce, topNav, setStatus, NAMERD_LINKS} from "/ui/common.js";

const $ = (id) => document.getElementById(id);
const ns = decodeURIComponent(location.pathname.replace(/^\/namespaces\//, ""));
const api = "/admin/dtab/" + encodeURIComponent(ns);
const doc = {exists: false, version: null, text: ""};
let valid = true;

function gutter(errLine) {
  const n = $("dtab").value.split("\n").length;
  replace($("gutter"), Array.from({length: n}, (_, i) =>
    el("div", {class: i + 1 === errLine ? "err" : null, text: String(i + 1)})));
  $("gutter").scrollTop = $("dtab").scrollTop;
}

function showVersion() {
  replace($("version"), doc.exists ? `version ${doc.version}` : "(new namespace: saving creates it)");
  $("version").dataset.version = doc.version || "";
}

async function load() {
  const r = await send("GET", api);
  if (r.status === 404) Object.assign(doc, {exists: false, version: null, text: ""});
  else if (r.ok) Object.assign(doc, {exists: true, version: r.body.version, text: r.body.dtab});
  else { setStatus(`cannot load ${ns}: ${r.status}`, "bad"); return; }
  $("dtab").value = doc.text;
  showVersion();
  replace($("review-result"));
  replace($("save-result"));
  await check();
}

async function check() {
  const text = $("dtab").value;
  const v = await validateDtab(text);
  if (text !== $("dtab").value) return;  // typed on meanwhile: a newer check follows
  valid = !!v.valid;
  $("editor").classList.toggle("invalid", !valid);
  $("review").disabled = !valid;
  gutter(valid ? 0 : v.line);
  if (valid) {
    replace($("validation"), el("div", {class: "msg ok", id: "valid-msg",
      text: `valid: ${v.dentries} entr${v.dentries === 1 ? "y" : "ies"}`}));
    return;
  }
  const line = text.split("\n")[v.line - 1];
  replace($("validation"),
    el("div", {class: "msg error", id: "syntax-error", "data-line": v.line, "data-column": v.column},
      `line ${v.line}, column ${v.column}: ${v.message}`),
    line !== undefined ? el("pre", {class: "caret"}, line + "\n" + " ".repeat(Math.max(0, v.column - 1)) + "^") : null);
}

function typedNames() {
  return $("names").value.split(/[\s,]+/).map(s => s.trim()).filter(Boolean);
}

async function review() {
  replace($("save-result"));
  const text = $("dtab").value;
  const r = await send("POST", api + "/dry-run", JSON.stringify({dtab: text, names: typedNames()}),
    {"Content-Type": "application/json"});
  if (!r.ok) {
    replace($("review-result"), el("div", {class: "msg error", text: `${r.status}: ${r.body.error || r.body}` +
      (r.body.line ? ` (line ${r.body.line}, column ${r.body.column}: ${r.body.message})` : "")}));
    return;
  }
  const d = r.body;
  const rows = d.names;
  replace($("review-result"), el("div", {class: "card", id: "dry-run"},
    el("h3", {text: `Dry run: ${d.changed} of ${rows.length} bound name${rows.length === 1 ? "" : "s"} would change destination`
      + (d.truncated ? ` (first ${rows.length} of ${d.total})` : "")}),
    rows.length ? el("table", {},
      el("thead", {}, el("tr", {}, ["name", "now", "after saving", ""].map(t => el("th", {text: t})))),
      el("tbody", {}, rows.map(x => el("tr", {class: x.changed ? "row-warn" : "", "data-name": x.name,
        "data-changed": x.changed ? "true" : "false"},
        el("td", {class: "name"}, x.name, x.extraDtab ? el("div", {class: "muted", text: "+ " + x.extraDtab}) : null),
        el("td", {class: "name", text: x.before}), el("td", {class: "name", text: x.after}),
        el("td", {}, el("span", {class: "badge " + (x.changed ? "warn" : ""), text: x.changed ? "CHANGED" : "unchanged"}))))))
      : el("p", {class: "muted", text: "namerd has no bound names for this namespace right now; add names above to check them."}),
    el("div", {class: "toolbar"},
      el("button", {type: "button", id: "save", onclick: save,
        text: doc.exists ? `Save (if still version ${doc.version})` : "Create namespace"}),
      el("span", {class: "muted", text: "nothing is written until you save"}))));
}

function conflict(body, what) {
  const cur = body.current;
  replace($("save-result"), el("div", {class: "msg error", id: "conflict"},
    `Not saved: ${what}. Your text is still in the editor.` +
      (cur ? ` The namespace is now at version ${cur.version}:` : " The namespace no longer exists.")),
    cur ? el("pre", {class: "card mono", id: "their-dtab", text: cur.dtab || "(empty)"}) : null,
    cur ? el("button", {type: "button", class: "secondary", id: "load-theirs", text: "Discard mine and load theirs",
      onclick: load}) : null);
}

async function save() {
  const text = $("dtab").value;
  $("save") && ($("save").disabled = true);
  const headers = {"Content-Type": "application/dtab"};
  if (doc.exists) headers["If-Match"] = doc.version;
  const r = await send(doc.exists ? "PUT" : "POST", api, text, headers);
  replace($("review-result"));
  if (r.status === 200 || r.status === 201) {
    if (r.body.version) {
      Object.assign(doc, {exists: true, version: r.body.version, text});
      showVersion();
      replace($("save-result"), el("div", {class: "msg ok", id: "saved", text: `saved: version ${r.body.version}`}));
    } else {
      replace($("save-result"), el("div", {class: "msg warn", id: "saved",
        text: "saved, but someone changed the namespace again right after: reload before editing further"}));
      doc.version = null;
    }
    return;
  }
  if (r.status === 412) return conflict(r.body, `someone else changed namespace ${ns} after you loaded version ${doc.version}`);
  if (r.status === 409) return conflict(r.body, `namespace ${ns} was created by someone else meanwhile`);
  if (r.status === 404) return conflict(r.body, `namespace ${ns} was deleted meanwhile`);
  const b = r.body;
  replace($("save-result"), el("div", {class: "msg error", text: `${r.status}: ` +
    (typeof b === "object" ? (b.error || "") + (b.line ? ` line ${b.line}, column ${b.column}: ${b.message}` : "") : b)}));
}

function init() {
  $("nav").replaceWith(topNav("/", {brand: "namerd", links: NAMERD_LINKS}));
  $("ns").textContent = ns;
  document.title = "namerd · " + ns;
  $("delegator-link").setAttribute("href", "/delegator?namespace=" + encodeURIComponent(ns));
  const area = $("dtab");
  area.addEventListener("input", () => { gutter(0); replace($("review-result")); });
  area.addEventListener("input", debounce(check, 150));
  area.addEventListener("scroll", () => { $("gutter").scrollTop = area.scrollTop; });
  $("review").addEventListener("click", review);
  $("reload").addEventListener("click", load);
  load();
}

init();
