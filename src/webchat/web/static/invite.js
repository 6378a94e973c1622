// The chat button (webchat.chatButton: enabled, template, effect, openDelay, effectDuration,
// hideDuringInvite) and invitations to chat: WebChat.invite, WebChat.reInvite (after a restore
// timed out) and the automatic one (webchat.autoInvite, or the legacy webchat.proactive),
// shown after the customer has been idle on the page for timeToInviteSeconds and withdrawn
// after inviteTimeoutSeconds.

import {el} from "./dom.js";
import {rejection} from "./cxbus.js";
import {sanitize} from "./sanitize.js";

const ANSWERED = "_webchat.widget.inviteAnswered";  // an invitation was accepted or declined
const ACTIVITY = ["pointermove", "pointerdown", "keydown", "wheel", "scroll", "touchstart"];

export const INVITE_CSS = `
.launcher.cx-effect { transition-property: opacity, transform; transition-timing-function: ease-out; }
.launcher.cx-hiding[data-effect=fade] { opacity: 0; }
.launcher.cx-hiding[data-effect=slide] { transform: translateX(calc(100% + 40px)); }
.invite { position: fixed; right: 20px; bottom: 20px; z-index: 2147483002; width: 300px;
  max-width: calc(100vw - 40px); display: grid; gap: 8px; padding: 14px; background: #fff;
  border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.3); }
.invite h2 { margin: 0; font-size: 16px; }
.invite p { margin: 0; }
.invite .buttons { display: flex; gap: 8px; justify-content: flex-end; }
.invite .secondary { background: #fff; color: #0b5cad; border: 1px solid #b5b5b5; border-radius: 5px;
  padding: 8px 14px; }
.close-question { position: absolute; inset: 0; display: grid; place-items: center; background: rgba(0,0,0,.35); }
.close-question > div { background: #fff; border-radius: 8px; padding: 16px; width: 80%; display: grid; gap: 10px; }
.close-question .buttons { display: flex; gap: 8px; justify-content: flex-end; }
.overlay { position: absolute; inset: 48px 0 0 0; overflow: auto; padding: 14px; background: #fff; }`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const ms = (value, fallback) => typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : fallback;

// The launcher as the original's chat button: shown after openDelay with its effect, hidden
// while the chat is open (the widget decides that) or when a command says so.
export class ChatButton {
  constructor(widget) {
    this.widget = widget;
    this.visible = false;
    this.timer = null;
  }

  get options() { return this.widget.config.chatButton; }

  // The site's template, as its own markup (slotted, so the site's CSS applies), or our label.
  renderTemplate() {
    const host = this.widget;
    for (const node of host.querySelectorAll(":scope > [slot=chat-button]")) node.remove();
    if (typeof this.options.template !== "string" || !this.options.template.trim()) return;
    const holder = el("span", {slot: "chat-button", class: "cx-webchat-chat-button"});
    holder.append(sanitize(this.options.template));
    host.append(holder);
  }

  show(data = {}) {
    if (!this.options.enabled) {
      return Promise.reject(rejection("The chat button has been disabled in the configuration. Ignoring command."));
    }
    if (this.visible || this.timer) return Promise.reject(rejection("Chat button is already visible. Ignoring command."));
    const delay = ms(data.openDelay, this.options.openDelay);
    const duration = ms(data.duration, this.options.effectDuration);
    return new Promise((resolve) => {
      this.timer = setTimeout(async () => {
        this.timer = null;
        this.visible = true;
        this.widget.showLauncher();
        this.widget.publish("chatButtonDisplayed");
        await this.effect(false, duration);
        resolve();
      }, delay);
    });
  }

  hide(data = {}) {
    if (!this.visible && !this.timer) return Promise.reject(rejection("Chat button is already hidden. Ignoring command."));
    clearTimeout(this.timer);
    const wasVisible = this.visible;
    this.timer = null;
    this.visible = false;
    if (!wasVisible) return Promise.resolve();
    const launcher = this.widget.launcher;
    this.widget.publish("chatButtonHidden");
    return this.effect(true, ms(data.duration, this.options.effectDuration)).then(() => {
      if (!this.visible) { this.widget.showLauncher(); launcher.classList.remove("cx-hiding"); }
    });
  }

  // The reveal (or hiding) transition over `duration` ms: "fade" or "slide"; none for 0.
  async effect(hiding, duration) {
    const launcher = this.widget.launcher;
    const effect = ["fade", "slide"].includes(this.options.effect) ? this.options.effect : "";
    if (!effect || duration === 0 || launcher.hidden) { launcher.classList.remove("cx-hiding"); return; }
    launcher.dataset.effect = effect;
    launcher.style.transitionDuration = `${duration}ms`;
    launcher.classList.add("cx-effect");
    if (!hiding) { launcher.classList.add("cx-hiding"); void launcher.offsetWidth; }
    launcher.classList.toggle("cx-hiding", hiding);
    await sleep(duration);
    launcher.classList.remove("cx-effect");
  }
}

// The invitation card; one at a time. `kind` is "invite" or "reInvite" (its strings differ).
export class Invitation {
  constructor(widget) {
    this.widget = widget;
    this.node = null;
    this.idleTimer = null;
    this.countdown = null;
    this.offered = false;  // the automatic invitation, once per page
    this.onActivity = () => this.armIdle();
  }

  get shown() { return this.node !== null; }

  answered() {
    try { return localStorage.getItem(ANSWERED) === "true"; } catch { return false; }
  }

  open(kind) {
    const w = this.widget;
    if (w.mode !== "closed") return Promise.reject(rejection("Chat is already open. Ignoring invite command."));
    if (kind === "reInvite" && !w.config.inviteOnRestoreTimeout) {
      return Promise.reject(rejection("Chat is already open. Ignoring invite command."));
    }
    this.dismiss();
    if (w.config.chatButton.hideDuringInvite) w.chatButton.hide({duration: 0}).catch(() => {});
    const keys = kind === "reInvite"
      ? ["RestoreTimeoutTitle", "RestoreTimeoutBody", "RestoreTimeoutAccept", "RestoreTimeoutReject"]
      : ["InviteTitle", "InviteBody", "InviteAccept", "InviteReject"];
    const [title, body, accept, reject] = keys.map((k) => w.t(k));
    const titleId = "cx_invite_title";
    this.node = el("section", {class: "invite", role: "alertdialog", "aria-labelledby": titleId, "data-kind": kind},
      el("h2", {id: titleId, text: title}), el("p", {text: body}),
      el("div", {class: "buttons"},
        el("button", {type: "button", class: "secondary", text: reject, onclick: () => this.answer(kind, false)}),
        el("button", {type: "button", class: "primary", text: accept, onclick: () => this.answer(kind, true)})));
    w.root.append(this.node);
    return Promise.resolve();
  }

  answer(kind, accepted) {
    if (kind === "invite") { try { localStorage.setItem(ANSWERED, "true"); } catch { /* private mode */ } }
    this.dismiss();
    const bus = this.widget.bus;
    if (accepted) bus.command("WebChat.open").catch(() => {});
    else bus.command("WebChat.showChatButton").catch(() => {});
  }

  // Withdraws the card (an answer, an open chat, or its time ran out).
  dismiss() {
    clearTimeout(this.countdown);
    this.countdown = null;
    this.node?.remove();
    this.node = null;
  }

  // Automatic invitation: idle time restarts with every sign of the customer being there.
  startAuto() {
    for (const type of ACTIVITY) window.removeEventListener(type, this.onActivity, true);
    clearTimeout(this.idleTimer);
    const auto = this.widget.config.autoInvite;
    if (!auto.enabled || this.offered || this.answered()) return;
    for (const type of ACTIVITY) window.addEventListener(type, this.onActivity, {capture: true, passive: true});
    this.armIdle();
  }

  armIdle() {
    clearTimeout(this.idleTimer);
    const seconds = ms(this.widget.config.autoInvite.timeToInviteSeconds, 10);
    this.idleTimer = setTimeout(() => this.autoInvite(), seconds * 1000);
  }

  async autoInvite() {
    const w = this.widget;
    if (!w.config.autoInvite.enabled || this.offered || this.answered() || w.mode !== "closed" || w.chatActive()) return;
    this.offered = true;
    for (const type of ACTIVITY) window.removeEventListener(type, this.onActivity, true);
    try { await w.bus.command("WebChat.invite"); } catch { return; }
    const node = this.node;
    const seconds = ms(w.config.autoInvite.inviteTimeoutSeconds, 30);
    this.countdown = setTimeout(() => {
      if (this.node !== node) return;  // answered, or replaced
      this.dismiss();
      w.bus.command("WebChat.showChatButton").catch(() => {});
    }, seconds * 1000);
  }
}
