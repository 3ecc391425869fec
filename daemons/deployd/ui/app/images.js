// Golden images (upload with progress and cancel, download, capture from an OS volume,
// delete) and artifact bundles (upload, extract, create from chosen artifacts, download,
// delete, the backup).

async function goldenImages() {
  const out = outcome();
  const list = live(async () => {
    const images = await all("/rest/golden-images");
    return table(
      images,
      [
        ["Name", (r) => r.name],
        ["Size", (r) => GiB(r.size)],
        ["Made by", (r) => (r.imageCapture ? "capture" : r.importedFromBundle ? `bundle ${r.bundleName || ""}` : "upload")],
        ["Description", (r) => r.description || ""],
        [
          "Actions",
          (r) => [
            actionButton("Download", () => download(`/rest/golden-images/download/${idOf(r.uri)}`, `${r.name}.zip`).catch(out.error), {
              class: "",
              "aria-label": `Download ${r.name}`,
            }),
            " ",
            confirmButton("Delete", () => out.run(`Delete ${r.name}`, () => api("DELETE", r.uri)), { "aria-label": `Delete ${r.name}` }),
          ],
        ],
      ],
      "No golden images yet: upload one, capture one, or import an artifact bundle.",
    );
  });

  const name = h("input", { required: true });
  const description = h("input", {});
  const upload = uploadForm({
    id: "gi-file",
    title: "Upload a golden image",
    path: "/rest/golden-images",
    accept: ".zip,.gz,.qcow2,.raw,.img",
    extra: [...field("gi-name", "Name", name), ...field("gi-description", "Description", description)],
    fill: (data) => {
      data.append("name", name.value);
      data.append("description", description.value);
    },
    out,
    label: "Upload",
  });

  const [volumes, plans] = await Promise.all([all("/rest/os-volumes"), all("/rest/build-plans")]);
  const capturePlans = plans.filter((p) => (p.oeBuildPlanType || "").toLowerCase() === "capture");
  const cName = h("input", { required: true });
  const cDescription = h("input", {});
  const cVolume = select(volumes, "Choose an OS volume", null, { required: true });
  const cPlan = select(capturePlans, "Choose a capture build plan", null, { required: true });
  const capture = h(
    "form",
    { class: "card write", "aria-labelledby": "cap-title" },
    h("h2", { id: "cap-title" }, "Capture from an OS volume"),
    ...field("cap-name", "Name of the new golden image", cName),
    ...field("cap-description", "Description", cDescription),
    ...field("cap-volume", "OS volume", cVolume),
    ...field("cap-plan", "Capture build plan", cPlan),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Capture")),
  );
  capture.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await out.run("Capture", () =>
      api("POST", "/rest/golden-images", {
        type: "GoldenImage",
        name: cName.value,
        description: cDescription.value,
        imageCapture: true,
        osVolumeURI: cVolume.value,
        buildPlanUri: cPlan.value,
      }),
    );
    if (r) capture.reset();
  });
  return [h("h1", {}, "Golden images"), out, list, h("div", { class: "grid spaced" }, upload, capture)];
}

/** Each kind of artifact: its key in a create request, label, collection, and key in a
 * bundle's description (HPE's: `goldenimage` for images). */
const ARTIFACT_KINDS = [
  ["planScripts", "Plan scripts", "/rest/plan-scripts", "planScripts"],
  ["buildPlans", "Build plans", "/rest/build-plans", "buildPlans"],
  ["deploymentPlans", "Deployment plans", "/rest/deployment-plans", "deploymentPlans"],
  ["goldenImages", "Golden images", "/rest/golden-images", "goldenimage"],
];

async function bundles() {
  const out = outcome();
  const list = live(async () => {
    const members = await all("/rest/artifact-bundles");
    return table(
      members,
      [
        ["Name", (r) => r.name],
        ["Contents", (r) => ARTIFACT_KINDS.map(([, label, , key]) => `${(r[key] || []).length} ${label.toLowerCase()}`).join(", ")],
        ["Description", (r) => r.description || ""],
        [
          "Actions",
          (r) => [
            actionButton("Extract", () => out.run(`Extract ${r.name}`, () => api("PUT", `${r.uri}?extract=true`, {})), {
              "aria-label": `Extract ${r.name}`,
            }),
            " ",
            actionButton("Download", () => download(r.downloadURI, `${r.name}.zip`).catch(out.error), {
              class: "",
              "aria-label": `Download ${r.name}`,
            }),
            " ",
            confirmButton("Delete", () => out.run(`Delete ${r.name}`, () => api("DELETE", r.uri)), { "aria-label": `Delete ${r.name}` }),
          ],
        ],
      ],
      "No artifact bundles yet: upload one (HPE's bundles are .zip files).",
    );
  });
  const upload = uploadForm({
    id: "bundle-file",
    title: "Upload an artifact bundle",
    path: "/rest/artifact-bundles",
    accept: ".zip",
    out,
    label: "Upload",
  });

  // Create a bundle from chosen artifacts.
  const artifacts = await Promise.all(ARTIFACT_KINDS.map(([, , path]) => all(path)));
  const bName = h("input", { required: true });
  const bDescription = h("input", {});
  const boxes = ARTIFACT_KINDS.map(([key, label], i) =>
    h(
      "fieldset",
      {},
      h("legend", {}, label),
      artifacts[i].length
        ? artifacts[i].map((a) => {
            const id = `pick-${idOf(a.uri)}`;
            return h("div", {}, h("input", { type: "checkbox", id, class: "inline", value: a.uri, "data-kind": key }), " ", h("label", { for: id, class: "inline" }, a.name));
          })
        : h("p", { class: "muted" }, "None."),
    ),
  );
  const create = h(
    "form",
    { class: "card write", "aria-labelledby": "bc-title" },
    h("h2", { id: "bc-title" }, "Create a bundle from artifacts"),
    ...field("bc-name", "Name", bName),
    ...field("bc-description", "Description", bDescription),
    h("p", { class: "muted" }, "What a chosen artifact needs (its scripts, plans, image) goes in too."),
    ...boxes,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Create bundle")),
  );
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: bName.value, description: bDescription.value };
    for (const [key] of ARTIFACT_KINDS) body[key] = [];
    for (const c of create.querySelectorAll("input[type=checkbox]:checked"))
      body[c.dataset.kind].push({ resourceUri: c.value, readOnly: false });
    const r = await out.run("Create bundle", () => api("POST", "/rest/artifact-bundles", body));
    if (r) create.reset();
  });

  const backup = live(async () => {
    const b = (await api("GET", "/rest/artifact-bundles/backups")).members || [];
    const last = b[0];
    return h(
      "section",
      { class: "card", "aria-labelledby": "bk-title" },
      h("h2", { id: "bk-title" }, "Backup of every artifact"),
      last ? h("p", {}, `Last backup: ${last.name}, ${when(last.created)}.`) : h("p", { class: "muted" }, "No backup yet."),
      h(
        "p",
        {},
        actionButton("Create backup", () => out.run("Backup", () => api("POST", "/rest/artifact-bundles/backups", {}))),
        " ",
        last ? actionButton("Download", () => download(last.downloadURI, `${last.name}.zip`).catch(out.error), { class: "" }) : null,
        " ",
        last ? confirmButton("Restore", () => out.run("Restore", () => api("PUT", last.uri, {}))) : null,
      ),
    );
  });
  return [h("h1", {}, "Artifact bundles"), out, list, h("div", { class: "grid spaced" }, upload, backup), create];
}
