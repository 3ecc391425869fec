// Users and roles (administrators), and one's own password (everyone).

const ROLES = ["Infrastructure administrator", "Read only"];

async function usersPage() {
  if (state.readOnly) return [h("h1", {}, "Users"), h("p", {}, "Your role (Read only) cannot manage users: ask an administrator."), h("p", {}, h("a", { href: "#/account" }, "Change your password"))];
  const out = outcome();
  const list = live(async () =>
    table(
      ((await api("GET", "/rest/users?count=500")).members || []).sort((a, b) => a.userName.localeCompare(b.userName)),
      [
        ["User", (u) => u.userName],
        ["Full name", (u) => u.fullName || ""],
        [
          "Role",
          (u) => {
            const role = h("select", { "aria-label": `Role of ${u.userName}` }, ROLES.map((r) => h("option", { value: r, selected: (u.roles || []).includes(r) }, r)));
            role.addEventListener("change", () => out.run(`Role of ${u.userName}`, () => api("PUT", `/rest/users/${encodeURIComponent(u.userName)}`, { roles: [role.value] })));
            return role;
          },
        ],
        ["Actions", (u) => (u.userName === state.user ? "" : confirmButton("Delete", () => out.run(`Delete ${u.userName}`, () => api("DELETE", `/rest/users/${encodeURIComponent(u.userName)}`)), { "aria-label": `Delete ${u.userName}` }))],
      ],
      "No users.",
    ),
  );
  const name = h("input", { required: true, autocomplete: "off" });
  const full = h("input", {});
  const password = h("input", { type: "password", required: true, autocomplete: "new-password", minlength: 8 });
  const role = h("select", {}, ROLES.map((r) => h("option", { value: r, selected: r === "Read only" }, r)));
  const create = h(
    "form",
    { class: "card", "aria-labelledby": "nu-title" },
    h("h2", { id: "nu-title" }, "Add a user"),
    ...field("nu-name", "User name", name),
    ...field("nu-full", "Full name", full),
    ...field("nu-password", "Password (at least 8 characters)", password),
    ...field("nu-role", "Role", role),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Add user")),
  );
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await out.run(`Add ${name.value}`, () =>
      api("POST", "/rest/users", { userName: name.value, fullName: full.value, password: password.value, roles: [role.value] }),
    );
    if (r) create.reset();
  });
  return [h("h1", {}, "Users and roles"), out, list, h("div", { class: "spaced" }, create)];
}

async function account() {
  const current = h("input", { type: "password", required: true, autocomplete: "current-password" });
  const next = h("input", { type: "password", required: true, autocomplete: "new-password", minlength: 8 });
  const again = h("input", { type: "password", required: true, autocomplete: "new-password" });
  const out = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "pw-title" },
    h("h1", { id: "pw-title" }, `Change the password of ${state.user}`),
    ...field("pw-current", "Current password", current),
    ...field("pw-new", "New password (at least 8 characters)", next),
    ...field("pw-again", "New password again", again),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Change password")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    if (next.value !== again.value) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, "The two new passwords differ: type them again."));
      again.focus();
      return;
    }
    try {
      await api("PUT", "/rest/users/changePassword", { userName: state.user, currentPassword: current.value, newPassword: next.value });
      form.reset();
      out.replaceChildren(h("p", { class: "ok", role: "status" }, "Password changed: use it at your next log-in."));
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  });
  return [form];
}
