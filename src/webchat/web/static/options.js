// WebChatService's options: the defaults of the `webchat` configuration namespace, the
// checks every command applies to its options, and the userData rules. No I/O.

import {rejection} from "./cxbus.js";

export const BAD_USER_DATA = "malformed JSON provided in userData property";

export const DEFAULTS = {
  dataURL: "", endpoint: "", apikey: "", enableCustomHeader: false, userData: {},
  ajaxTimeout: 3000, pollExceptionLimit: 5, restoreTimeout: 60000, pollInterval: 1000,
  typingStopDelay: 5000, xhrFields: {},
  // Ours, for two unverified ([U]) names: where the page keeps the session for restore, and the
  // userData key that marks an asynchronous chat (the server's --async-user-data-key).
  stateStorageKey: "_genesys.widgets.webchat.state.keys",
  cometD: {enabled: false, cometURL: "", channel: "", apiURL: "", websocketEnabled: true,
           logLevel: "info"},
  async: {enabled: false, newMessageRestoreState: "minimized", getSessionData: null,
          setSessionData: null, userDataKey: "GCTI_Chat_AsyncMode"},
};

export function checkOptions(options, allowed, required = []) {
  for (const [key, value] of Object.entries(options)) {
    if (!(key in allowed)) {
      throw rejection(`unknown option '${key}'; expected one of [${Object.keys(allowed).sort().join(", ")}]`);
    }
    if (value === undefined || value === null) continue;
    const types = [].concat(allowed[key]);
    const ok = types.some((t) => t === "any" || (t === "array" ? Array.isArray(value)
      : t === "regexp" ? value instanceof RegExp
      : t === "object" ? typeof value === "object" && !Array.isArray(value)
      : typeof value === t));
    if (!ok) throw rejection(`option '${key}' must be ${types.join(" or ")}`);
  }
  for (const key of required) {
    if (options[key] === undefined || options[key] === null) throw rejection(`option '${key}' is required`);
  }
  return options;
}

export function stringMap(value) {
  const out = {};
  for (const [key, item] of Object.entries(value ?? {})) {
    if (!["string", "number", "boolean"].includes(typeof item)) throw rejection(BAD_USER_DATA);
    out[key] = String(item);
  }
  return out;
}

// startChat's userData, which the original also takes as a JSON string: a blank string, or JSON
// that is not an object ("[1]", "5"), is no userData, as there; text that does not parse is
// refused with the original's reason.
export function parseUserData(value) {
  if (typeof value !== "string") return stringMap(value);
  if (!value.trim()) return {};
  let parsed;
  try { parsed = JSON.parse(value); } catch { throw rejection(BAD_USER_DATA); }
  return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? stringMap(parsed) : {};
}

// An option both we and the original name, differently: either name may be given, both only
// with the same value (two different values are a caller's bug we should not guess around).
// Empty values count as not given, as the original's `||` does.
export function oneOf(options, ours, original) {
  const mine = options[ours] || null;
  const theirs = options[original] || null;
  if (mine !== null && theirs !== null && mine !== theirs) {
    throw rejection(`options '${ours}' and '${original}' differ; give one of them`);
  }
  return mine ?? theirs;
}

export function toRegExps(value) {
  const items = Array.isArray(value) ? value : [value];
  if (!items.length) throw rejection("no filter given");
  return items.map((item) => {
    if (item instanceof RegExp) return item;
    if (typeof item === "string" && item) {
      try { return new RegExp(item); } catch (e) { throw rejection(`invalid regular expression ${item}: ${e.message}`); }
    }
    throw rejection("a filter must be a regular expression (RegExp or string)");
  });
}

export function merge(base, extra) {
  const out = {...base};
  for (const [key, value] of Object.entries(extra ?? {})) {
    out[key] = value && typeof value === "object" && !Array.isArray(value) && !(value instanceof RegExp)
      && typeof base[key] === "object" ? {...base[key], ...value} : value;
  }
  return out;
}

// configure's checks of the merged configuration.
export function checkConfig(config) {
  for (const key of ["ajaxTimeout", "pollInterval", "typingStopDelay", "restoreTimeout"]) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) throw rejection(`${key} must be a positive integer`);
  }
  for (const [key, value] of [["stateStorageKey", config.stateStorageKey], ["async.userDataKey", config.async.userDataKey]]) {
    if (typeof value !== "string" || !value) throw rejection(`${key} must be a non-empty string`);
  }
  return config;
}
