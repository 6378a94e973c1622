// The page-wide options of `_genesys.widgets.main`, as the original reads them: `debug` (the
// bus logs every command, event and subscription: CXBus.configure({debug})),
// `theme` / `themes` (a theme is a CSS class put on every widget: {dark: "cx-theme-dark",
// light: "cx-theme-light"} by default, "dark" first; a site adds its own, e.g.
// {themes: {acme: "acme-theme"}, theme: "acme"}, and styles that class), the App plugin's
// setTheme / getTheme commands and its `theme` event, `mobileMode` ("auto", true, false) with
// `mobileModeBreakpoint` (600 px), and `customStylesheetID` (the id of a <style> or <link> of
// the site's whose rules apply inside the widget, after its own).
//
// A widget lives in a Shadow DOM, so a site's stylesheet does not reach into it; a theme class
// on the element can still set the custom properties the widget's styles read
// (`webchat-widget.acme-theme { --webchat-accent: #7a1fa2; }`), and customStylesheetID brings
// whole rules in.
//
// `downloadGoogleFont`: the original loads Roboto from Google Fonts unless it is false. Ours
// contacts no third party by default (a deliberate difference, for the customers' privacy):
// only `true` adds the stylesheet link to the document head and puts Roboto first in the
// widget's font stack.

import {mainConfig} from "./strings.js";

const BUILT_IN = {dark: "cx-theme-dark", light: "cx-theme-light"};
const DEFAULT_THEME = "dark";
const DEFAULT_BREAKPOINT = 600;
export const GOOGLE_FONT = "https://fonts.googleapis.com/css?family=Roboto:400,300,100";

class Presentation {
  constructor(bus, main) {
    this.themes = {...BUILT_IN};
    for (const [name, cls] of Object.entries(main.themes ?? {})) {
      if (typeof cls === "string" && /^[\w-]+$/.test(cls)) this.themes[name] = cls;
    }
    this.theme = main.theme in this.themes ? main.theme : DEFAULT_THEME;
    this.hosts = new Set();
    this.mobileMode = main.mobileMode ?? "auto";
    const breakpoint = Number(main.mobileModeBreakpoint);
    this.breakpoint = Number.isFinite(breakpoint) && breakpoint > 0 ? breakpoint : DEFAULT_BREAKPOINT;
    this.customStylesheetID = typeof main.customStylesheetID === "string"
      ? main.customStylesheetID.replace(/^#/, "") : "";
    if (typeof main.debug === "boolean") bus?.configure?.({debug: main.debug});
    this.fontSheet = main.downloadGoogleFont === true ? googleFont() : null;
    this.register(bus);
  }

  // The original's App plugin, for page scripts that switch themes at run time.
  register(bus) {
    if (!bus || bus.plugins?.has("App")) return;
    const app = bus.registerPlugin("App");
    if (!app) return;
    app.registerEvents?.(["theme"]);
    app.registerCommand("setTheme", (options) => this.setTheme(options?.theme));
    app.registerCommand("getTheme", () => this.theme);
    app.ready();
    this.app = app;
  }

  setTheme(name) {
    if (!(name in this.themes)) throw new Error("Invalid theme specified");
    this.theme = name;
    for (const host of this.hosts) this.applyTheme(host);
    this.app?.publish("theme", {theme: this.themes[name]});
    return name;
  }

  applyTheme(host) {
    host.classList.remove(...Object.values(this.themes));
    host.classList.add(this.themes[this.theme]);
  }

  mobileQuery() {
    const px = this.breakpoint;
    return window.matchMedia(`(max-width: ${px}px), (max-height: ${px}px) and (pointer: coarse)`);
  }

  applyMobile(host) {
    const mobile = this.mobileMode === true ? true : this.mobileMode === false ? false
      : this.mobileQuery().matches;
    host.classList.toggle("cx-mobile", mobile);
    host.classList.toggle("cx-desktop", !mobile);
  }

  // A widget element joins: it gets the theme now and whenever it changes, the mobile or desktop
  // layout as the window changes, and the site's custom stylesheet inside its shadow root.
  attach(host, root) {
    this.hosts.add(host);
    this.applyTheme(host);
    this.applyMobile(host);
    if (this.fontSheet) root.adoptedStyleSheets = [...root.adoptedStyleSheets, this.fontSheet];
    if (this.mobileMode !== true && this.mobileMode !== false) {
      this.mobileQuery().addEventListener("change", () => this.applyMobile(host));
    }
    this.customSheet().then((sheet) => {
      if (sheet) root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
    });
  }

  // The rules of the site's <style> (or <link rel=stylesheet>) named by customStylesheetID, as a
  // sheet that comes after the widget's own, so that the site's rules win.
  customSheet() {
    this.custom ??= (async () => {
      const node = this.customStylesheetID && document.getElementById(this.customStylesheetID);
      let text = "";
      if (node?.localName === "style") text = node.textContent;
      else if (node?.localName === "link" && node.rel === "stylesheet") {
        text = await fetch(node.href).then((r) => (r.ok ? r.text() : ""), () => "");
      }
      if (!text) return null;
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(text);
      return sheet;
    })();
    return this.custom;
  }
}

// The Roboto stylesheet in the document head (once), and the widget rule that uses it.
function googleFont() {
  if (!document.querySelector(`link[href="${GOOGLE_FONT}"]`)) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = GOOGLE_FONT;
    document.head.append(link);
  }
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(":host { font-family: Roboto, system-ui, sans-serif; }");
  return sheet;
}

let shared = null;

// One per page: every widget follows the same theme, as with the original.
export function presentation(bus) {
  return (shared ??= new Presentation(bus, mainConfig()));
}
