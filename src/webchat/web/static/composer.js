// The message box's options from `_genesys.widgets.webchat`, as the original names them:
// `maxMessageLength` (the box takes no more characters), `charCountEnabled` (a counter of the
// characters left), `ariaCharRemainingIntervals` (the counts left at which a screen reader is
// told how many remain, [75, 25, 10] by default), `emojis` (a menu of emoji that go in at the
// caret; off by default) and `actionsMenu` (the menu of actions beside the box, such as
// sending a file; on by default).

import {el} from "./dom.js";

const DEFAULT_MAX = 5000;  // the original's textarea maxlength
const HARD_MAX = 100_000;  // what we accept as a maxMessageLength at most
const DEFAULT_ARIA_INTERVALS = [75, 25, 10];
// The original's emoji menu: smile, thumbs up, sad (as unicode characters).
export const EMOJIS = ["\u{1F603}", "\u{1F44D}", "\u{2639}\u{FE0F}"];

function positiveInt(value, fallback, max) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : fallback;
}

export function composerOptions(webchat = {}) {
  const intervals = Array.isArray(webchat.ariaCharRemainingIntervals)
    ? webchat.ariaCharRemainingIntervals.map(Number).filter((n) => Number.isInteger(n) && n >= 0).slice(0, 20)
    : DEFAULT_ARIA_INTERVALS;
  return {
    maxLength: positiveInt(webchat.maxMessageLength, DEFAULT_MAX, HARD_MAX),
    charCount: webchat.charCountEnabled === true,
    ariaIntervals: new Set(intervals),
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
  const after = [counter, announcer];
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
  return {before, after, update};
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
