// The dashboard and the activity log (tasks), both refreshed live.

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
        capacityLine(storage.capacity),
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

/** The data partition's use: a meter and free space (red under a tenth free). */
function capacityLine(c) {
  if (!c || !c.totalBytes) return null;
  const usedPart = c.usedBytes / c.totalBytes;
  return h(
    "p",
    {},
    h("label", { for: "capacity", class: "inline" }, "Data capacity: "),
    h("meter", { id: "capacity", min: 0, max: 1, low: 0.75, high: 0.9, optimum: 0.2, value: usedPart.toFixed(3) }),
    " ",
    h("span", { class: c.freeBytes / c.totalBytes < 0.1 ? "bad" : "" }, `${GiB(c.freeBytes)} free of ${GiB(c.totalBytes)}`),
  );
}

const TASK_STATES = ["", "Running", "Completed", "Error", "Warning", "Killed"];

/** Tasks, newest first, live; filtered by state (by the API) and by words in the task's
 * name, resource or owner (here, as you type). */
async function activity() {
  const byState = h("select", {}, TASK_STATES.map((s) => h("option", { value: s }, s || "All states")));
  const words = h("input", { type: "search", placeholder: "words in the task, resource or user" });
  const list = live(async () => {
    const q = byState.value ? `&filter=${encodeURIComponent(`taskState='${byState.value}'`)}` : "";
    const tasks = (await api("GET", `/rest/tasks?count=100&sort=created:descending${q}`)).members || [];
    const want = words.value.toLowerCase().split(/\s+/).filter(Boolean);
    const text = (t) => `${t.name} ${(t.associatedResource || {}).resourceName || ""} ${t.owner || ""}`.toLowerCase();
    return taskTable(tasks.filter((t) => want.every((w) => text(t).includes(w))));
  });
  byState.addEventListener("change", changed);
  words.addEventListener("input", changed);
  return [
    h("h1", {}, "Activity"),
    h(
      "div",
      { class: "row" },
      h("div", {}, ...field("state-filter", "State", byState)),
      h("div", { class: "grow" }, ...field("task-filter", "Filter", words)),
    ),
    list,
  ];
}
/** Highlights plan-script text: commands, @attributes@ and comments. */
