// The shell: navigation, the helper banner, and wiring the helper's events into the store.
import { api, errorText } from "./api";
import { append, h, replace } from "./dom";
import { display } from "./format";
import { sameTarget, Store } from "./store";
import { ConnectView } from "./views/connect";
import { DiagnosticsView } from "./views/diagnostics";
import { ProfilesView } from "./views/profiles";
import { SettingsView } from "./views/settings";
import type { OpenRequest } from "./generated/contract";

type Screen = "connect" | "profiles" | "settings" | "diagnostics";
const SCREENS: { id: Screen; label: string }[] = [
  { id: "connect", label: "Connect" },
  { id: "profiles", label: "Profiles" },
  { id: "settings", label: "Settings" },
  { id: "diagnostics", label: "Diagnostics" },
];

export async function startApp(root: HTMLElement): Promise<Store> {
  const store = new Store(await api.helperView());
  const reload = async () => {
    try {
      store.state.profiles = await api.listProfiles();
      store.setCatalog(await api.serverCatalog());
      banner.dataset.profiles = "";
      replace(profileError);
    } catch (e) {
      replace(profileError, errorText(e));
    }
  };
  const views = {
    connect: new ConnectView(store),
    profiles: new ProfilesView(store, reload),
    settings: new SettingsView(store),
    diagnostics: new DiagnosticsView(store),
  };
  let current: Screen = "connect";
  const main = h("main", { id: "main", tabindex: "-1" });
  const banner = h("div", { id: "helper-banner", role: "status" });
  const profileError = h("p", { class: "error", role: "alert" });
  const nav = h(
    "nav",
    { "aria-label": "Screens" },
    h("div", { class: "brand" }, "Underpass"),
    SCREENS.map((s) =>
      h(
        "button",
        {
          id: `nav-${s.id}`,
          class: "nav",
          onclick: () => go(s.id),
        },
        s.label,
      ),
    ),
  );
  replace(root, nav, h("div", { class: "content" }, banner, profileError, main));

  function go(screen: Screen): void {
    current = screen;
    render();
    main.focus();
  }

  /** A link or a file the app was asked to open (command line, second instance). */
  async function open(r: OpenRequest): Promise<void> {
    switch (r.kind) {
      case "select": {
        store.choose(r.target);
        go("connect");
        if (!sameTarget(store.state.choice, r.target)) {
          const what = r.target.kind === "fastest" ? `the fastest server in ${r.target.country}` : `"${r.target.profile}"`;
          append(profileError, [h("span", { class: "line" }, `Could not select ${what}: it is not among your profiles.`)]);
        }
        break;
      }
      case "import":
        go("profiles");
        await views.profiles.importPaths(r.paths, false);
        break;
      case "import_link":
        go("profiles");
        views.profiles.confirmLink(r);
        break;
      case "refused":
        append(profileError, [h("span", { class: "line" }, `Could not open ${r.what}: ${r.reason}`)]);
        break;
    }
  }
  const takeOpenRequests = async () => {
    const requests = await api.takeOpenRequests();
    if (requests.length) replace(profileError);
    for (const r of requests) await open(r);
  };

  function render(): void {
    const d = display(store.state.view);
    banner.hidden = d.kind !== "no-helper" || current === "connect";
    if (!banner.hidden) replace(banner, h("strong", {}, d.title), " — ", d.detail || "retrying…");
    for (const b of nav.querySelectorAll<HTMLButtonElement>("button.nav")) {
      const on = b.id === `nav-${current}`;
      b.classList.toggle("active", on);
      if (on) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    const v = views[current];
    if (main.firstChild !== v.el) replace(main, v.el);
    v.update();
  }

  store.subscribe(render);
  // What the first frame needs, asked for at once: the window is built anew each time it
  // opens, so these round trips are part of every reopening from the tray.
  const [settings] = await Promise.all([
    api.getSettings().catch(() => null), // defaults stay
    reload(),
    api.onHelperView((v) => store.setView(v)),
    api.onSelfTestProgress((p) => views.diagnostics.progress(p)),
  ]);
  if (settings) {
    store.state.settings = settings;
    views.settings.reset();
  }
  // The event may have fired before we listened: take the latest view once more.
  store.setView(await api.helperView());
  // Rendered: say so once the frame is painted (the window is built anew each time it opens).
  const shown = () => document.getElementById("state-title")?.textContent ?? "";
  requestAnimationFrame(() => setTimeout(() => void api.windowReady(shown()).catch(() => {}), 0));
  await api.onOpenRequests(() => void takeOpenRequests());
  await takeOpenRequests();
  // The plot scrolls even when no event arrives.
  setInterval(() => {
    if (current === "connect" && store.state.view.status?.state === "connected") render();
  }, 1000);
  return store;
}
