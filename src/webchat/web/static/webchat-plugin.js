// The "WebChat" plugin on the page's CXBus, as the original widget registers it: its commands
// drive <webchat-widget>, its events tell the page what the widget did. Options come from
// window._genesys.widgets.webchat (shared with WebChatService) and WebChat.configure.

import {rejection} from "./cxbus.js";

// The original widget's own defaults (its 8.5 code): no chat button unless the site enables it.
export const DEFAULTS = {
  chatButton: {enabled: false, template: "", effect: "fade", openDelay: 1000, effectDuration: 300,
               hideDuringInvite: true},
  autoInvite: {enabled: false, timeToInviteSeconds: 5, inviteTimeoutSeconds: 30},
  confirmFormCloseEnabled: true,
  uploadsEnabled: false,
  minimizeOnMobileRestore: false,
  inviteOnRestoreTimeout: true,
  form: null,
  async: {enabled: false, newMessageRestoreState: "minimized"},
};

const TYPES = {
  chatButton: {enabled: "boolean", template: "string", effect: "string", openDelay: "number",
               effectDuration: "number", hideDuringInvite: "boolean"},
  autoInvite: {enabled: "boolean", timeToInviteSeconds: "number", inviteTimeoutSeconds: "number"},
  async: {enabled: "boolean", newMessageRestoreState: "string"},
};
const FLAGS = ["confirmFormCloseEnabled", "uploadsEnabled", "minimizeOnMobileRestore", "inviteOnRestoreTimeout"];
// The legacy webchat.proactive names of the autoInvite options.
const PROACTIVE = {enabled: "enabled", idleTimer: "timeToInviteSeconds", cancelTimer: "inviteTimeoutSeconds"};

// Applies `changes` (the options' own shape) onto `config`, each only with its documented type,
// as the original's configure does. Returns the groups that changed.
export function applyOptions(config, changes) {
  const changed = new Set();
  if (!changes || typeof changes !== "object") return changed;
  for (const [group, types] of Object.entries(TYPES)) {
    const given = changes[group];
    if (!given || typeof given !== "object") continue;
    for (const [name, type] of Object.entries(types)) {
      if (typeof given[name] !== type || (type === "number" && !Number.isFinite(given[name]))) continue;
      config[group][name] = given[name];
      changed.add(group);
    }
  }
  const proactive = changes.proactive;
  if (proactive && typeof proactive === "object") {
    for (const [legacy, name] of Object.entries(PROACTIVE)) {
      if (typeof proactive[legacy] === typeof DEFAULTS.autoInvite[name]) {
        config.autoInvite[name] = proactive[legacy];
        changed.add("autoInvite");
      }
    }
  }
  for (const flag of FLAGS) {
    if (typeof changes[flag] === "boolean") { config[flag] = changes[flag]; changed.add(flag); }
  }
  if (changes.form && typeof changes.form === "object") { config.form = changes.form; changed.add("form"); }
  return changed;
}

export function webchatOptions(site) {
  const config = structuredClone({...DEFAULTS, form: null});
  applyOptions(config, site);
  return config;
}

const NOT_OPEN = "WebChat is not currently open. Ignoring command.";
// What the plugin publishes: the original's 8.5 events, then the current reference's.
export const EVENTS = ["ready", "opened", "closed", "minimized", "unminimized", "messageAdded",
                       "chatButtonDisplayed", "started", "submitted", "ended", "cancelled",
                       "chatButtonHidden"];

// Registers the plugin for `widget` (the first <webchat-widget> of the page) and returns it.
export function registerWebChat(bus, widget) {
  if (bus.plugins.has("WebChat")) return null;
  const plugin = bus.registerPlugin("WebChat");
  if (!plugin) return null;
  plugin.registerEvents(EVENTS);
  const command = (name, handler) => plugin.registerCommand(name, handler);

  command("open", async (o) => {
    if (widget.mode !== "closed") throw rejection("already opened");
    widget.openChat(o);
  });
  command("close", async () => {
    if (widget.mode === "closed") throw rejection("already closed");
    await widget.closeChat();
  });
  command("minimize", async (o) => {
    if (widget.mode === "closed") throw rejection(NOT_OPEN);
    const minimized = typeof o.minimized === "boolean" ? o.minimized : widget.mode !== "minimized";
    widget.setMode(minimized ? "minimized" : "open");
  });
  command("endChat", async () => {
    if (!widget.chatActive()) throw rejection("there is no active chat session to end");
    await widget.confirmEnd();
  });
  command("configure", async (o) => {
    if (!Object.keys(o).length) throw rejection("Invalid configuration");
    widget.configure(o);
  });
  command("invite", () => widget.invitation.open("invite"));
  command("reInvite", () => widget.invitation.open("reInvite"));
  command("injectMessage", async (o) => {
    if (widget.mode === "closed" || !widget.chatActive()) throw rejection("No chat session to inject into.");
    const node = widget.inject(o);
    if (!node) throw rejection("Invalid message type or text");
    return node;
  });
  command("showChatButton", (o) => {
    if (widget.mode !== "closed") return Promise.reject(rejection("Chat is already open. Ignoring command."));
    return widget.chatButton.show(o);
  });
  command("hideChatButton", (o) => widget.chatButton.hide(o));
  command("showOverlay", async (o) => {
    if (widget.mode === "closed") throw rejection(NOT_OPEN);
    widget.showOverlay(o.html, Boolean(o.hideFooter));
  });
  command("hideOverlay", async () => {
    if (widget.mode === "closed") throw rejection(NOT_OPEN);
    widget.hideOverlay();
  });
  return plugin;
}
