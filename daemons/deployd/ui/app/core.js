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
  main().replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
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
  return table(tasks, ["Task", "Resource", "State", "Started", "By"], "No tasks yet.", taskRow);
}

/** A table: `columns` are headings, or [heading, cell(row)] pairs; `row(r)` may build the
 * whole row instead. `empty` says what to do when there are no rows. */
function table(rows, columns, empty, row) {
  const heads = columns.map((c) => (Array.isArray(c) ? c[0] : c));
  const build = row || ((r) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(r)))));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { class: "muted" }, rows.length ? "" : empty),
      h("thead", {}, h("tr", {}, heads.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map(build)),
    ),
  );
}

/** A region that redraws itself from `load()` every POLL_MS while it is on the page, and at
 * once when an action or a task ends (the "streamer:changed" event). A redraw waits while
 * the operator is in it: typing in a control, or a button armed for confirmation. */
function live(load) {
  const box = h("div", { class: "live" });
  let timer = null;
  let running = false;
  const busy = () => {
    const a = document.activeElement;
    return (box.contains(a) && ["INPUT", "SELECT", "TEXTAREA"].includes(a.tagName)) || box.querySelector("[data-armed]");
  };
  const tick = async (first) => {
    clearTimeout(timer);
    if (!first && !box.isConnected) {
      document.removeEventListener("streamer:changed", kick);
      return;
    }
    if (!running && (first || (!busy() && !document.hidden))) {
      running = true;
      try {
        const nodes = await load();
        box.replaceChildren(...[nodes].flat());
      } catch (e) {
        box.replaceChildren(errorBox(e));
      } finally {
        running = false;
      }
    }
    timer = setTimeout(() => tick(false), POLL_MS);
  };
  const kick = () => tick(false);
  document.addEventListener("streamer:changed", kick);
  tick(true);
  return box;
}

/** Tells the page's live regions that something changed (an action or a task ended). */
function changed() {
  document.dispatchEvent(new Event("streamer:changed"));
}

/** A button that acts on its second click ("Delete", then "Delete: sure?"), for actions
 * that cannot be undone; it disarms itself after five seconds. */
function confirmButton(label, act, attrs = {}) {
  const b = h("button", { type: "button", class: "write danger", ...attrs }, label);
  let timer = null;
  const disarm = () => {
    b.removeAttribute("data-armed");
    b.textContent = label;
  };
  b.addEventListener("click", async () => {
    if (!b.hasAttribute("data-armed")) {
      b.setAttribute("data-armed", "");
      b.textContent = `${label}: sure?`;
      timer = setTimeout(disarm, 5000);
      return;
    }
    clearTimeout(timer);
    disarm();
    await act();
  });
  return b;
}

/** A button that runs `act` once per click, disabled meanwhile. */
function actionButton(label, act, attrs = {}) {
  const b = h("button", { type: "button", class: "write", ...attrs }, label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await act();
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** The page's place for the outcome of actions (tasks followed live, errors). */
function outcome() {
  const box = h("div", { class: "outcome", "aria-live": "polite" });
  box.task = (uri, label) => {
    const t = taskProgress(uri, label);
    box.prepend(t);
    while (box.children.length > 3) box.lastChild.remove();
  };
  box.error = (e) => {
    box.prepend(errorBox(e));
    while (box.children.length > 3) box.lastChild.remove();
  };
  /** Runs an API call; a task it starts is followed, an error shown. Its answer (true
   * when empty), or null after an error. */
  box.run = async (label, call) => {
    try {
      const r = await call();
      if (r && r.category === "tasks" && r.uri) box.task(r.uri, label);
      else toast(`${label}: done.`);
      changed();
      return r ?? true;
    } catch (e) {
      box.error(e);
      return null;
    }
  };
  return box;
}

/** Follows a task until it ends: its state, progress bar and messages, live. */
function taskProgress(taskUri, label = "Task") {
  const box = h("div", { class: "card task", "aria-live": "polite" });
  let shown = false; // once on the page, leaving it stops the polling
  const poll = async () => {
    if (box.isConnected) shown = true;
    else if (shown) return;
    try {
      const t = await api("GET", taskUri);
      const errors = (t.taskErrors || []).map((e) =>
        h("li", { class: "error" }, e.message, e.recommendedActions?.length ? ` ${e.recommendedActions.join(" ")}` : ""),
      );
      const steps = (t.progressUpdates || []).slice(-4).map((u) => h("li", {}, u.statusUpdate || ""));
      const res = t.associatedResource || {};
      const done = !["Running", "New", "Pending", "Starting"].includes(t.taskState);
      box.replaceChildren(
        ...[
          h("h2", {}, `${t.name}${res.resourceName ? ` ${res.resourceName}` : ""}: `,
            h("span", { class: t.taskState === "Completed" ? "ok" : done ? "bad" : "" }, t.taskState)),
          h("progress", { max: 100, value: done ? 100 : t.percentComplete || 0, "aria-label": `${label} progress` }),
          h("p", {}, t.taskStatus || ""),
          steps.length ? h("ul", { class: "muted" }, steps) : null,
          errors.length ? h("ul", {}, errors) : null,
        ].filter(Boolean),
      );
      if (!done) setTimeout(poll, 1000);
      else changed();
    } catch (e) {
      box.replaceChildren(errorBox(e));
    }
  };
  poll();
  return box;
}

// ---------- files: uploads with progress, downloads ----------

/** Sends `form` (a FormData) as multipart to `path` with progress reports; `.abort()`
 * cancels it. Resolves to the answer (a task), rejects with an ApiError. */
function sendFile(path, form, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", path);
    xhr.setRequestHeader("X-API-Version", API_VERSION);
    xhr.setRequestHeader("Accept", "application/json");
    if (state.token) xhr.setRequestHeader("Auth", state.token);
    xhr.upload.addEventListener("progress", (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded, ev.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = { message: xhr.responseText };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, { message: "The upload failed: the appliance does not answer.", recommendedActions: ["Check the network path to the appliance, then retry."] })),
    );
    xhr.addEventListener("abort", () => reject(new ApiError(0, { message: "Upload cancelled: nothing was stored." })));
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

/** An upload form: a file input, `extra` fields, a progress bar and Cancel; `fill(form)`
 * adds the extra fields to the FormData; the resulting task is shown in `out`. */
function uploadForm({ id, title, path, accept, extra = [], fill = () => {}, out, label }) {
  const file = h("input", { id, type: "file", accept, required: true });
  const bar = h("progress", { max: 100, value: 0, hidden: true, "aria-label": `${title} progress` });
  const note = h("span", { class: "muted", "aria-live": "polite" });
  const send = h("button", { class: "primary", type: "submit" }, "Upload");
  const cancel = h("button", { type: "button", hidden: true }, "Cancel");
  const form = h(
    "form",
    { class: "card write", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    h("label", { for: id }, "File"),
    file,
    ...extra,
    h("p", {}, send, " ", cancel, " ", note),
    bar,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!file.files.length) {
      note.textContent = "Choose a file first.";
      file.focus();
      return;
    }
    const data = new FormData();
    data.append("file", file.files[0], file.files[0].name);
    fill(data);
    const up = sendFile(path, data, (sent, total) => {
      bar.value = Math.round((100 * sent) / total);
      note.textContent = `${(sent / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB sent`;
    });
    send.disabled = true;
    bar.hidden = false;
    cancel.hidden = false;
    cancel.onclick = () => up.abort();
    try {
      const task = await up.done;
      note.textContent = "Uploaded: the appliance is checking and storing it.";
      form.reset();
      if (task && task.uri) out.task(task.uri, label);
    } catch (e) {
      note.textContent = "";
      out.error(e);
    } finally {
      send.disabled = false;
      cancel.hidden = true;
      bar.hidden = true;
      bar.value = 0;
    }
  });
  return form;
}

/** Downloads `path` (with the session's header) as file `name`. The browser keeps the
 * bytes as a blob until saved (Chromium spills large blobs to disk). */
async function download(path, name) {
  toast(`Downloading ${name}…`);
  const resp = await fetch(path, {
    headers: { "X-API-Version": API_VERSION, Auth: state.token },
    credentials: "omit",
    cache: "no-store",
  });
  if (!resp.ok) {
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    throw new ApiError(resp.status, body);
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  toast(`${name} downloaded.`);
}

/** GET of a text resource (a log). */
async function apiText(path) {
  const resp = await fetch(path, {
    headers: { "X-API-Version": API_VERSION, Auth: state.token },
    credentials: "omit",
    cache: "no-store",
  });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  return resp.text();
}

/** A size in GiB ("" when unknown). */
const GiB = (bytes) => (bytes ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : "");

/** The id at the end of a resource URI. */
const idOf = (uri) => String(uri || "").split("/").pop();

/** The URI of what a create or replace saved: the answer itself, or the resource of the
 * task it answered with (a replace answers 202 and its task). */
function savedUri(r) {
  if (!r || typeof r !== "object") return null;
  return r.category === "tasks" ? (r.associatedResource || {}).resourceUri || null : r.uri || null;
}

/** A name for `uri` from `list` (a collection's members), else the URI. */
function nameOf(list, uri) {
  const m = (list || []).find((r) => r.uri === uri);
  return m ? m.name : uri || "";
}

/** A labelled input (or select) row; returns [label, control]. */
function field(id, label, control) {
  control.id = id;
  return [h("label", { for: id }, label), control];
}

/** A <select> of a collection's members by URI, with a first "choose" option. */
function select(members, choose, selected, attrs = {}) {
  return h(
    "select",
    attrs,
    h("option", { value: "" }, choose),
    members.map((m) => h("option", { value: m.uri, selected: m.uri === selected }, m.name)),
  );
}

/** All members of a collection, sorted by name. */
async function all(path, query = "") {
  const r = await api("GET", `${path}?count=500&sort=name:ascending${query}`);
  return r.members || [];
}

