// Compute modules (register, power), server profiles (deploy with a form made from the
// deployment plan's attributes, delete) and OS volumes.

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
      const progress = taskProgress(t.uri, "Deploy");
      progress.id = "task";
      out.replaceChildren(progress);
      progress.scrollIntoView({ block: "center" });
    } catch (e) {
      out.replaceChildren(errorBox(e));
      submit.disabled = false;
    }
  });
  return [form];
}


// ---------- compute modules ----------

const MAC = /^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$/;

async function computeModules() {
  const out = outcome();
  const power = (r, state, control) =>
    out.run(`Power ${state.toLowerCase()} ${r.name}`, () => api("PUT", `${r.uri}/powerState`, { powerState: state, powerControl: control }));
  const list = live(async () => {
    const members = await all("/rest/server-hardware");
    return table(
      members,
      [
        ["Name", (r) => r.name],
        ["Power", (r) => h("span", { class: r.powerState === "On" ? "ok" : r.powerStateError ? "bad" : "" }, r.powerState || "", r.powerStateError ? ` (${r.powerStateError})` : "")],
        ["Boots over", (r) => `${(r.bootProtocol || "nbd").toUpperCase()} from ${r.deploymentIpv4 || ""}`],
        ["MAC", (r) => (r.macAddresses || []).join(", ")],
        [
          "Actions",
          (r) => [
            actionButton("Power on", () => power(r, "On", "MomentaryPress"), { "aria-label": `Power on ${r.name}` }),
            " ",
            confirmButton("Power off", () => power(r, "Off", "PressAndHold"), { "aria-label": `Power off ${r.name}` }),
            " ",
            confirmButton("Remove", () => out.run(`Remove ${r.name}`, () => api("DELETE", r.uri)), { "aria-label": `Remove ${r.name}` }),
          ],
        ],
      ],
      "No compute modules registered yet.",
    );
  });
  const name = h("input", { required: true });
  const mac = h("input", { required: true, placeholder: "52:54:00:12:34:56" });
  const ip = h("input", { required: true, placeholder: "10.0.0.21" });
  const protocol = h("select", {}, h("option", { value: "nbd" }, "NBD"), h("option", { value: "iscsi" }, "iSCSI (the NIC's firmware)"));
  const initiator = h("input", { placeholder: "made from its id when empty" });
  const rfAddress = h("input", { required: true, placeholder: "10.0.0.121:443" });
  const rfUser = h("input", { required: true, autocomplete: "off" });
  const rfPassword = h("input", { type: "password", required: true, autocomplete: "new-password" });
  const register = h(
    "form",
    { class: "card write", "aria-labelledby": "reg-title" },
    h("h2", { id: "reg-title" }, "Register a compute module"),
    ...field("reg-name", "Name", name),
    ...field("reg-mac", "MAC address of its boot NIC", mac),
    ...field("reg-ip", "Deployment address (its OS volume is served to this address only)", ip),
    ...field("reg-protocol", "Boots over", protocol),
    ...field("reg-initiator", "iSCSI initiator name", initiator),
    h(
      "fieldset",
      {},
      h("legend", {}, "Management processor (Redfish)"),
      ...field("reg-rf-address", "Address (host:port)", rfAddress),
      ...field("reg-rf-user", "User name", rfUser),
      ...field("reg-rf-password", "Password", rfPassword),
    ),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Register")),
  );
  register.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const problems = [];
    if (!MAC.test(mac.value.trim())) problems.push("The MAC address must look like 52:54:00:12:34:56.");
    if (!IPV4.test(ip.value.trim())) problems.push("The deployment address must be an IPv4 address.");
    if (problems.length) {
      out.error(new ApiError(400, { message: problems.join(" ") }));
      return;
    }
    const body = {
      name: name.value,
      macAddresses: [mac.value.trim()],
      deploymentIpv4: ip.value.trim(),
      bootProtocol: protocol.value,
      redfish: { address: rfAddress.value.trim(), username: rfUser.value, password: rfPassword.value },
    };
    if (initiator.value.trim()) body.iscsiInitiatorName = initiator.value.trim();
    const r = await out.run(`Register ${name.value}`, () => api("POST", "/rest/server-hardware", body));
    if (r) register.reset();
  });
  return [h("h1", {}, "Compute modules"), out, list, register];
}

// ---------- server profiles ----------

async function serverProfiles() {
  const out = outcome();
  const list = live(async () => {
    const [profiles, hardware, plans] = await Promise.all([all("/rest/server-profiles"), all("/rest/server-hardware"), all("/rest/deployment-plans")]);
    return table(
      profiles,
      [
        ["Name", (r) => r.name],
        ["State", (r) => h("span", { class: r.status === "OK" ? "ok" : r.status === "Critical" ? "bad" : "" }, r.state || r.status || "")],
        ["Compute module", (r) => nameOf(hardware, r.serverHardwareUri)],
        ["Deployment plan", (r) => nameOf(plans, (r.osDeploymentSettings || {}).osDeploymentPlanUri)],
        ["OS volume", (r) => {
          const v = (r.osDeploymentSettings || {}).osVolumeUri;
          return v ? h("a", { href: `#/os-volumes/${idOf(v)}` }, idOf(v).slice(0, 8)) : "";
        }],
        ["Actions", (r) => confirmButton("Delete", () => out.run(`Delete ${r.name}`, () => api("DELETE", r.uri)), { "aria-label": `Delete ${r.name}` })],
      ],
      "No server profiles yet: deploy a compute module.",
    );
  });
  return [
    h("h1", {}, "Server profiles"),
    h("p", { class: "write" }, h("a", { href: "#/deploy", class: "button" }, "Deploy a compute module")),
    out,
    list,
  ];
}

// ---------- OS volumes ----------

async function osVolumes(id) {
  if (id) return osVolume(id);
  const list = live(async () => {
    const [volumes, images, profiles] = await Promise.all([all("/rest/os-volumes"), all("/rest/golden-images"), all("/rest/server-profiles")]);
    return table(
      volumes,
      [
        ["Name", (r) => h("a", { href: `#/os-volumes/${idOf(r.uri)}` }, r.name)],
        ["Size", (r) => GiB(r.size)],
        ["Golden image", (r) => nameOf(images, r.goldenVolumeUri)],
        ["Server profile", (r) => nameOf(profiles, r.statelessServerUri)],
        ["State", (r) => h("span", { class: r.status === "Critical" ? "bad" : "" }, `${r.deployState || r.state || ""} · ${r.exportState || ""}`)],
      ],
      "No OS volumes yet: each deploy makes one.",
    );
  });
  return [h("h1", {}, "OS volumes"), list];
}

async function osVolume(id) {
  const v = await api("GET", `/rest/os-volumes/${encodeURIComponent(id)}`);
  const [storage, log] = await Promise.all([
    api("GET", `/rest/os-volumes/${encodeURIComponent(id)}/storage`),
    apiText(`/rest/os-volumes/archive/${encodeURIComponent(id)}`).catch((e) => `(no activity log: ${e.message})`),
  ]);
  const facts = [
    ["Size", GiB(v.size)],
    ["Allocated", GiB(v.allocatedCapacity)],
    ["State", `${v.deployState || ""} ${v.state || ""}`],
    ["Export", v.exportState || ""],
    ["Served to", ((storage.export || {}).allow || []).join(", ")],
    ["Connections", String((storage.connections || []).length ?? "")],
    ["Created", when(v.created)],
  ];
  return [
    h("p", {}, h("a", { href: "#/os-volumes" }, "← OS volumes")),
    h("h1", {}, v.name),
    h("dl", { class: "facts" }, facts.flatMap(([k, val]) => [h("dt", {}, k), h("dd", {}, val)])),
    h("h2", { class: "spaced" }, "Activity log"),
    h("pre", { class: "script", tabindex: "0", "aria-label": "Activity log" }, log || "(empty)"),
  ];
}
