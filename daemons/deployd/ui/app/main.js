// The pages by their address (#/page/id/mode), and the router. The dashboard redraws as a
// whole (`live`); other pages keep their forms and redraw only their `live()` regions.

const ROUTES = {
  dashboard: { render: dashboard, live: true },
  activity: { render: activity },
  deploy: { render: deployPage },
  "server-profiles": { render: serverProfiles },
  "compute-modules": { render: computeModules },
  "os-volumes": { render: osVolumes },
  "golden-images": { render: goldenImages },
  "deployment-plans": { render: deploymentPlans },
  "build-plans": { render: buildPlans },
  "plan-scripts": { render: planScripts },
  bundles: { render: bundles },
  users: { render: usersPage },
  account: { render: account },
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

