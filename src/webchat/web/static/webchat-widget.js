// <webchat-widget>: a chat window for customers, built only on the bus API of WebChatService
// (commands in, events out), in a Shadow DOM. Everything people type is shown as text — never
// parsed as HTML — and only http(s) links become anchors.

import {rejection} from "./cxbus.js";
import {el} from "./dom.js";
import {FORM_CSS, RegistrationForm} from "./form.js";
import {ChatButton, INVITE_CSS, Invitation} from "./invite.js";
import {sanitize} from "./sanitize.js";
import {applyOptions, registerWebChat, webchatOptions} from "./webchat-plugin.js";
import {enhanceComposer, composerOptions} from "./composer.js";
import {formatTime, linkify, markdown, safeLink, timeFormat} from "./format.js";
import {direction, loadStrings, mainConfig, translate} from "./strings.js";
import {presentation} from "./themes.js";

export {linkify};

// Shared by every tab of the site (storage events) and kept across reloads, one key each so that
// tabs writing at once never overwrite each other's fields.
const STATE = {
  open: "_webchat.widget.open",  // "true" (open) / "minimized" / "false" (closed)
  read: "_webchat.widget.read",  // {chat, index}: the last message the customer has seen
  question: "_webchat.widget.endQuestion",  // "true" while "end this chat?" is asked
};
// Colours come from custom properties the theme class on the element sets (themes.js), so a
// site's own theme class can set them from outside the shadow root; the layout uses logical
// properties (inline-start/end), so a right-to-left language mirrors it.
const CSS = `
:host { all: initial; font: 14px/1.4 system-ui, sans-serif;
  --webchat-accent: #0b5cad; --webchat-on-accent: #fff; --webchat-bg: #fff; --webchat-fg: #1d1d1f;
  --webchat-log-bg: #f6f7f9; --webchat-bubble: #fff; --webchat-border: #dcdcdc;
  --webchat-muted: #555; --webchat-error: #b00020; color: var(--webchat-fg); }
:host(.cx-theme-dark) { --webchat-accent: #2f7fd1; --webchat-bg: #23262b; --webchat-fg: #eceff3;
  --webchat-log-bg: #1a1c20; --webchat-bubble: #30343a; --webchat-border: #454a52;
  --webchat-muted: #b4bac3; --webchat-error: #ff8a80; }
:host(.cx-theme-light) { --webchat-accent: #0b5cad; --webchat-bg: #fff; --webchat-fg: #1d1d1f;
  --webchat-log-bg: #f6f7f9; --webchat-bubble: #fff; --webchat-border: #dcdcdc;
  --webchat-muted: #555; --webchat-error: #b00020; }
* { box-sizing: border-box; }
button { font: inherit; cursor: pointer; }
.launcher { position: fixed; inset-inline-end: 20px; bottom: 20px; z-index: 2147483000; border: 0;
  border-radius: 24px; padding: 12px 20px; background: var(--webchat-accent);
  color: var(--webchat-on-accent); box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible {
  outline: 3px solid #f5a623; outline-offset: 2px; }
.badge { display: inline-block; min-width: 20px; margin-inline-start: 8px; padding: 0 6px;
  border-radius: 10px; background: #d0021b; color: #fff; font-size: 12px; text-align: center; }
.panel { position: fixed; inset-inline-end: 20px; bottom: 20px; z-index: 2147483001; width: 360px;
  height: 540px; max-height: calc(100vh - 40px); display: flex; flex-direction: column;
  background: var(--webchat-bg); border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.3);
  overflow: hidden; }
header { display: flex; align-items: center; gap: 6px; padding: 10px 12px;
  background: var(--webchat-accent); color: var(--webchat-on-accent); }
header h2 { flex: 1; margin: 0; font-size: 16px; }
header button { background: transparent; color: var(--webchat-on-accent);
  border: 1px solid rgba(255,255,255,.5); border-radius: 4px; padding: 2px 8px; }
form.register { padding: 14px; display: grid; gap: 8px; overflow: auto; }
form.register label { display: grid; gap: 2px; font-size: 13px; }
input, textarea { font: inherit; padding: 7px 8px; border: 1px solid var(--webchat-border);
  border-radius: 5px; background: var(--webchat-bg); color: var(--webchat-fg); }
.primary { background: var(--webchat-accent); color: var(--webchat-on-accent); border: 0;
  border-radius: 5px; padding: 8px 14px; }
.error { color: var(--webchat-error); min-height: 1em; }
.log { flex: 1; overflow-y: auto; padding: 10px 12px; display: flex; flex-direction: column;
  gap: 6px; background: var(--webchat-log-bg); }
.msg { max-width: 82%; padding: 7px 10px; border-radius: 10px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.msg .who { display: block; font-size: 11px; color: var(--webchat-muted); margin-bottom: 2px; }
.msg .time { display: block; font-size: 10px; opacity: .75; margin-top: 2px; text-align: end; }
.msg .time::after { content: attr(data-time); }
.msg.Client { align-self: flex-end; background: var(--webchat-accent); color: var(--webchat-on-accent); }
.msg.Client .who { color: inherit; opacity: .85; }
.msg.Agent, .msg.Supervisor { align-self: flex-start; background: var(--webchat-bubble);
  border: 1px solid var(--webchat-border); }
.msg.system { align-self: center; background: transparent; color: var(--webchat-muted);
  font-size: 12px; text-align: center; }
.msg a { color: inherit; }
.msg code { font-family: ui-monospace, monospace; font-size: 90%; padding: 0 3px; border-radius: 3px;
  background: rgba(127,127,127,.18); }
.typing { padding: 2px 12px; min-height: 20px; font-size: 12px; color: var(--webchat-muted); }
.composer { display: flex; gap: 6px; padding: 8px; border-top: 1px solid var(--webchat-border);
  align-items: center; position: relative; }
.composer textarea { flex: 1; resize: none; height: 40px; }
.char-count { font-size: 11px; color: var(--webchat-muted); min-width: 2.5em; text-align: center; }
.char-count.low { color: var(--webchat-error); font-weight: 600; }
.attach, .emoji-toggle { background: var(--webchat-bg); color: var(--webchat-accent);
  border: 1px solid var(--webchat-border); border-radius: 5px; padding: 0 8px; display: grid;
  place-items: center; min-height: 40px; }
.emoji-menu { position: absolute; bottom: 100%; inset-inline-start: 8px; display: flex; gap: 4px;
  padding: 4px; background: var(--webchat-bg); border: 1px solid var(--webchat-border);
  border-radius: 6px; }
.emoji-menu button { background: transparent; border: 0; font-size: 20px; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip-path: inset(50%); white-space: nowrap; }
.dialog { position: absolute; inset: 0; display: grid; place-items: center;
  background: rgba(0,0,0,.35); }
.dialog > div { background: var(--webchat-bg); border-radius: 8px; padding: 16px; width: 80%;
  display: grid; gap: 10px; }
.dialog .buttons { display: flex; gap: 8px; justify-content: flex-end; }
[hidden] { display: none !important; }
:host(.cx-mobile) .panel { inset-inline-end: 0; bottom: 0; width: 100vw; height: 100dvh;
  max-height: none; border-radius: 0; }
:host(.cx-mobile) .launcher { inset-inline-end: 12px; bottom: 12px; }
`;

const MAX_INJECTED = 10000;  // characters of an injected text message
const storedMode = (value) => ({true: "open", minimized: "minimized"})[value] ?? "closed";

// An injected message's bubble options: direction ("left", "right", "none"), radius (px), fill.
function bubbleStyle(node, bubble) {
  if (!bubble || typeof bubble !== "object") return;
  if (bubble.direction === "left") node.style.alignSelf = "flex-start";
  else if (bubble.direction === "right") node.style.alignSelf = "flex-end";
  else node.style.alignSelf = "center";
  const radius = Number(bubble.radius);
  if (Number.isFinite(radius) && radius >= 0) node.style.borderRadius = `${Math.min(radius, 50)}px`;
  if (typeof bubble.fill === "string" && window.CSS.supports("color", bubble.fill)) node.style.background = bubble.fill;
}

const FILE_TOO_LARGE = 1013;  // the server's code for a file over upload-max-file-size

// 10485760 -> "10 MB": sizes in the file error texts, as a person reads them.
function byteSize(value) {
  const bytes = Number(value);
  if (!Number.isFinite(bytes) || bytes <= 0) return "";
  const units = ["bytes", "KB", "MB", "GB"];
  let size = bytes, unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return `${Number.isInteger(size) ? size : size.toFixed(1)} ${units[unit]}`;
}

const SYSTEM_TYPES = new Set(["Notice", "CustomNotice", "IdleAlert", "IdleClose", "PushUrl",
                              "FileUploaded", "FileDeleted", "ParticipantJoined", "ParticipantLeft"]);

function clip() {
  // A paper clip drawn in SVG: icon fonts and emoji are not on every system.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5");
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.8");
  path.setAttribute("stroke-linecap", "round");
  svg.append(path);
  return svg;
}

export class WebChatWidget extends HTMLElement {
  constructor() {
    super();
    this.root = this.attachShadow({mode: "open"});
    this.strings = {};
    this.mode = "closed";  // the WebChat plugin's states: "closed", "open", "minimized"
    this.plugin = null;  // the page's "WebChat" bus plugin, when this widget registered it
    this.openUserData = {};  // WebChat.open's userData, sent with the chat it starts
    this.config = webchatOptions(window._genesys?.widgets?.webchat);
    this.chatButton = new ChatButton(this);
    this.invitation = new Invitation(this);
    this.chatId = null;
    this.readIndex = 0;  // the last message index of this chat the customer has seen, in any tab
    this.received = [];  // indexes of the messages others wrote, for the unread count
    this.shown = new Set();  // indexes already in the log
    this.ended = false;
    this.fileLimits = Promise.resolve({});  // the chat's file limits, once a chat exists
    this.agentsTyping = new Set();
  }

  get bus() { return window.CXBus; }
  get open() { return this.mode === "open"; }

  async connectedCallback() {
    // A restore that fails is reported while the strings below still load: keep the outcome and
    // say it on the registration form, where the customer starts over.
    this.bus.subscribe("WebChatService.restoreTimeout", () => this.onRestoreTimeout());
    this.bus.subscribe("WebChatService.restored", () => { this.restored = true; if (this.started) this.minimizeOnRestore(); });
    this.bus.subscribe("WebChatService.restoreFailed", () => this.formNotice("Errors.RestoreFailed"));
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    const plugin = new CSSStyleSheet();
    plugin.replaceSync(FORM_CSS + INVITE_CSS);
    this.root.adoptedStyleSheets = [sheet, plugin];
    this.lang = this.getAttribute("lang") || mainConfig().lang || "en";
    this.presentation = presentation(this.bus);
    this.presentation.attach(this, this.root);
    this.strings = await loadStrings("webchat", this.lang);
    this.build();
    if (this.notice) this.formNotice(this.notice);
    this.subscribe();
    this.plugin = registerWebChat(this.bus, this);
    for (const name of ["started", "ended"]) this.bus.subscribe(`WebChatService.${name}`, (e) => this.publish(name, e.data));
    await this.catchUp();
    this.startMode();
    this.plugin?.ready();
    this.started = true;
    if (this.timedOut) this.bus.command("WebChat.reInvite").catch(() => {});
    this.invitation.startAuto();
    window.addEventListener("storage", (e) => this.onSharedState(e));
    document.addEventListener("visibilitychange", () => this.markRead());
  }

  t(key, params = {}) {
    return translate(this.strings, key, params);
  }

  // The webchat options of the presentation: how messages and their times are shown.
  get webchatConfig() { return window._genesys?.widgets?.webchat ?? {}; }

  // The localized text for a server error code, or for `fallback` when the code has none: a
  // customer never sees a bare key such as "Errors.1008".
  errorText(code, fallback, params = {}) {
    const known = code != null && typeof this.strings.Errors?.[code] === "string";
    return this.t(known ? `Errors.${code}` : fallback, params);
  }

  build() {
    const t = (k) => this.t(k);
    this.badge = el("span", {class: "badge", "aria-label": t("UnreadMessagesTitle"), hidden: true});
    this.launcher = el("button", {class: "launcher", type: "button", "aria-label": t("AriaMaximize"),
                                  hidden: true, onclick: () => this.onLauncher()},
                          el("slot", {name: "chat-button"}, t("ChatButton")), this.badge);
    this.error = el("p", {class: "error", role: "alert"});
    this.fields = el("div", {class: "fields"});
    this.registration = new RegistrationForm(this.form = el("form", {class: "register", novalidate: true,
                                                                     onsubmit: (e) => this.onRegister(e)},
      this.fields,
      this.error,
      el("button", {class: "primary", type: "submit", text: t("ChatFormSubmit")})), {t, bus: this.bus});
    this.registration.render(this.config.form, this.fields);
    this.chatButton.renderTemplate();
    this.log = el("div", {class: "log", role: "log", "aria-live": "polite", "aria-label": t("ChatTitle"), hidden: true});
    this.typingLine = el("div", {class: "typing", "aria-live": "polite"});
    this.input = el("textarea", {rows: 1, placeholder: t("ChatInputPlaceholder"), "aria-label": t("ChatInputPlaceholder"),
                                 onkeydown: (e) => this.onKey(e), oninput: () => this.onTyping()});
    this.fileInput = el("input", {type: "file", hidden: true, onchange: () => this.onFile()});
    this.attach = el("button", {type: "button", hidden: !this.config.uploadsEnabled, class: "attach", "aria-label": t("ActionsSendFile"),
                                title: t("ActionsSendFile"), onclick: () => this.fileInput.click()}, clip());
    const typed = enhanceComposer(this.input, composerOptions(this.webchatConfig), (k, p) => this.t(k, p));
    this.updateCount = typed.update;
    this.idle = typed.idle;
    if (!composerOptions(this.webchatConfig).actionsMenu) this.attach.hidden = true;
    this.composer = el("div", {class: "composer", hidden: true}, this.attach, this.fileInput, ...typed.before,
      this.input, ...typed.after,
      el("button", {class: "primary", type: "button", text: t("ChatInputSend"), onclick: () => this.onSend()}));
    this.endButton = el("button", {type: "button", "aria-label": t("AriaClose"), text: "✕", onclick: () => this.onClose()});
    this.dialog = el("div", {class: "dialog", hidden: true, role: "dialog", "aria-modal": "true"},
      el("div", {}, el("p", {text: t("ChatEndQuestion")}),
        el("div", {class: "buttons"},
          this.keepButton = el("button", {type: "button", text: t("ChatEndCancel"), onclick: () => this.keepChatting()}),
          el("button", {class: "primary", type: "button", text: t("ChatEndConfirm"), onclick: () => this.confirmEnd()}))));
    this.closeDialog = el("div", {class: "close-question", hidden: true, role: "dialog", "aria-modal": "true"},
      el("div", {}, el("p", {text: t("ConfirmCloseWindow")}),
        el("div", {class: "buttons"},
          el("button", {type: "button", text: t("ConfirmCloseCancel"), onclick: () => this.answerClose(false)}),
          el("button", {class: "primary", type: "button", text: t("ConfirmCloseConfirm"), onclick: () => this.answerClose(true)}))));
    this.overlay = el("div", {class: "overlay", hidden: true});
    this.panel = el("section", {class: "panel", role: "dialog", "aria-label": t("AriaWindowLabel"), hidden: true,
                                dir: direction(this.lang), lang: this.lang, onkeydown: (e) => this.onPanelKey(e)},
      el("header", {}, el("h2", {text: t("ChatTitle")}),
        el("button", {type: "button", "aria-label": t("AriaMinimize"), text: "–", onclick: () => this.minimize()}),
        this.endButton),
      this.form, this.log, this.typingLine, this.composer, this.overlay, this.dialog, this.closeDialog);
    this.launcher.dir = direction(this.lang);
    this.root.append(this.launcher, this.panel);
  }

  // A chat the service restored or started before this element subscribed (the strings fetch
  // above can lose that race) is shown all the same; render() skips what it has shown already.
  async catchUp() {
    const {sessionActive, sessionData} = await this.bus.command("WebChatService.verifySession")
      .catch(() => ({sessionActive: false}));
    if (!sessionActive) return;
    if (this.chatId !== sessionData.sessionID) this.newChat(sessionData.sessionID);
    const {messages} = await this.bus.command("WebChatService.getTranscript");
    for (const m of messages) this.render(m);
  }

  subscribe() {
    const on = (name, fn) => this.bus.subscribe(`WebChatService.${name}`, (e) => fn(e.data));
    on("messageReceived", (d) => { for (const m of d.messages) this.render(m); });
    on("messageReceived", (d) => this.restoreOnNewMessage(d));
    on("started", (d) => this.newChat(d.sessionID));
    on("restored", (d) => this.newChat(d.sessionData.sessionID));
    on("ended", () => { this.idle.cancel(); this.typingLine.textContent = ""; this.composer.hidden = true; this.ended = true;
                        if (!this.dialog.hidden) this.hideDialog();
                        this.system(this.t("ChatEnded")); });
    on("agentTypingStarted", (d) => { this.agentsTyping.add(d.message.from.nickname); this.showTyping(); });
    on("agentTypingStopped", (d) => { this.agentsTyping.delete(d.message.from.nickname); this.showTyping(); });
    on("chatServerWentOffline", () => this.system(this.t("Errors.ChatServerWentOffline")));
    on("chatServerBackOnline", () => this.system(this.t("Errors.Reconnected")));
  }

  // The chat could not be restored (the customer was away too long): say so on the form, or
  // invite to a new chat (inviteOnRestoreTimeout) once the widget is up.
  onRestoreTimeout() {
    this.formNotice("RestoreTimeoutBody");
    this.timedOut = true;
    if (this.started) this.bus.command("WebChat.reInvite").catch(() => {});
  }

  formNotice(key) {
    this.notice = key;
    if (this.error) this.error.textContent = this.t(key);
  }

  storedRead() {
    try { return JSON.parse(localStorage.getItem(STATE.read) ?? "null") ?? {}; } catch { return {}; }
  }

  // Another tab changed the shared state: mirror it here without writing it back.
  onSharedState(event) {
    if (event.key === STATE.open) {
      const mode = storedMode(event.newValue);
      if (mode !== this.mode) this.setMode(mode, false);
    } else if (event.key === STATE.question) {
      this.dialog.hidden = event.newValue !== "true";
    } else if (event.key === STATE.read) {
      const read = this.storedRead();
      if (read.chat === this.chatId && read.index > this.readIndex) this.readIndex = read.index;
      this.showUnread();
    }
  }

  // Escape answers the end-chat question with "keep chatting" when it is asked, else minimizes.
  onPanelKey(event) {
    if (event.key !== "Escape") return;
    if (!this.dialog.hidden) this.keepChatting();
    else if (!this.closeDialog.hidden) this.answerClose(false);
    else this.minimize();
  }

  // The first state on this page: as the customer left it (any tab), a chat that goes on is
  // at least minimized, and on a phone a restored chat may start minimized
  // (minimizeOnMobileRestore); with nothing open, the chat button after its delay.
  startMode() {
    let mode = storedMode(localStorage.getItem(STATE.open));
    if (this.timedOut && this.config.inviteOnRestoreTimeout) mode = "closed";  // WebChat.reInvite asks
    if (mode === "closed" && this.chatActive()) mode = "minimized";
    if (mode === "closed") this.chatButton.show().catch(() => {});
    else this.setMode(mode, false);
    this.minimizeOnRestore();
  }

  minimizeOnRestore() {
    const mobile = this.classList.contains("cx-mobile");  // themes.js: main.mobileMode
    if (this.restored && this.mode === "open" && this.config.minimizeOnMobileRestore && mobile) this.setMode("minimized");
  }

  // Moves the widget to `mode` and tells the page (WebChat.opened, minimized, unminimized,
  // closed) and the site's other tabs.
  setMode(mode, share = true) {
    const before = this.mode;
    if (mode === before) return;
    const focused = this.root.activeElement !== null;  // keyboard focus inside the widget
    this.mode = mode;
    this.panel.hidden = mode !== "open";
    if (mode !== "closed") {
      this.invitation.dismiss();
      if (this.chatButton.visible || this.chatButton.timer) this.chatButton.hide({duration: 0}).catch(() => {});
    }
    this.showLauncher();
    if (mode === "open") { if (this.composer.hidden) this.registration.focus(); else this.input.focus(); }
    else if (focused) this.launcher.focus();  // not lost in a hidden panel
    if (share) localStorage.setItem(STATE.open, {open: "true", minimized: "minimized"}[mode] ?? "false");
    this.markRead();
    this.showUnread();
    if (before === "closed") this.publish("opened", this.openUserData);
    if (mode === "minimized") this.publish("minimized");
    else if (mode === "open" && before === "minimized") this.publish("unminimized");
    else if (mode === "closed") {
      this.publish("closed");
      this.chatButton.show().catch(() => {});
    }
    this.dispatchEvent(new CustomEvent(mode === "open" ? "webchat-open" : "webchat-minimize"));
  }

  // The launcher is the chat button while WebChat is closed, and the way back while minimized.
  showLauncher() {
    this.launcher.hidden = !(this.mode === "minimized" || (this.mode === "closed" && this.chatButton.visible));
  }

  publish(event, data) { this.plugin?.publish(event, data); }

  chatActive() { return this.chatId !== null && !this.ended; }

  onLauncher() {
    if (this.mode === "minimized") this.bus.command("WebChat.minimize", {minimized: false}).catch(() => {});
    else this.bus.command("WebChat.open").catch(() => {});
  }

  minimize() { this.bus.command("WebChat.minimize", {minimized: true}).catch(() => {}); }

  // WebChat.open: userData for the chat it starts, a form (formJSON) for this time, the
  // form's fields filled in (form) and sent at once (form.autoSubmit).
  openChat(o) {
    this.openUserData = o.userData && typeof o.userData === "object" ? {...o.userData} : {};
    if (!this.chatActive()) {
      const definition = o.formJSON && typeof o.formJSON === "object" ? o.formJSON : this.config.form;
      this.registration.render(definition, this.fields);
      if (o.form && typeof o.form === "object") this.registration.fill(o.form);
    }
    this.setMode(o.minimized === true ? "minimized" : "open");
    if (o.form?.autoSubmit === true && !this.chatActive()) this.form.requestSubmit();
  }

  // WebChat.close: asks first where the form has been filled in (confirmFormCloseEnabled).
  closeChat() {
    if (!this.config.confirmFormCloseEnabled || this.chatActive() || this.form.hidden || !this.registration.hasInput()) {
      this.finishClose();
      return Promise.resolve();
    }
    if (this.mode !== "open") this.setMode("open");
    this.closeDialog.hidden = false;
    this.closeDialog.querySelector("button")?.focus();
    return new Promise((resolve, reject) => { this.closing = {resolve, reject}; });
  }

  answerClose(confirmed) {
    this.closeDialog.hidden = true;
    const closing = this.closing;
    this.closing = null;
    if (confirmed) { this.finishClose(); closing?.resolve(); }
    else { this.registration.focus(); closing?.reject(rejection("cancelled")); }
  }

  finishClose() {
    if (!this.form.hidden) this.publish("cancelled");  // closed before a chat started
    if (!this.chatActive()) this.chatting(false);
    this.hideOverlay();
    this.setMode("closed");
  }

  configure(options) {
    const changed = applyOptions(this.config, options);
    if (changed.has("chatButton")) {
      this.chatButton.renderTemplate();
      if (!this.config.chatButton.enabled) this.chatButton.hide({duration: 0}).catch(() => {});
      else if (this.mode === "closed") this.chatButton.show().catch(() => {});
    }
    if (changed.has("autoInvite")) { this.invitation.offered = false; this.invitation.startAuto(); }
    if (changed.has("form") && !this.chatActive()) this.registration.render(this.config.form, this.fields);
    if (changed.has("uploadsEnabled")) {
      this.attach.hidden = !this.config.uploadsEnabled || !composerOptions(this.webchatConfig).actionsMenu;
      if (this.chatActive()) this.newFileLimits();
    }
  }

  // WebChat.injectMessage: a message of the page's own in the transcript, as text or as
  // (sanitized) markup.
  inject({type = "text", name = "", text, custom = false, bubble} = {}) {
    const kind = String(type).toLowerCase();
    if (typeof text !== "string" || (kind !== "text" && kind !== "html")) return null;
    const body = kind === "html" ? sanitize(text) : linkify(text.slice(0, MAX_INJECTED));
    const node = el("div", {class: `msg injected${custom ? " cx-custom" : ""}`},
      name ? el("span", {class: "who", text: String(name).slice(0, 100)}) : "", body);
    bubbleStyle(node, bubble);
    this.log.append(node);
    this.log.scrollTop = this.log.scrollHeight;
    this.publish("messageAdded", {data: {type: "injected", name: String(name), text, timestamp: Date.now()}, html: node});
    return node;
  }

  showOverlay(html, hideFooter) {
    this.overlay.replaceChildren(sanitize(html));
    this.overlay.hidden = false;
    if (hideFooter) this.composer.hidden = true;
  }

  hideOverlay() {
    this.overlay.hidden = true;
    this.overlay.replaceChildren();
    this.composer.hidden = !this.chatActive() || this.log.hidden;
  }

  markRead() {
    if (!this.open || document.visibilityState !== "visible") return;
    const last = Math.max(0, ...this.received);
    if (last <= this.readIndex) return;
    this.readIndex = last;
    const stored = this.storedRead();
    if (stored.chat !== this.chatId || !(stored.index >= last)) {
      localStorage.setItem(STATE.read, JSON.stringify({chat: this.chatId, index: last}));
    }
  }

  showUnread() {
    const unread = this.open ? 0 : this.received.filter((i) => i > this.readIndex).length;
    this.badge.textContent = String(unread);
    this.badge.hidden = unread === 0;
  }

  newChat(chatId) {
    if (this.ended) this.log.replaceChildren();  // a new chat after an ended one starts clean
    this.ended = false;
    this.received = [];
    this.shown = new Set();
    this.chatId = chatId;
    const read = this.storedRead();
    this.readIndex = read.chat === chatId ? read.index : 0;
    this.chatting(true);
    this.newFileLimits();
  }

  // Asked once per chat (and when uploads are turned on): the picker, the size check and the
  // error texts all use them.
  newFileLimits() {
    this.fileLimits = this.attach.hidden ? Promise.resolve({})
      : this.bus.command("WebChatService.getFileLimits").catch(() => ({}));
    this.offerFileTypes();
  }

  // The file picker offers only the types this chat accepts (the server checks them anyway),
  // and no attach button is shown where the server takes no files at all.
  async offerFileTypes() {
    const limits = await this.fileLimits;
    if (limits["upload-max-files"] === "0") { this.attach.hidden = true; return; }
    const types = String(limits["upload-file-types"] ?? "").split(":").filter(Boolean);
    if (types.length) this.fileInput.accept = types.map((t) => `.${t}`).join(",");
  }

  chatting(on) {
    this.form.hidden = on;
    this.log.hidden = !on;
    this.composer.hidden = !on;
  }

  showTyping() {
    const names = [...this.agentsTyping];
    this.typingLine.textContent = names.length ? `${names.join(", ")} ${this.t("AgentTyping")}` : "";
  }

  system(text) {
    this.log.append(el("div", {class: "msg system", text}));
    this.log.scrollTop = this.log.scrollHeight;
  }

  render(m) {
    if (m.index) {
      if (this.shown.has(m.index)) return;
      this.shown.add(m.index);
    }
    const from = m.from ?? {};
    let node;
    if (m.type === "Message") {
      const mine = from.type === "Client";
      node = el("div", {class: `msg ${from.type}`, "data-index": m.index, dir: "auto"},
        el("span", {class: "who", text: mine ? this.t("AriaYouSaid") : from.nickname,
                    "aria-label": mine ? this.t("AriaYouSaid") : `${from.nickname} ${this.t("AriaSaid")}`}),
        this.messageText(String(m.text ?? "")));
      this.stamp(node, m);
      if (!mine) {  // a message ends its writer's typing: the service says so (agentTypingStopped)
        if (m.index) this.received.push(m.index);
        this.markRead();
        this.showUnread();
      }
    } else if (SYSTEM_TYPES.has(m.type)) {
      if (m.type === "IdleAlert") this.idle.alert(m);
      const text = this.describe(m);
      if (!text) return;
      node = el("div", {class: "msg system", "data-index": m.index});
      if (m.type === "PushUrl") node.append(safeLink(String(m.text ?? "")) ?? document.createTextNode(String(m.text ?? "")));
      else node.textContent = text;
    } else {
      return;
    }
    this.log.append(node);
    this.log.scrollTop = this.log.scrollHeight;
    this.publish("messageAdded", {data: {index: m.index, name: from.name ?? from.nickname, text: m.text,
                                         type: from.type ?? m.type, timestamp: m.timestamp ?? m.utcTime,
                                         originalMessage: m}, html: node});
  }

  // async.newMessageRestoreState: in an asynchronous chat, a new message from the other side
  // brings a closed or minimized widget back, minimized or maximized.
  restoreOnNewMessage(d) {
    const async = this.config.async;
    if (d.restoring || !async.enabled || this.mode === "open") return;
    if (!d.messages.some((m) => m.type === "Message" && m.from?.type !== "Client")) return;
    const target = async.newMessageRestoreState === "maximized" ? "open" : "minimized";
    if (target !== this.mode) this.setMode(target);
  }

  // Markdown (the `markdown` option) or plain text with links; built as nodes either way.
  messageText(text) {
    return this.webchatConfig.markdown === true ? markdown(text) : linkify(text);
  }

  // The message's time, in `timeFormat` (12 or 24 hours) of the webchat or main configuration.
  stamp(node, m) {
    if (m.utcTime == null) return;
    const hours = timeFormat(this.webchatConfig.timeFormat, mainConfig().timeFormat);
    const text = formatTime(m.utcTime, hours, this.lang);
    // Drawn by CSS from the attribute: the time is seen, but stays out of the message's text.
    if (text) node.append(el("time", {class: "time", datetime: new Date(Number(m.utcTime)).toISOString(), "data-time": text}));
  }

  describe(m) {
    const who = m.from?.nickname ?? "";
    switch (m.type) {
      case "ParticipantJoined":
        if (m.from.type === "Agent") return this.t("AgentConnected", {Agent: who});
        if (m.from.type === "Supervisor") return this.t("SupervisorConnected", {Agent: who});
        return m.from.type === "Client" ? this.t("ChatStarted") : "";
      case "ParticipantLeft":
        if (m.from.type === "Agent") return this.t("AgentDisconnected", {Agent: who});
        if (m.from.type === "Supervisor") return this.t("SupervisorDisconnected", {Agent: who});
        return "";
      case "FileUploaded":
        return `${who} ${this.t("FileSent")} ${m.userData?.["file-name"] ?? ""}`;
      case "FileDeleted":
        return "";
      default:
        return String(m.text ?? "");
    }
  }

  async onRegister(event) {
    event.preventDefault();
    const wrong = this.registration.invalid(event);
    this.error.textContent = wrong?.def.error ? this.t(wrong.def.error) : "";
    if (wrong) { wrong.input.focus(); return; }
    // The form's own fields beyond the chat's go as userData, with WebChat.open's; the
    // customer's language too, so the server writes system messages in it.
    const {options, userData} = this.registration.values();
    options.userData = {...this.openUserData, ...userData, GCTI_LanguageCode: this.lang};
    this.publish("submitted", structuredClone(options));
    try {
      await this.bus.command("WebChatService.startChat", options);
      this.input.focus();
    } catch (e) {
      this.error.textContent = this.errorText(e.data?.errors?.[0]?.code, "Errors.StartFailed");
    }
  }

  onKey(event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      this.onSend();
    }
  }

  onTyping() {
    this.idle.cancel();  // the customer is back: no more warnings
    if (this.input.value) this.bus.command("WebChatService.sendTyping", {message: this.input.value}).catch(() => {});
  }

  async onSend() {
    const text = this.input.value;
    if (!text.trim()) return;
    this.input.value = "";
    this.updateCount();
    try {
      await this.bus.command("WebChatService.sendMessage", {message: text});
    } catch {
      this.input.value = text;
      this.updateCount();
      this.system(this.t("Errors.MessageFailed"));
    }
  }

  async onFile() {
    const files = this.fileInput.files;
    if (!files?.length) return;
    // The chat's limits name the numbers in the error texts; a file over the size limit is
    // refused here, before its bytes travel.
    const limits = await this.fileLimits;
    const params = {MaxFilesAllowed: limits["upload-max-files"] ?? "",
                    MaxAttachmentsSize: byteSize(limits["upload-max-total-size"]),
                    MaxSizePerFile: byteSize(limits["upload-max-file-size"])};
    const maxSize = Number(limits["upload-max-file-size"]);
    try {
      if (maxSize > 0 && files[0].size > maxSize) {
        this.system(this.t("Errors.FileTransferSizeError", params));
      } else {
        await this.bus.command("WebChatService.sendFile", {files});
      }
    } catch (e) {
      const code = e.data?.errors?.[0]?.code;
      this.system(code === FILE_TOO_LARGE ? this.t("Errors.FileTransferSizeError", params)
                                          : this.errorText(code, "Errors.FileSendFailed", params));
    }
    this.fileInput.value = "";
  }

  async onClose() {
    const active = await this.bus.command("WebChatService.verifySession").then((r) => r.sessionActive, () => false);
    if (active) {
      this.dialog.hidden = false;
      localStorage.setItem(STATE.question, "true");
      this.keepButton.focus();  // the harmless answer first, for keyboard users
    }
    else this.bus.command("WebChat.close").catch(() => {});
  }

  hideDialog() { this.dialog.hidden = true; localStorage.setItem(STATE.question, "false"); }

  keepChatting() {
    this.hideDialog();
    this.input.focus();
  }

  async confirmEnd() {
    this.hideDialog();
    try { await this.bus.command("WebChatService.endChat"); } catch { /* already over */ }
  }
}

