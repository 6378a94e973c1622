// Localized strings for the widget and the agent console, under the original's key names.
// A plugin's strings ("webchat", "console") in a language are the server's catalog for it
// (/webchat/i18n/{lang}.json, built from the gettext catalogs), then the site's own overrides
// from `_genesys.widgets.main.i18n`, as in the original: an inline object
// `{en: {webchat: {ChatTitle: "..."}}}` or the URL of a JSON file of that shape.

const SERVED = new URL("./i18n/", import.meta.url);
const MAX_PACK = 1_000_000;  // characters of a site's language pack we read at most

export function mainConfig() {
  return window._genesys?.widgets?.main ?? {};
}

// "ar" -> "rtl": the direction a language is written in, from the browser's own locale data.
export function direction(lang) {
  try {
    const locale = new Intl.Locale(lang);
    const info = locale.getTextInfo?.() ?? locale.textInfo;
    return info?.direction === "rtl" ? "rtl" : "ltr";
  } catch {
    return "ltr";
  }
}

async function fetchJson(url) {
  try {
    const response = await fetch(url);
    if (!response.ok) return {};
    const text = await response.text();
    if (text.length > MAX_PACK) return {};
    const data = JSON.parse(text);
    return data && typeof data === "object" ? data : {};
  } catch {
    return {};  // no pack: the keys' defaults below
  }
}

// The site's language pack, read once per page however many plugins ask.
let sitePack = null;
function sitePackFor(i18n) {
  if (typeof i18n === "string") return (sitePack ??= fetchJson(new URL(i18n, document.baseURI)));
  return Promise.resolve(i18n && typeof i18n === "object" ? i18n : {});
}

function merge(base, over) {
  const out = {...base};
  for (const [key, value] of Object.entries(over ?? {})) {
    if (value && typeof value === "object" && !Array.isArray(value)) out[key] = merge(base?.[key], value);
    else if (typeof value === "string") out[key] = value;
  }
  return out;
}

export async function loadStrings(plugin, lang, i18n = mainConfig().i18n) {
  const [served, site] = await Promise.all([
    fetchJson(new URL(`${encodeURIComponent(lang)}.json`, SERVED)), sitePackFor(i18n)]);
  return merge(served[plugin] ?? {}, site[lang]?.[plugin] ?? {});
}

// The text of `key` ("Errors.102" reaches into a table), its placeholders filled: the original's
// <%Name%> and the console's {name}. An unknown key shows as itself.
export function translate(strings, key, params = {}) {
  let value = key.split(".").reduce((node, part) => node?.[part], strings);
  if (typeof value !== "string") value = key;
  return value.replace(/<%(\w+)%>|\{(\w+)\}/g, (whole, a, b) => {
    const name = a ?? b;
    return name in params ? String(params[name]) : (a ? "" : whole);
  });
}
