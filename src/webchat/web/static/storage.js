// Where the page keeps the chat's keys so a reload restores it: localStorage under
// stateStorageKey; a cookie of that name when `_genesys.widgets.main.cookieOptions` is set (its
// attributes: `domain` shares the chat across the site's subdomains, which localStorage cannot);
// or the site's own async callbacks, the original's names the right way round:
// getSessionData(sessionData, Cookie, CookieOptions) is CALLED to hand the site the data to
// keep (null once the chat is over), setSessionData(Open, Cookie, CookieOptions) to get it back
// (the object, or its JSON text as the reference's example returns from Cookie.get).

import {mainConfig} from "./strings.js";

// Bytes a browser keeps of one cookie; the saved session is a few hundred.
export const MAX_COOKIE = 4096;
// Characters of JSON text accepted back from the site's setSessionData.
const MAX_RETURNED = 16384;
const SAME_SITE = {strict: "Strict", lax: "Lax", none: "None"};

// The cookie attributes of cookieOptions ({path, domain, secure, sameSite, expires}): expires
// in days (a number) or a Date; without it a session cookie, like the original's.
function attributes(options = {}) {
  let text = `; path=${typeof options.path === "string" && /^\/[^;\s]*$/.test(options.path) ? options.path : "/"}`;
  if (typeof options.domain === "string" && /^\.?[\w.-]+$/.test(options.domain)) text += `; domain=${options.domain}`;
  const expires = typeof options.expires === "number" ? new Date(Date.now() + options.expires * 864e5) : options.expires;
  if (expires instanceof Date && !Number.isNaN(expires.getTime())) text += `; expires=${expires.toUTCString()}`;
  const sameSite = SAME_SITE[String(options.sameSite ?? "").toLowerCase()];
  if (sameSite) text += `; samesite=${sameSite}`;
  if (options.secure === true || sameSite === "None") text += "; secure";
  return text;
}

// The `Cookie` helper the original hands to the async callbacks: get / set / remove.
export const Cookie = {
  get(name) {
    const prefix = `${encodeURIComponent(name)}=`;
    const found = document.cookie.split("; ").find((c) => c.startsWith(prefix));
    if (found === undefined) return undefined;
    try { return decodeURIComponent(found.slice(prefix.length)); } catch { return undefined; }
  },
  set(name, value, options) {
    const text = `${encodeURIComponent(name)}=${encodeURIComponent(typeof value === "string" ? value : JSON.stringify(value))}`;
    if (text.length > MAX_COOKIE) throw new RangeError(`cookie ${name} over ${MAX_COOKIE} bytes`);
    document.cookie = text + attributes(options);
  },
  remove(name, options) {
    document.cookie = `${encodeURIComponent(name)}=${attributes({...options, expires: new Date(0)})}`;
  },
};

function parsed(value) {
  if (typeof value !== "string") return value;
  return value.length > MAX_RETURNED ? null : JSON.parse(value);
}

export class SessionStore {
  constructor(storage, config, main = mainConfig) {
    this.storage = storage;
    this.config = config;  // a function: the service's current configuration
    this.main = main;      // a function: _genesys.widgets.main
  }

  // The site keeps the data when it gives both callbacks (one alone could not restore).
  siteKeeps(c) {
    return typeof c.async.getSessionData === "function" && typeof c.async.setSessionData === "function";
  }

  // cookieOptions as given (the callbacks see them), or null when the site set none.
  cookieOptions() {
    const options = this.main()?.cookieOptions;
    return options && typeof options === "object" ? options : null;
  }

  save(data) {
    const c = this.config();
    const cookies = this.cookieOptions();
    if (this.siteKeeps(c)) c.async.getSessionData(data, Cookie, cookies ?? {});
    else if (cookies) {
      try { Cookie.set(c.stateStorageKey, data, cookies); } catch (e) { console.error(`webchat: ${e.message}`); }
    } else this.storage?.setItem(c.stateStorageKey, JSON.stringify(data));
  }

  forget() {
    const c = this.config();
    const cookies = this.cookieOptions();
    if (this.siteKeeps(c)) c.async.getSessionData(null, Cookie, cookies ?? {});
    else if (cookies) Cookie.remove(c.stateStorageKey, cookies);
    else this.storage?.removeItem(c.stateStorageKey);
  }

  // The saved chat, or null when there is none or it is not one we could have saved.
  load() {
    const c = this.config();
    const cookies = this.cookieOptions();
    let data;
    try {
      // Open ([U]: the reference names it without saying what it is): true, we ask in order to
      // open the chat again.
      data = this.siteKeeps(c) ? parsed(c.async.setSessionData(true, Cookie, cookies ?? {}))
        : cookies ? parsed(Cookie.get(c.stateStorageKey) ?? "null")
          : JSON.parse(this.storage?.getItem(c.stateStorageKey) ?? "null");
    } catch { return null; }
    const ok = data && ["sessionID", "secureKey", "userId"].every((k) => typeof data[k] === "string" && data[k])
      && typeof data.alias === "string" && Number.isInteger(data.transcriptPosition) && Number.isInteger(data.savedAt);
    return ok ? data : null;
  }
}
