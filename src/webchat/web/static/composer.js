// The message box's options from `_genesys.widgets.webchat`, as the original names them:
// `maxMessageLength` (the box takes no more characters), `charCountEnabled` (a counter of the
// characters left), `ariaCharRemainingIntervals` (the counts left at which a screen reader is
// told how many remain, [75, 25, 10] by default), `emojis` (a menu of emoji that go in at the
// caret; off by default) and `actionsMenu` (the menu of actions beside the box, such as
// sending a file; on by default); and `ariaIdleAlertIntervals`, the seconds left before a
// silent customer's chat closes at which a screen reader is warned ([50, 25, 10]).

import {el} from "./dom.js";

const DEFAULT_MAX = 5000;  // the original's textarea maxlength
const HARD_MAX = 100_000;  // what we accept as a maxMessageLength at most
const DEFAULT_ARIA_INTERVALS = [75, 25, 10];
const DEFAULT_IDLE_INTERVALS = [50, 25, 10];
// The original's emoji menu: smile, thumbs up, sad (as unicode characters).
export const EMOJIS = ["\u{1F603}", "\u{1F44D}", "\u{2639}\u{FE0F}"];

function positiveInt(value, fallback, max) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : fallback;
}

// An intervals option: whole numbers, at most 20 of them, or the default.
function intervals(value, fallback) {
  return Array.isArray(value) ? value.map(Number).filter((n) => Number.isInteger(n) && n >= 0).slice(0, 20)
    : fallback;
}

export function composerOptions(webchat = {}) {
  return {
    maxLength: positiveInt(webchat.maxMessageLength, DEFAULT_MAX, HARD_MAX),
    charCount: webchat.charCountEnabled === true,
    ariaIntervals: new Set(intervals(webchat.ariaCharRemainingIntervals, DEFAULT_ARIA_INTERVALS)),
    idleIntervals: intervals(webchat.ariaIdleAlertIntervals, DEFAULT_IDLE_INTERVALS),
    emojis: webchat.emojis === true,
    actionsMenu: webchat.actionsMenu !== false,
  };
}

// Puts the counter, the announcer and the emoji menu around `input`; returns the nodes to place
// in the composer (before the box, after it) and a function that refreshes the counter.
export function enhanceComposer(input, options, t) {
  input.maxLength = options.maxLength;
  const counter = el("span", {class: "char-count", hidden: !options.charCount, "aria-hidden": "true"});
  const announcer = el("span", {class: "visually-hidden", role: "status", "aria-live": "polite"});
  let lastAnnounced = null;
  const update = () => {
    const left = Math.max(0, options.maxLength - input.value.length);
    counter.textContent = String(left);
    counter.classList.toggle("low", left <= Math.min(10, options.maxLength / 10));
    if (options.charCount && options.ariaIntervals.has(left) && left !== lastAnnounced) {
      announcer.textContent = `${t("AriaCharRemaining")}: ${left}`;
      lastAnnounced = left;
    }
  };
  input.addEventListener("input", update);
  update();
  const warning = el("span", {class: "visually-hidden", role: "alert"});
  const after = [counter, announcer, warning];
  const before = [];
  if (options.emojis) {
    const menu = el("div", {class: "emoji-menu", role: "menu", hidden: true, "aria-label": t("ActionsEmoji")},
      ...EMOJIS.map((emoji) => el("button", {type: "button", role: "menuitem", text: emoji,
                                             "aria-label": `${t("AriaEmoji")} ${emoji}`,
                                             onclick: () => { insertAtCaret(input, emoji); menu.hidden = true; }})));
    const toggle = el("button", {type: "button", class: "emoji-toggle", text: EMOJIS[0],
                                 "aria-label": t("ActionsEmoji"), title: t("ActionsEmoji"),
                                 "aria-haspopup": "menu",
                                 onclick: () => { menu.hidden = !menu.hidden; }});
    before.push(el("div", {class: "emoji"}, toggle, menu));
  }
  return {before, after, update, idle: idleWarnings(options.idleIntervals, (text) => { warning.textContent = text; }, t)};
}

// After the server's IdleAlert, which says in userData.closeInS how long the chat has before it
// closes for the customer's silence, `warn` is called when each interval's seconds are left;
// the customer writing or typing (or the chat ending) calls `cancel`. An alert from a restored
// transcript, whose time has passed, warns of nothing.
function idleWarnings(seconds, warn, t) {
  let timers = [];
  const cancel = () => { for (const timer of timers) clearTimeout(timer); timers = []; };
  const alert = (message) => {
    cancel();
    const closeAt = Number(message.utcTime) + Number(message.userData?.closeInS) * 1000;
    if (!Number.isFinite(closeAt)) return;
    for (const left of seconds) {
      const wait = closeAt - left * 1000 - Date.now();
      if (wait >= 0) timers.push(setTimeout(() => warn(t("AriaIdleAlert", {Seconds: left})), wait));
    }
  };
  return {alert, cancel};
}

// Types `text` where the caret is, within the box's maxlength, as if the customer had.
export function insertAtCaret(input, text) {
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? start;
  const room = input.maxLength > 0 ? input.maxLength - (input.value.length - (end - start)) : text.length;
  if (room < text.length) return;
  input.setRangeText(text, start, end, "end");
  input.dispatchEvent(new Event("input", {bubbles: true}));
  input.focus();
}
