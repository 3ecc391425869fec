// Plan scripts (view with highlighting, the editor with lint as you type), build plans and
// deployment plans.

/** Plan-script text as highlighted nodes: commands, @attributes@ and comments. */
function highlighted(content) {
  const nodes = [];
  for (const line of String(content || "").split("\n")) {
    if (line.trimStart().startsWith("#")) {
      nodes.push(h("span", { class: "cm" }, line), "\n");
      continue;
    }
    const m = line.match(/^(\s*)([!<-]*[A-Za-z][\w-]*)(.*)$/);
    const rest = m ? m[3] : line;
    if (m) nodes.push(m[1], h("span", { class: "kw" }, m[2]));
    for (const part of rest.split(/(@[^@\s]+@)/)) {
      if (/^@[^@\s]+@$/.test(part)) nodes.push(h("span", { class: "at" }, part));
      else if (part) nodes.push(part);
    }
    nodes.push("\n");
  }
  return nodes;
}

/** A plan script, highlighted, to read. */
function highlight(content) {
  return h("pre", { class: "script", tabindex: "0", "aria-label": "Plan script content" }, highlighted(content));
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
  // The text is typed into the textarea (its letters transparent) over a copy of it
  // highlighted in the same font and place, kept in step as you type and scroll.
  const layer = h("pre", { class: "layer", "aria-hidden": "true" });
  const drawLayer = () => {
    layer.replaceChildren(...highlighted(text.value), " ");
    layer.scrollTop = text.scrollTop;
    layer.scrollLeft = text.scrollLeft;
  };
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
    layer.scrollTop = text.scrollTop;
    layer.scrollLeft = text.scrollLeft;
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
    drawLayer();
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
    h("div", { class: "code-box" }, gutter, h("div", { class: "code-stack" }, layer, text)),
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
      location.hash = `#/plan-scripts/${idOf(savedUri(r))}`;
    } catch (e) {
      out.replaceChildren(errorBox(e));
      save.disabled = false;
    }
  });
  drawGutter();
  drawLayer();
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
  // Filtered as you type: by words in the name or description, and by type.
  const words = h("input", { type: "search", placeholder: "words in the name or description" });
  const type = h("select", {}, ["", "deploy", "capture", "general"].map((t) => h("option", { value: t }, t || "All types")));
  const scripts = await all("/rest/plan-scripts");
  const box = h("div", {});
  const draw = () => {
    const want = words.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = scripts.filter(
      (s) => (!type.value || s.planType === type.value) && want.every((w) => `${s.name} ${s.description || ""}`.toLowerCase().includes(w)),
    );
    box.replaceChildren(
      table(
        shown,
        [
          ["Name", (s) => h("a", { href: `#/plan-scripts/${idOf(s.uri)}` }, s.name)],
          ["Type", (s) => s.planType || ""],
          ["Description", (s) => s.description || ""],
        ],
        scripts.length ? "No plan script matches." : "No plan scripts yet: import an artifact bundle.",
      ),
    );
  };
  words.addEventListener("input", draw);
  type.addEventListener("change", draw);
  draw();
  return [
    h("h1", {}, "Plan scripts"),
    h("p", { class: "write" }, h("a", { href: "#/plan-scripts/new", class: "button" }, "New plan script")),
    h("div", { class: "row" }, h("div", { class: "grow" }, ...field("ps-filter", "Filter", words)), h("div", {}, ...field("ps-filter-type", "Type", type))),
    box,
  ];
}


// ---------- build plans ----------

const ATTRIBUTE_TYPES = ["string", "number", "option", "password", "ipv4", "hostname", "fqdn", "nic"];

/** An artifact's page: back link, name, facts, Edit and Delete for what may change. */
function artifactHeader(listHash, listTitle, a, out, editHash) {
  const locked = a.hpProvided || a.readOnly;
  return [
    h("p", {}, h("a", { href: listHash }, `← ${listTitle}`)),
    h("h1", {}, a.name),
    h("p", { class: "muted" }, a.description || ""),
    locked
      ? h("p", { class: "muted" }, "Provided by HPE: read-only (copy it into a new one to change it).")
      : h(
          "p",
          { class: "write" },
          h("a", { href: editHash, class: "button" }, "Edit"),
          " ",
          confirmButton("Delete", async () => {
            const r = await out.run(`Delete ${a.name}`, () => api("DELETE", a.uri));
            if (r !== null) location.hash = listHash;
          }),
        ),
    out,
  ];
}

function attributesTable(attrs, empty) {
  return table(
    attrs || [],
    [
      ["Attribute", (a) => a.name],
      ["Type", (a) => a.type || "string"],
      ["Default", (a) => (a.type === "password" ? (a.value ? "(set)" : "") : typeof a.value === "object" && a.value ? JSON.stringify(a.value) : a.value ?? "")],
      ["Constraints", (a) => (typeof a.constraints === "string" ? a.constraints : a.constraints ? JSON.stringify(a.constraints) : "")],
      ["Shown / editable", (a) => `${a.visible === false ? "hidden" : "shown"} / ${a.editable === false ? "fixed" : "editable"}`],
    ],
    empty,
  );
}

async function buildPlans(id, mode) {
  if (id === "new" || mode === "edit") {
    if (state.readOnly) return [h("h1", {}, "Build plans"), h("p", {}, "Your role (Read only) cannot change build plans.")];
    return buildPlanEditor(id === "new" ? null : await api("GET", `/rest/build-plans/${encodeURIComponent(id)}`));
  }
  if (id) {
    const [p, scripts] = await Promise.all([api("GET", `/rest/build-plans/${encodeURIComponent(id)}`), all("/rest/plan-scripts")]);
    const steps = [...(p.buildStep || [])].sort((a, b) => Number(a.serialNumber) - Number(b.serialNumber));
    return [
      ...artifactHeader("#/build-plans", "Build plans", p, outcome(), `#/build-plans/${encodeURIComponent(id)}/edit`),
      h("p", {}, `A ${p.oeBuildPlanType || ""} plan of ${steps.length} step(s).`),
      h("h2", {}, "Steps, in order"),
      table(
        steps,
        [
          ["#", (s) => s.serialNumber],
          ["Plan script", (s) => h("a", { href: `#/plan-scripts/${idOf(s.planScriptUri)}` }, s.planScriptName || nameOf(scripts, s.planScriptUri))],
          ["Parameters", (s) => s.parameters || ""],
        ],
        "No steps.",
      ),
      h("h2", { class: "spaced" }, "Custom attributes (from its plan scripts)"),
      attributesTable(p.customAttributes, "None."),
    ];
  }
  const list = live(async () =>
    table(
      await all("/rest/build-plans"),
      [
        ["Name", (r) => h("a", { href: `#/build-plans/${idOf(r.uri)}` }, r.name)],
        ["Type", (r) => r.oeBuildPlanType || ""],
        ["Steps", (r) => (r.buildStep || []).length],
        ["Description", (r) => r.description || ""],
      ],
      "No build plans yet: import an artifact bundle or create one.",
    ),
  );
  return [h("h1", {}, "Build plans"), h("p", { class: "write" }, h("a", { href: "#/build-plans/new", class: "button" }, "New build plan")), list];
}

/** The build-plan form: name, type, description, and the ordered steps (each a plan script
 * and its parameters; move up, move down, remove, add). */
async function buildPlanEditor(plan) {
  const scripts = await all("/rest/plan-scripts");
  const p = plan || { name: "", description: "", oeBuildPlanType: "deploy", buildStep: [] };
  const out = outcome();
  const name = h("input", { required: true, value: p.name });
  const description = h("input", { value: p.description || "" });
  const type = h("select", {}, ["deploy", "capture"].map((t) => h("option", { value: t, selected: t === (p.oeBuildPlanType || "").toLowerCase() }, t)));
  const rows = h("ol", { class: "steps" });
  // Each control's label names its step's current position.
  const renumber = () =>
    [...rows.children].forEach((li, i) => {
      for (const c of li.querySelectorAll("[data-label]")) c.setAttribute("aria-label", c.dataset.label.replace("#", i + 1));
    });
  const addStep = (step = {}) => {
    const script = select(scripts, "Choose a plan script", step.planScriptUri, { "data-label": "Step # plan script", class: "step-script" });
    const params = h("input", { value: step.parameters || "", "data-label": "Step # parameters", placeholder: "parameters (optional)", class: "step-params" });
    const li = h("li", { class: "row" }, h("div", { class: "grow" }, script), h("div", { class: "grow" }, params));
    const move = (d) => {
      if (d < 0 && li.previousElementSibling) rows.insertBefore(li, li.previousElementSibling);
      else if (d > 0 && li.nextElementSibling) rows.insertBefore(li.nextElementSibling, li);
      renumber();
    };
    li.append(
      h("button", { type: "button", "data-label": "Move step # up", onclick: () => move(-1) }, "↑"),
      h("button", { type: "button", "data-label": "Move step # down", onclick: () => move(1) }, "↓"),
      h("button", { type: "button", "data-label": "Remove step #", onclick: () => (li.remove(), renumber()) }, "Remove"),
    );
    rows.append(li);
    renumber();
  };
  [...(p.buildStep || [])].sort((a, b) => Number(a.serialNumber) - Number(b.serialNumber)).forEach(addStep);
  if (!rows.children.length) addStep();
  // A deploy plan's custom attributes: from its scripts' @Name@ references (worked out on
  // save), or set here, each with its type, default, constraints and description.
  const derive = h("input", { type: "checkbox", class: "inline", checked: !plan || !plan.customAttributes?.length });
  const attrList = h("div", {});
  let attrRows = [];
  const addAttribute = (a) => {
    const row = { a };
    const kind = h("select", { "aria-label": `Type of ${a.name}` }, ATTRIBUTE_TYPES.map((t) => h("option", { value: t, selected: t === (a.type || "string") }, t)));
    const value = h("input", { value: a.type === "nic" || a.value === null ? "" : a.value ?? "", "aria-label": `Default of ${a.name}` });
    const constraints = h("input", {
      value: typeof a.constraints === "string" ? a.constraints : JSON.stringify(a.constraints || {}),
      "aria-label": `Constraints of ${a.name}`,
      placeholder: '{"minimum": 1} or {"options": ["a", "b"]}',
    });
    const description = h("input", { value: a.description || "", "aria-label": `Description of ${a.name}` });
    row.value = () => ({
      name: a.name,
      type: kind.value,
      value: kind.value === "nic" ? null : value.value,
      constraints: constraints.value || "{}",
      description: description.value,
    });
    row.el = h(
      "div",
      { class: "row attribute" },
      h("strong", { class: "grow" }, a.name),
      h("div", {}, kind),
      h("div", { class: "grow" }, value),
      h("div", { class: "grow" }, constraints),
      h("div", { class: "grow" }, description),
      h("button", { type: "button", "aria-label": `Remove ${a.name}`, onclick: () => ((attrRows = attrRows.filter((r) => r !== row)), row.el.remove()) }, "Remove"),
    );
    attrRows.push(row);
    attrList.append(row.el);
  };
  (p.customAttributes || []).forEach(addAttribute);
  const newName = h("input", { "aria-label": "New attribute's name", placeholder: "name of a new attribute" });
  const attrEditor = h(
    "div",
    {},
    h("p", { class: "muted" }, "Each: its type, default, constraints (JSON) and description."),
    attrList,
    h(
      "div",
      { class: "row" },
      h("div", { class: "grow" }, newName),
      h("button", { type: "button", onclick: () => newName.value.trim() && (addAttribute({ name: newName.value.trim(), type: "string", value: "" }), (newName.value = "")) }, "Add attribute"),
    ),
  );
  const attrBox = h(
    "fieldset",
    {},
    h("legend", {}, "Custom attributes"),
    h("p", {}, derive, h("label", { for: "bp-derive", class: "inline" }, " From the plan scripts' @Name@ references (worked out when saved)")),
    attrEditor,
  );
  derive.id = "bp-derive";
  const drawAttrBox = () => {
    attrBox.hidden = type.value === "capture";
    attrEditor.hidden = derive.checked;
  };
  derive.addEventListener("change", drawAttrBox);
  type.addEventListener("change", drawAttrBox);
  drawAttrBox();
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "bp-title" },
    h("h1", { id: "bp-title" }, plan ? `Edit ${p.name}` : "New build plan"),
    ...field("bp-name", "Name", name),
    ...field("bp-type", "Type", type),
    ...field("bp-description", "Description", description),
    h("h2", { class: "spaced" }, "Steps, in order"),
    rows,
    h("p", {}, h("button", { type: "button", onclick: () => addStep() }, "Add a step")),
    attrBox,
    h("p", {}, h("button", { class: "primary", type: "submit" }, plan ? "Save" : "Create"), " ", h("a", { href: plan ? `#/build-plans/${idOf(plan.uri)}` : "#/build-plans" }, "Cancel")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const steps = [...rows.children].map((li, i) => ({
      serialNumber: String(i + 1),
      planScriptUri: li.querySelector(".step-script").value,
      parameters: li.querySelector(".step-params").value || null,
    }));
    if (steps.some((s) => !s.planScriptUri)) {
      out.error(new ApiError(400, { message: "Every step needs a plan script: choose one or remove the step." }));
      return;
    }
    const body = {
      name: name.value,
      description: description.value,
      oeBuildPlanType: type.value,
      buildStep: steps,
      // A capture plan has none; a deploy plan's come from its scripts unless given here.
      customAttributes: type.value === "capture" || derive.checked ? null : attrRows.map((r) => r.value()),
    };
    const r = await out.run(plan ? "Save" : "Create", () =>
      plan ? api("PUT", plan.uri, { ...body, type: plan.type, eTag: plan.eTag }) : api("POST", "/rest/build-plans", body),
    );
    if (savedUri(r)) location.hash = `#/build-plans/${idOf(savedUri(r))}`;
  });
  return [form];
}

// ---------- deployment plans ----------

async function deploymentPlans(id, mode) {
  if (id === "new" || mode === "edit") {
    if (state.readOnly) return [h("h1", {}, "Deployment plans"), h("p", {}, "Your role (Read only) cannot change deployment plans.")];
    return deploymentPlanEditor(id === "new" ? null : await api("GET", `/rest/deployment-plans/${encodeURIComponent(id)}`));
  }
  if (id) {
    const [p, images, plans] = await Promise.all([
      api("GET", `/rest/deployment-plans/${encodeURIComponent(id)}`),
      all("/rest/golden-images"),
      all("/rest/build-plans"),
    ]);
    return [
      ...artifactHeader("#/deployment-plans", "Deployment plans", p, outcome(), `#/deployment-plans/${encodeURIComponent(id)}/edit`),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Golden image"),
        h("dd", {}, p.goldenImageURI ? nameOf(images, p.goldenImageURI) : "none (an empty volume)"),
        h("dt", {}, "Build plan"),
        h("dd", {}, h("a", { href: `#/build-plans/${idOf(p.oeBuildPlanURI)}` }, nameOf(plans, p.oeBuildPlanURI))),
      ),
      h("h2", { class: "spaced" }, "Custom attributes: defaults and what a deploy shows"),
      attributesTable(p.customAttributes, "None."),
      h("p", { class: "write" }, h("a", { href: "#/deploy", class: "button" }, "Deploy with this plan")),
    ];
  }
  const list = live(async () => {
    const [members, images] = await Promise.all([all("/rest/deployment-plans"), all("/rest/golden-images")]);
    return table(
      members,
      [
        ["Name", (r) => h("a", { href: `#/deployment-plans/${idOf(r.uri)}` }, r.name)],
        ["Golden image", (r) => (r.goldenImageURI ? nameOf(images, r.goldenImageURI) : "none")],
        ["Attributes", (r) => (r.customAttributes || []).length],
        ["Description", (r) => r.description || ""],
      ],
      "No deployment plans yet: import an artifact bundle or create one.",
    );
  });
  return [
    h("h1", {}, "Deployment plans"),
    h("p", { class: "write" }, h("a", { href: "#/deployment-plans/new", class: "button" }, "New deployment plan")),
    list,
  ];
}

/** The deployment-plan form: golden image, deploy build plan, and each attribute's default,
 * whether a deploy shows it and whether it may be changed there. */
async function deploymentPlanEditor(plan) {
  const [images, plans] = await Promise.all([all("/rest/golden-images"), all("/rest/build-plans")]);
  const deployPlans = plans.filter((p) => (p.oeBuildPlanType || "").toLowerCase() === "deploy");
  const p = plan || { name: "", description: "", customAttributes: [] };
  const out = outcome();
  const name = h("input", { required: true, value: p.name });
  const description = h("input", { value: p.description || "" });
  const image = select(images, "None (an empty volume)", p.goldenImageURI);
  const build = select(deployPlans, "Choose a deploy build plan", p.oeBuildPlanURI, { required: true });
  const attrBox = h("fieldset", {}, h("legend", {}, "Custom attributes"));
  let rows = [];
  const drawAttributes = (attrs) => {
    rows = (attrs || []).map((a, i) => {
      const editableValue = a.type !== "nic";
      const value = h("input", {
        value: editableValue ? a.value ?? "" : "",
        type: a.type === "password" ? "password" : "text",
        disabled: !editableValue,
        "aria-label": `${a.name} default`,
        autocomplete: "off",
      });
      const visible = h("input", { type: "checkbox", class: "inline", checked: a.visible !== false, id: `dpa-v-${i}` });
      const editable = h("input", { type: "checkbox", class: "inline", checked: a.editable !== false, id: `dpa-e-${i}` });
      const row = h(
        "div",
        { class: "field" },
        h("label", { for: `dpa-${i}` }, `${a.name} (${a.type || "string"})`),
        Object.assign(value, { id: `dpa-${i}` }),
        h("span", {}, visible, h("label", { for: `dpa-v-${i}`, class: "inline" }, " shown at deploy "), editable, h("label", { for: `dpa-e-${i}`, class: "inline" }, " editable")),
      );
      return { a, value, visible, editable, editableValue, row };
    });
    attrBox.replaceChildren(h("legend", {}, "Custom attributes"), ...(rows.length ? rows.map((r) => r.row) : [h("p", { class: "muted" }, "The build plan has none.")]));
  };
  drawAttributes(p.customAttributes);
  build.addEventListener("change", async () => {
    if (!build.value) return drawAttributes([]);
    try {
      drawAttributes((await api("GET", build.value)).customAttributes);
    } catch (e) {
      out.error(e);
    }
  });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "dpl-title" },
    h("h1", { id: "dpl-title" }, plan ? `Edit ${p.name}` : "New deployment plan"),
    ...field("dpl-name", "Name", name),
    ...field("dpl-description", "Description", description),
    ...field("dpl-image", "Golden image", image),
    ...field("dpl-build", "Build plan", build),
    attrBox,
    h("p", {}, h("button", { class: "primary", type: "submit" }, plan ? "Save" : "Create"), " ", h("a", { href: plan ? `#/deployment-plans/${idOf(plan.uri)}` : "#/deployment-plans" }, "Cancel")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      name: name.value,
      description: description.value,
      oeBuildPlanURI: build.value,
      goldenImageURI: image.value || null,
      customAttributes: rows.map(({ a, value, visible, editable, editableValue }) => ({
        ...a,
        value: editableValue ? value.value : a.value ?? null,
        visible: visible.checked,
        editable: editable.checked,
      })),
    };
    const r = await out.run(plan ? "Save" : "Create", () =>
      plan ? api("PUT", plan.uri, { ...body, type: plan.type, eTag: plan.eTag }) : api("POST", "/rest/deployment-plans", body),
    );
    if (savedUri(r)) location.hash = `#/deployment-plans/${idOf(savedUri(r))}`;
  });
  return [form];
}
