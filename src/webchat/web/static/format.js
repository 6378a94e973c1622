// How message text is shown: http(s) links, the markdown subset of the `markdown` option, and
// the time of a message in `timeFormat`. Text always goes into the page as text nodes (or as
// the text of elements built here): nothing a customer or agent types is parsed as HTML.

import {el} from "./dom.js";

const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;

// An anchor for an http(s) URL, or null for anything else (javascript:, data:, garbage).
export function safeLink(raw, label = raw) {
  let url;
  try { url = new URL(raw); } catch { return null; }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  return el("a", {href: url.href, target: "_blank", rel: "noopener noreferrer nofollow", text: label});
}

// Text with http(s) URLs turned into safe links; everything else stays text nodes.
export function linkify(text) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    out.append(document.createTextNode(text.slice(last, m.index)));
    out.append(safeLink(m[0]) ?? document.createTextNode(m[0]));
    last = m.index + m[0].length;
  }
  out.append(document.createTextNode(text.slice(last)));
  return out;
}

// The markdown subset (`webchat.markdown: true`): **bold**, *italic* or _italic_, ~~struck~~,
// `code`, [label](https://...) and bare links. Spans may nest (bold inside a link label, say)
// down to a small depth; past it, and for anything unmatched, the characters stay as typed.
const INLINE = [
  {re: /`([^`\n]+)`/, make: (m) => el("code", {text: m[1]}), leaf: true},
  {re: /\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/, make: (m, depth) => {
    const link = safeLink(m[2], "");
    if (!link) return document.createTextNode(m[0]);
    link.append(markdown(m[1], depth + 1));
    return link;
  }},
  {re: /\*\*(?=\S)([^\n]*?\S)\*\*/, tag: "strong"},
  {re: /~~(?=\S)([^\n]*?\S)~~/, tag: "s"},
  {re: /\*(?=\S)([^*\n]*?\S)\*/, tag: "em"},
  {re: /(?<![\w])_(?=\S)([^_\n]*?\S)_(?![\w])/, tag: "em"},
];
const MAX_DEPTH = 4;

export function markdown(text, depth = 0) {
  const out = document.createDocumentFragment();
  if (depth >= MAX_DEPTH) { out.append(linkify(text)); return out; }
  let rest = text;
  while (rest) {
    // The earliest span wins; the text before it may still hold bare links.
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = {rule, m};
    }
    if (!best) { out.append(linkify(rest)); break; }
    const {rule, m} = best;
    out.append(linkify(rest.slice(0, m.index)));
    if (rule.make) out.append(rule.make(m, depth));
    else out.append(el(rule.tag, {}, markdown(m[1], depth + 1)));
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

// The original reads `timeFormat` as 12 or 24 (a number or a numeric string), from the webchat
// configuration or else from main; anything else keeps the default, 12.
export function timeFormat(...sources) {
  for (const value of sources) {
    const hours = Number.parseInt(value, 10);
    if (hours === 12 || hours === 24) return hours;
  }
  return 12;
}

// "3:04 PM" (12) or "15:04" (24), in the widget's language.
export function formatTime(utcMillis, hours, lang) {
  const when = new Date(Number(utcMillis));
  if (!Number.isFinite(when.getTime())) return "";
  const options = {hour: "numeric", minute: "2-digit", hourCycle: hours === 24 ? "h23" : "h12"};
  try { return new Intl.DateTimeFormat(lang, options).format(when); }
  catch { return new Intl.DateTimeFormat("en", options).format(when); }
}
