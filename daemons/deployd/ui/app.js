// Streamer console. A client of the public REST API only (anything it does, a script can
// do). The session token lives in this tab's sessionStorage and travels in the `Auth`
// header: no cookie exists for another site to ride. No inline code anywhere (the page's
// Content-Security-Policy forbids it): the DOM is built with createElement and textContent,
// so nothing from the API is ever parsed as HTML.

const API_VERSION = "800";
const POLL_MS = 2000;

const state = {
  token: sessionStorage.getItem("streamer.token"),
  user: sessionStorage.getItem("streamer.user"),
  readOnly: sessionStorage.getItem("streamer.readOnly") === "true",
  timer: null,
};

// ---------- DOM helpers ----------

/** An element: h("td", {class: "x"}, "text", child...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function toast(text) {
  document.getElementById("status").textContent = text;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, body) {
    const msg = (body && (body.message || body.details)) || `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { "X-API-Version": API_VERSION, Accept: "application/json" };
  if (state.token) headers.Auth = state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, {
      message: "The appliance does not answer.",
      recommendedActions: ["Check the network path to the appliance, then retry."],
    });
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (resp.status === 401 && state.token) {
    logout("Your session has ended: log in again.");
    throw new ApiError(401, data);
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** An API error as the operator needs it: HPE's message and recommended actions. */
function errorBox(e) {
  const body = (e && e.body) || {};
  const actions = body.recommendedActions || [];
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", { class: "error" }, h("strong", {}, body.errorCode ? `${body.errorCode}: ` : ""), e.message || String(e)),
    actions.length ? h("ul", {}, actions.map((a) => h("li", {}, a))) : null,
  );
}

// ---------- session ----------

function setSession(token, user, readOnly = false) {
  state.token = token;
  state.user = user;
  state.readOnly = Boolean(token) && readOnly;
  if (token) {
    sessionStorage.setItem("streamer.token", token);
    sessionStorage.setItem("streamer.user", user);
    sessionStorage.setItem("streamer.readOnly", String(state.readOnly));
  } else {
    sessionStorage.removeItem("streamer.token");
    sessionStorage.removeItem("streamer.user");
    sessionStorage.removeItem("streamer.readOnly");
  }
  // A read-only user sees no control it cannot use (`.write` elements are hidden).
  document.body.classList.toggle("read-only", state.readOnly);
  const on = Boolean(token);
  document.getElementById("nav").hidden = !on;
  document.getElementById("logout").hidden = !on;
  const who = document.getElementById("who");
  who.hidden = !on;
  who.textContent = on ? user : "";
}

async function logout(message) {
  const token = state.token;
  setSession(null, null);
  if (token && !message) {
    try {
      await fetch("/rest/login-sessions", {
        method: "DELETE",
        headers: { "X-API-Version": API_VERSION, Auth: token },
        credentials: "omit",
      });
    } catch {
      /* the session ends with the tab anyway */
    }
  }
  location.hash = "#/login";
  if (message) toast(message);
}

function loginPage() {
  const user = h("input", { id: "user", name: "user", autocomplete: "username", required: true, value: "Administrator" });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const out = h("div", { "aria-live": "assertive" });
  const button = h("button", { class: "primary", type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to Streamer"),
    h("label", { for: "user" }, "User name"),
    user,
    h("label", { for: "password" }, "Password"),
    pass,
    h("p", {}, button),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    out.replaceChildren();
    try {
      const r = await api("POST", "/rest/login-sessions", { userName: user.value, password: pass.value });
      setSession(r.sessionID, user.value);
      const me = await api("GET", `/rest/users/${encodeURIComponent(user.value)}`);
      setSession(r.sessionID, user.value, !(me.roles || []).includes("Infrastructure administrator"));
      location.hash = "#/dashboard";
    } catch (e) {
      out.replaceChildren(errorBox(e));
      pass.select();
    } finally {
      button.disabled = false;
    }
  });
  show(form);
  user.focus();
}

// ---------- pages ----------

async function count(path) {
  const r = await api("GET", `${path}?start=0&count=1`);
  return r.total ?? r.count ?? 0;
}

function taskRow(t) {
  const s = t.taskState || "";
  const cls = s === "Completed" ? "ok" : s === "Error" || s === "Killed" ? "bad" : s === "Warning" ? "warn" : "";
  const res = t.associatedResource || {};
  const errors = (t.taskErrors || []).map((e) => e.message).filter(Boolean);
  return h(
    "tr",
    {},
    h("td", {}, t.name || ""),
    h("td", {}, res.resourceName || ""),
    h(
      "td",
      {},
      h("span", { class: cls }, s),
      s === "Running" ? h("progress", { max: 100, value: t.percentComplete || 0, "aria-label": `${t.name} progress` }) : null,
      errors.length ? h("div", { class: "error" }, errors.join(" ")) : null,
    ),
    h("td", {}, when(t.created)),
    h("td", {}, t.owner || ""),
  );
}

function taskTable(tasks) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { class: "muted" }, tasks.length ? "" : "No tasks yet."),
      h("thead", {}, h("tr", {}, ["Task", "Resource", "State", "Started", "By"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, tasks.map(taskRow)),
    ),
  );
}

async function dashboard() {
  const [nodes, storage, alerts, tasks, version] = await Promise.all([
    api("GET", "/rest/appliance/nodes"),
    api("GET", "/rest/appliance/storage"),
    api("GET", "/rest/alerts?count=20"),
    api("GET", "/rest/tasks?count=8&sort=created:descending"),
    api("GET", "/rest/version"),
  ]);
  const kinds = [
    ["Golden images", "/rest/golden-images"],
    ["Deployment plans", "/rest/deployment-plans"],
    ["Build plans", "/rest/build-plans"],
    ["Plan scripts", "/rest/plan-scripts"],
    ["OS volumes", "/rest/os-volumes"],
    ["Server profiles", "/rest/server-profiles"],
  ];
  const counts = await Promise.all(kinds.map(([, p]) => count(p)));
  const members = nodes.members || [];
  const active = (alerts.members || []).filter((a) => (a.alertState || "Active") !== "Cleared");
  const health = members.length
    ? h(
        "ul",
        {},
        members.map((n) =>
          h(
            "li",
            {},
            h("strong", {}, n.name),
            ` (${n.kind || "node"}) `,
            h("span", { class: n.health === "OK" ? "ok" : "bad" }, `${n.role} · ${n.health}`),
          ),
        ),
      )
    : h("p", {}, "A single appliance (not paired).");
  return [
    h("h1", {}, "Dashboard"),
    h(
      "div",
      { class: "grid" },
      h(
        "section",
        { class: "card", "aria-labelledby": "h-health" },
        h("h2", { id: "h-health" }, "Appliance"),
        health,
        h(
          "p",
          {},
          "OS volume storage: ",
          storage.replicated
            ? h("span", { class: storage.redundant ? "ok" : "bad" }, storage.redundant ? "redundant" : "not redundant")
            : "single copy",
        ),
        h("p", { class: "muted" }, `API versions ${version.minimumVersion}–${version.currentVersion}`),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "h-alerts" },
        h("h2", { id: "h-alerts" }, `Active alerts (${active.length})`),
        active.length
          ? h(
              "ul",
              {},
              active.map((a) => h("li", { class: a.severity === "Critical" ? "bad" : "warn" }, `${a.severity || ""} ${a.description || ""}`)),
            )
          : h("p", { class: "ok" }, "None."),
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "h-counts" },
        h("h2", { id: "h-counts" }, "Artifacts"),
        h(
          "div",
          { class: "counts" },
          kinds.map(([label], i) => h("div", { class: "count" }, h("b", {}, counts[i]), label)),
        ),
      ),
    ),
    h("h2", { class: "spaced" }, "Recent tasks"),
    taskTable(tasks.members || []),
  ];
}

const TASK_STATES = ["", "Running", "Completed", "Error", "Warning", "Killed"];
let activityFilter = "";

async function activity() {
  const q = activityFilter ? `&filter=${encodeURIComponent(`taskState='${activityFilter}'`)}` : "";
  const tasks = await api("GET", `/rest/tasks?count=100&sort=created:descending${q}`);
  const select = h(
    "select",
    { id: "state-filter" },
    TASK_STATES.map((s) => h("option", { value: s, selected: s === activityFilter }, s || "All states")),
  );
  select.addEventListener("change", () => {
    activityFilter = select.value;
    refresh();
  });
  return [
    h("h1", {}, "Activity"),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "state-filter" }, "State"), select)),
    taskTable(tasks.members || []),
  ];
}

/** Highlights plan-script text: commands, @attributes@ and comments. */
function highlight(content) {
  const pre = h("pre", { class: "script", tabindex: "0", "aria-label": "Plan script content" });
  for (const line of String(content || "").split("\n")) {
    const trimmed = line.trimStart();
    if (trimmed.startsWith("#")) {
      pre.append(h("span", { class: "cm" }, line), "\n");
      continue;
    }
    const m = line.match(/^(\s*)([!<-]*[A-Za-z][\w-]*)(.*)$/);
    const rest = m ? m[3] : line;
    if (m) pre.append(m[1], h("span", { class: "kw" }, m[2]));
    for (const part of rest.split(/(@[^@\s]+@)/)) {
      if (/^@[^@\s]+@$/.test(part)) pre.append(h("span", { class: "at" }, part));
      else pre.append(part);
    }
    pre.append("\n");
  }
  return pre;
}

/** The plan-script editor: the text, and beside it the appliance's lint findings on their
 * lines and the custom attributes the text declares, checked as you type. */
function editor(script) {
  const isNew = !script;
  const s = script || { name: "", planType: "deploy", description: "", content: "" };
  const name = h("input", { id: "ps-name", required: true, value: s.name });
  const type = h(
    "select",
    { id: "ps-type" },
    ["deploy", "capture", "general"].map((t) => h("option", { value: t, selected: t === s.planType }, t)),
  );
  const description = h("input", { id: "ps-description", value: s.description || "" });
  const text = h("textarea", { id: "ps-content", rows: 14, spellcheck: "false", class: "code", wrap: "off" });
  text.value = s.content || "";
  // Line numbers beside the text, each line with a finding marked (its message as a title).
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  let marks = new Map();
  const drawGutter = () => {
    const lines = text.value.split("\n").length;
    gutter.replaceChildren(
      ...Array.from({ length: lines }, (_, i) => {
        const f = marks.get(i + 1);
        return h("span", f ? { class: f.severity === "error" ? "mark bad" : "mark warn", title: f.message } : {}, `${i + 1}\n`);
      }),
    );
    gutter.scrollTop = text.scrollTop;
  };
  text.addEventListener("scroll", () => {
    gutter.scrollTop = text.scrollTop;
  });
  const findings = h("ol", { id: "lint", class: "findings", "aria-live": "polite" });
  const attrs = h("p", { id: "ps-attributes", class: "muted" });
  const out = h("div", { "aria-live": "assertive" });
  const save = h("button", { class: "primary", type: "submit" }, isNew ? "Create" : "Save");
  let pending = null;
  let asked = 0;
  const check = async () => {
    const mine = ++asked;
    try {
      const r = await api("POST", "/rest/plan-scripts/lint", { content: text.value });
      if (mine !== asked) return;
      marks = new Map();
      for (const f of r.findings || []) if (!marks.has(f.line) || f.severity === "error") marks.set(f.line, f);
      drawGutter();
      findings.replaceChildren(
        ...(r.findings || []).map((f) =>
          h("li", { class: f.severity === "error" ? "bad" : "warn", "data-line": f.line }, `line ${f.line}: ${f.severity}: ${f.message}`),
        ),
      );
      if (!(r.findings || []).length) findings.replaceChildren(h("li", { class: "ok" }, "No problems found."));
      const names = (r.customAttributes || []).map((a) => a.name);
      attrs.textContent = names.length ? `Custom attributes: ${names.join(", ")}` : "No custom attributes.";
      save.disabled = r.errors > 0;
    } catch (e) {
      if (mine === asked) findings.replaceChildren(h("li", {}, errorBox(e)));
    }
  };
  text.addEventListener("input", () => {
    drawGutter();
    clearTimeout(pending);
    pending = setTimeout(check, 300);
  });
  const form = h(
    "form",
    { class: "card editor", "aria-labelledby": "ed-title" },
    h("h1", { id: "ed-title" }, isNew ? "New plan script" : `Edit ${s.name}`),
    h(
      "div",
      { class: "row" },
      h("div", { class: "grow" }, h("label", { for: "ps-name" }, "Name"), name),
      h("div", {}, h("label", { for: "ps-type" }, "Type"), type),
    ),
    h("label", { for: "ps-description" }, "Description"),
    description,
    h("label", { for: "ps-content" }, "Script (guestfish commands; @Name@ or @Name:default@ for attributes)"),
    h("div", { class: "code-box" }, gutter, text),
    findings,
    attrs,
    h("p", {}, save, " ", h("a", { href: isNew ? "#/plan-scripts" : `#/plan-scripts/${script.uri.split("/").pop()}` }, "Cancel")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    out.replaceChildren();
    const body = { name: name.value, planType: type.value, description: description.value, content: text.value };
    try {
      const r = isNew
        ? await api("POST", "/rest/plan-scripts", body)
        : await api("PUT", script.uri, { ...body, type: script.type, eTag: script.eTag });
      location.hash = `#/plan-scripts/${r.uri.split("/").pop()}`;
    } catch (e) {
      out.replaceChildren(errorBox(e));
      save.disabled = false;
    }
  });
  drawGutter();
  check();
  return [form];
}

async function planScripts(id, mode) {
  if (state.readOnly && (id === "new" || mode === "edit"))
    return [h("h1", {}, "Plan scripts"), h("p", {}, "Your role (Read only) cannot change plan scripts.")];
  if (id === "new") return editor(null);
  if (id) {
    const s = await api("GET", `/rest/plan-scripts/${encodeURIComponent(id)}`);
    if (mode === "edit") return editor(s);
    return [
      h("p", {}, h("a", { href: "#/plan-scripts" }, "← Plan scripts")),
      h("h1", {}, s.name),
      h("p", { class: "muted" }, `${s.planType || ""} · ${s.description || ""}`),
      s.hpProvided || s.readOnly
        ? h("p", { class: "muted" }, "Provided by HPE: read-only.")
        : h("p", { class: "write" }, h("a", { href: `#/plan-scripts/${encodeURIComponent(id)}/edit`, class: "button" }, "Edit")),
      highlight(s.content),
    ];
  }
  const list = await api("GET", "/rest/plan-scripts?count=500&sort=name:ascending");
  return [
    h("h1", {}, "Plan scripts"),
    h("p", { class: "write" }, h("a", { href: "#/plan-scripts/new", class: "button" }, "New plan script")),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("caption", { class: "muted" }, (list.members || []).length ? "" : "No plan scripts yet: import an artifact bundle."),
        h("thead", {}, h("tr", {}, ["Name", "Type", "Description"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          (list.members || []).map((s) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: `#/plan-scripts/${s.uri.split("/").pop()}` }, s.name)),
              h("td", {}, s.planType || ""),
              h("td", {}, s.description || ""),
            ),
          ),
        ),
      ),
    ),
  ];
}

function simpleList(title, path, columns) {
  return async () => {
    const list = await api("GET", `${path}?count=500&sort=name:ascending`);
    const rows = list.members || [];
    return [
      h("h1", {}, title),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "muted" }, rows.length ? "" : "None yet."),
          h("thead", {}, h("tr", {}, columns.map(([c]) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows.map((r) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(r)))))),
        ),
      ),
    ];
  };
}

// ---------- deploy ----------

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOST_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function parseConstraints(c) {
  if (!c) return {};
  if (typeof c === "object") return c;
  try {
    return JSON.parse(c) || {};
  } catch {
    return {};
  }
}

/** Why `value` is not acceptable for attribute `a` (its type and constraints), or "". */
function attributeProblem(a, value, c) {
  if (value === "") return "";
  switch (a.type) {
    case "number": {
      const n = Number(value);
      if (!Number.isFinite(n)) return "must be a number";
      if (c.minimum !== undefined && n < c.minimum) return `must be at least ${c.minimum}`;
      if (c.maximum !== undefined && n > c.maximum) return `must be at most ${c.maximum}`;
      break;
    }
    case "ipv4":
      if (!IPV4.test(value)) return "must be an IPv4 address such as 10.0.0.5";
      break;
    case "hostname":
      if (!HOST_LABEL.test(value)) return "must be a host name: letters, digits and -, up to 63";
      break;
    case "fqdn":
      if (value.length > 253 || !value.split(".").every((l) => HOST_LABEL.test(l)))
        return "must be a fully qualified domain name such as host.example.com";
      break;
    default:
  }
  if (c.minlen !== undefined && value.length < c.minlen) return `must have at least ${c.minlen} characters`;
  if (c.maxlen !== undefined && value.length > c.maxlen) return `must have at most ${c.maxlen} characters`;
  if (c.regex) {
    try {
      if (!new RegExp(`^(?:${c.regex})$`).test(value)) return `must match ${c.regex}`;
    } catch {
      /* the appliance checks it */
    }
  }
  return "";
}

/** The inputs of one custom attribute: [name, input, hint] rows (a NIC has several). */
function attributeInputs(a) {
  const c = parseConstraints(a.constraints);
  const fields = a.type === "nic" ? (c.parameters || ["ipaddress", "netmask"]).map((p) => `${a.name}.${p}`) : [a.name];
  return fields.map((name) => {
    const id = `attr-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    let input;
    if (a.type === "option" && Array.isArray(c.options)) {
      input = h("select", { id, name }, c.options.map((o) => h("option", { value: o, selected: o === a.value }, o)));
    } else {
      const value = a.type === "nic" ? "" : a.value ?? "";
      input = h("input", {
        id,
        name,
        type: a.type === "password" ? "password" : "text",
        value: String(value),
        autocomplete: "off",
        "aria-describedby": `${id}-hint`,
      });
    }
    const hint = h("span", { id: `${id}-hint`, class: "hint muted" }, c.helpText || a.description || a.type || "");
    const check = () => {
      const problem = a.type === "nic" ? "" : attributeProblem(a, input.value, c);
      input.setCustomValidity(problem);
      input.setAttribute("aria-invalid", problem ? "true" : "false");
      hint.textContent = problem || c.helpText || a.description || a.type || "";
      hint.className = problem ? "hint error" : "hint muted";
      return !problem;
    };
    input.addEventListener("input", check);
    return { name, input, check, row: h("div", { class: "field" }, h("label", { for: id }, name), input, hint) };
  });
}

/** Follows a task until it ends: its state, progress bar and messages, live. */
function taskProgress(taskUri) {
  const box = h("div", { class: "card", id: "task", "aria-live": "polite" });
  const poll = async () => {
    try {
      const t = await api("GET", taskUri);
      const errors = (t.taskErrors || []).map((e) => h("li", { class: "error" }, e.message, e.recommendedActions?.length ? ` ${e.recommendedActions.join(" ")}` : ""));
      const steps = (t.progressUpdates || []).slice(-4).map((u) => h("li", {}, u.statusUpdate || ""));
      const res = t.associatedResource || {};
      box.replaceChildren(
        h("h2", {}, `${t.name}: `, h("span", { class: t.taskState === "Completed" ? "ok" : t.taskState === "Running" ? "" : "bad" }, t.taskState)),
        h("progress", { max: 100, value: t.percentComplete || 0, "aria-label": "Deploy progress" }),
        h("p", {}, t.taskStatus || ""),
        steps.length ? h("ul", { class: "muted" }, steps) : null,
        errors.length ? h("ul", {}, errors) : null,
        t.taskState !== "Running" && res.resourceUri ? h("p", {}, h("a", { href: "#/server-profiles" }, "Server profiles")) : null,
      );
      if (t.taskState === "Running" || t.taskState === "New" || t.taskState === "Pending") setTimeout(poll, 1000);
    } catch (e) {
      box.replaceChildren(errorBox(e));
    }
  };
  poll();
  return box;
}

async function deployPage() {
  if (state.readOnly) return [h("h1", {}, "Deploy"), h("p", {}, "Your role (Read only) cannot deploy.")];
  const [hardware, plans] = await Promise.all([
    api("GET", "/rest/server-hardware?count=500&sort=name:ascending"),
    api("GET", "/rest/deployment-plans?count=500&sort=name:ascending"),
  ]);
  const name = h("input", { id: "sp-name", required: true });
  const hw = h(
    "select",
    { id: "sp-hardware", required: true },
    h("option", { value: "" }, "Choose a compute module"),
    (hardware.members || []).map((m) => h("option", { value: m.uri }, m.name)),
  );
  const plan = h(
    "select",
    { id: "sp-plan", required: true },
    h("option", { value: "" }, "Choose a deployment plan"),
    (plans.members || []).map((p) => h("option", { value: p.uri }, p.name)),
  );
  const power = h("input", { id: "sp-power", type: "checkbox", checked: true, class: "inline" });
  const attrBox = h("fieldset", { id: "sp-attributes" }, h("legend", {}, "Custom attributes"), h("p", { class: "muted" }, "Choose a deployment plan."));
  const out = h("div", { "aria-live": "assertive" });
  const submit = h("button", { class: "primary", type: "submit" }, "Deploy");
  let fields = [];
  plan.addEventListener("change", async () => {
    fields = [];
    if (!plan.value) return;
    try {
      const p = await api("GET", plan.value);
      const visible = (p.customAttributes || []).filter((a) => a.visible !== false);
      fields = visible.flatMap(attributeInputs);
      attrBox.replaceChildren(
        h("legend", {}, "Custom attributes"),
        ...(fields.length ? fields.map((f) => f.row) : [h("p", { class: "muted" }, "This plan has none.")]),
      );
    } catch (e) {
      attrBox.replaceChildren(h("legend", {}, "Custom attributes"), errorBox(e));
    }
  });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "dp-title", novalidate: true },
    h("h1", { id: "dp-title" }, "Deploy a compute module"),
    h("label", { for: "sp-name" }, "Server profile name"),
    name,
    h("label", { for: "sp-hardware" }, "Compute module"),
    hw,
    h("label", { for: "sp-plan" }, "Deployment plan"),
    plan,
    attrBox,
    h("p", {}, power, h("label", { for: "sp-power", class: "inline" }, " Power on after the deploy")),
    h("p", {}, submit),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const bad = fields.filter((f) => !f.check());
    const missing = [name, hw, plan].filter((i) => !i.value);
    if (bad.length || missing.length) {
      out.replaceChildren(
        h("p", { class: "error", role: "alert" }, `Correct ${bad.length + missing.length} field(s) before deploying.`),
      );
      (missing[0] || bad[0].input).focus();
      return;
    }
    submit.disabled = true;
    try {
      const body = {
        name: name.value,
        serverHardwareUri: hw.value,
        powerOnAfterDeploy: power.checked,
        osDeploymentSettings: {
          osDeploymentPlanUri: plan.value,
          osCustomAttributes: fields.filter((f) => f.input.value !== "").map((f) => ({ name: f.name, value: f.input.value })),
        },
      };
      const t = await api("POST", "/rest/server-profiles", body);
      const progress = taskProgress(t.uri);
      out.replaceChildren(progress);
      progress.scrollIntoView({ block: "center" });
    } catch (e) {
      out.replaceChildren(errorBox(e));
      submit.disabled = false;
    }
  });
  return [form];
}

const ROUTES = {
  dashboard: { render: dashboard, live: true },
  activity: { render: activity, live: true },
  "plan-scripts": { render: planScripts, live: false },
  "golden-images": {
    render: simpleList("Golden images", "/rest/golden-images", [
      ["Name", (r) => r.name],
      ["State", (r) => r.status || r.state || ""],
      ["Size", (r) => (r.size ? `${(r.size / 2 ** 30).toFixed(1)} GiB` : "")],
      ["Description", (r) => r.description || ""],
    ]),
    live: true,
  },
  deploy: { render: deployPage, live: false },
  "server-profiles": {
    render: simpleList("Server profiles", "/rest/server-profiles", [
      ["Name", (r) => r.name],
      ["State", (r) => r.state || r.status || ""],
      ["Boot", (r) => (r.bootTarget ? r.bootTarget.protocol : "")],
      ["Server", (r) => r.serverHardwareUri || ""],
    ]),
    live: true,
  },
};

// ---------- routing ----------

let generation = 0;

async function refresh() {
  const mine = ++generation;
  clearTimeout(state.timer);
  const [, page = "dashboard", arg, mode] = location.hash.split("/");
  if (!state.token || page === "login") {
    if (page !== "login") location.hash = "#/login";
    else loginPage();
    return;
  }
  const route = ROUTES[page];
  if (!route) {
    show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/dashboard" }, "Go to the dashboard")));
    return;
  }
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    const nodes = await route.render(arg ? decodeURIComponent(arg) : undefined, mode);
    if (mine !== generation) return;
    // Keep the focused control (a filter) focused across live refreshes.
    const focused = document.activeElement && document.activeElement.id;
    show(...nodes);
    if (focused) document.getElementById(focused)?.focus();
  } catch (e) {
    if (mine !== generation || !state.token) return;
    show(h("h1", {}, "Could not load this page"), errorBox(e), h("p", {}, h("button", { type: "button", onclick: refresh }, "Retry")));
  }
  if (route.live && mine === generation) {
    state.timer = setTimeout(() => {
      if (mine === generation && !document.hidden) refresh();
      else if (mine === generation) state.timer = setTimeout(refresh, POLL_MS);
    }, POLL_MS);
  }
}

document.getElementById("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", () => {
  toast("");
  refresh();
  main().focus();
});
setSession(state.token, state.user, state.readOnly);
refresh();
