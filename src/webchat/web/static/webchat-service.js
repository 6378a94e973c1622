// WebChatService for the browser: the original's commands and events on a CXBus, reading the
// same configuration object (window._genesys.widgets.webchat). It talks GMS Chat API v2 over
// CometD (the official client: WebSocket, falling back to long-polling) or REST polling, and
// keeps the chat's keys in localStorage so a reloaded page restores the chat with nothing lost
// or shown twice (restoring: true for what the page had shown before the reload).

import {rejection} from "./cxbus.js";

const NO_SESSION = "There is no active chat session";
const ALREADY_ACTIVE = "There is already an active chat session";
const BAD_USER_DATA = "malformed JSON provided in userData property";
const NO_MESSAGE = "No message text provided";
const NOTHING_TO_RESTORE = "There is no chat session to restore";
// The original sends `messageType: data.type || "text"` with every message.
const DEFAULT_MESSAGE_TYPE = "text";
const CONNECTED = {Agent: "agentConnected", Client: "clientConnected", Supervisor: "supervisorConnected"};
const DISCONNECTED = {Agent: "agentDisconnected", Client: "clientDisconnected",
                      Supervisor: "supervisorDisconnected"};

const DEFAULTS = {
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

function checkOptions(options, allowed, required = []) {
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

function stringMap(value) {
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
function parseUserData(value) {
  if (typeof value !== "string") return stringMap(value);
  if (!value.trim()) return {};
  let parsed;
  try { parsed = JSON.parse(value); } catch { throw rejection(BAD_USER_DATA); }
  return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? stringMap(parsed) : {};
}

// An option both we and the original name, differently: either name may be given, both only
// with the same value (two different values are a caller's bug we should not guess around).
// Empty values count as not given, as the original's `||` does.
function oneOf(options, ours, original) {
  const mine = options[ours] || null;
  const theirs = options[original] || null;
  if (mine !== null && theirs !== null && mine !== theirs) {
    throw rejection(`options '${ours}' and '${original}' differ; give one of them`);
  }
  return mine ?? theirs;
}

// The original's coarse names, first match wins (Edge and Opera also say "Chrome"; Android
// also says "Linux"). The user-agent string is read first because every browser has one;
// navigator.userAgentData, where there is one, fills in what it does not name.
const BROWSERS = [[/Edg(e|A|iOS)?\//, "Edge"], [/OPR\/|Opera/, "Opera"], [/Firefox\/|FxiOS/, "Firefox"],
                  [/Chrome\/|Chromium\/|CriOS/, "Chrome"], [/Safari\//, "Safari"]];
const SYSTEMS = [[/Windows/, "Windows"], [/Android/, "Android"], [/iPhone|iPad|iPod/, "iOS"],
                 [/CrOS/, "Chrome OS"], [/Mac OS X|Macintosh/, "macOS"], [/Linux/, "Linux"]];
const MOBILE = /Mobi|Android|iPhone|iPad|iPod/;

function coarseName(table, fallback) {
  const ua = navigator.userAgent ?? "";
  return table.find(([re]) => re.test(ua))?.[1] ?? fallback ?? "";
}

// The _genesys_* userData the original adds to every chat so agents see where the customer
// is. Read at startChat, so a single-page site's current URL and title are the ones sent.
function pageContext() {
  const hints = navigator.userAgentData;
  const brand = hints?.brands?.find((b) => !/Not.?A.?Brand/i.test(b.brand))?.brand;
  const mobile = hints?.mobile || MOBILE.test(navigator.userAgent ?? "")
    || window.matchMedia("(pointer: coarse) and (hover: none)").matches;
  return {_genesys_source: mobile ? "mobile" : "web", _genesys_referrer: document.referrer,
          _genesys_url: location.href, _genesys_pageTitle: document.title,
          _genesys_browser: coarseName(BROWSERS, brand), _genesys_OS: coarseName(SYSTEMS, hints?.platform)};
}

function toRegExps(value) {
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

function merge(base, extra) {
  const out = {...base};
  for (const [key, value] of Object.entries(extra ?? {})) {
    out[key] = value && typeof value === "object" && !Array.isArray(value) && !(value instanceof RegExp)
      && typeof base[key] === "object" ? {...base[key], ...value} : value;
  }
  return out;
}

// ---- transports --------------------------------------------------------------------------

class RestTransport {
  constructor(service) {
    this.service = service;
    this.pushes = false;
  }
  url(path) {
    const c = this.service.config;
    const base = c.dataURL.replace(/\/+$/, "");
    return (c.endpoint ? `${base}/${c.endpoint}` : base) + path;
  }
  headers(extra = {}) {
    const c = this.service.config;
    const headers = {...extra};
    if (c.apikey) headers.apikey = c.apikey;
    if (c.enableCustomHeader) Object.assign(headers, window._genesys?.widgets?.main?.header ?? {});
    return headers;
  }
  async call(path, fields, {raw = false, body = null} = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.service.config.ajaxTimeout);
    let response;
    try {
      response = await fetch(this.url(path), {
        method: "POST", signal: controller.signal,
        credentials: this.service.config.xhrFields?.withCredentials ? "include" : "same-origin",
        headers: this.headers(body ? {} : {"Content-Type": "application/x-www-form-urlencoded"}),
        body: body ?? new URLSearchParams(fields),
      });
    } catch (e) {
      throw this.service.transportError(controller.signal.aborted
        ? `no reply within ${this.service.config.ajaxTimeout / 1000} s` : `${e.message}`);
    } finally {
      clearTimeout(timer);
    }
    const type = response.headers.get("Content-Type") ?? "";
    if (raw && response.ok && !type.startsWith("application/json")) return response;
    try {
      return await response.json();
    } catch {
      throw this.service.transportError(`HTTP ${response.status} without a chat response`, response.status);
    }
  }
  async close() {}
}

class CometdTransport {
  constructor(service, CometD, AckExtension) {
    this.service = service;
    this.pushes = true;
    const c = service.config.cometD;
    this.channel = c.channel;
    this.cometd = new CometD();
    this.cometd.registerExtension("ack", new AckExtension());
    if (!c.websocketEnabled) this.cometd.unregisterTransport("websocket");
    this.cometd.configure({url: c.cometURL, logLevel: c.logLevel === "warn" ? "warn" : c.logLevel});
    this.started = null;
    this.up = null;
    this.isUp = false;
    this.handshakes = 0;
  }
  get connectionType() { return this.cometd.getTransport()?.type ?? ""; }
  start() {
    if (this.up) return this.up;
    this.up = new Promise((resolve, reject) => {
      this.cometd.addListener("/meta/handshake", (reply) => {
        if (reply.successful) {
          this.handshakes += 1;
          const again = this.handshakes > 1;  // the server had lost us (a restart, say)
          // Every handshake clears the client's subscriptions, so each one subscribes anew;
          // after a re-handshake the chat is then caught up from its transcript position.
          this.cometd.subscribe(this.channel, (message) => this.delivered(message.data), (sub) => {
            if (!sub.successful) {
              if (!again) reject(this.service.transportError("subscribe failed"));
              return;
            }
            this.isUp = true;
            if (again) this.service.resync();
            else resolve();
          });
          return;
        }
        if (this.handshakes > 0) return;  // once up, the client re-handshakes by itself
        // A WebSocket that fails is the client's cue to try long-polling: wait for that.
        const failedType = reply.failure?.connectionType;
        if (failedType === "websocket" && this.cometd.getTransportTypes().includes("long-polling")) return;
        this.up = null;
        reject(this.service.transportError(`CometD handshake failed: ${reply.error ?? reply.failure?.reason ?? failedType ?? ""}`));
      });
      this.cometd.handshake();
    });
    return this.up;
  }
  delivered(data) {
    if (!data || data.statusCode !== 0) return;
    if (this.started && data.secureKey) {
      const started = this.started;
      this.started = null;
      started(data);
      return;
    }
    this.service.onPush(data);
  }
  async call(operation, fields) {
    await this.start();
    const data = {operation};
    for (const [key, value] of Object.entries(fields)) {
      const m = /^userData\[(.+)\]$/.exec(key);
      if (m) (data.userData ??= {})[m[1]] = value;
      else data[key] = key === "transcriptPosition" ? Number(value) : value;
    }
    const startedP = operation === "requestChat"
      ? new Promise((resolve) => { this.started = resolve; }) : null;
    const reply = await new Promise((resolve) => this.cometd.publish(this.channel, data, resolve));
    if (!reply.successful) {
      this.started = null;
      const parts = String(reply.error ?? "").split(":");
      const code = parts.length >= 3 && /^\d+$/.test(parts[1]) ? Number(parts[1]) : 1099;
      // No error string: the publish never reached the server (no connection right now).
      const advice = parts.slice(2).join(":") || reply.error
        || `not delivered over CometD: ${reply.failure?.reason || "no connection to the server"}`;
      return {statusCode: 2, errors: [{code, advice}]};
    }
    if (startedP) {
      return await Promise.race([startedP, new Promise((_, reject) => setTimeout(
        () => reject(this.service.transportError("requestChat over CometD: timed out")),
        Math.max(this.service.config.ajaxTimeout, 10000)))]);
    }
    return {statusCode: 0};
  }
  async close() {
    const wasUp = this.isUp;
    this.up = null;
    this.isUp = false;
    if (wasUp) await new Promise((resolve) => this.cometd.disconnect(resolve));
    else this.cometd.disconnect();  // also ends the client's own handshake retries
  }
}

// ---- the service --------------------------------------------------------------------------

export class WebChatService {
  constructor(bus, options = {}) {
    this.bus = bus;
    this.config = merge(DEFAULTS, options.config ?? window._genesys?.widgets?.webchat ?? {});
    this.storage = options.storage ?? window.localStorage;
    // Another tab of the site that starts (or restores) a chat saves it here: follow it too.
    if (this.storage === window.localStorage) window.addEventListener("storage", (e) => this.onSharedSession(e));
    // restoreTimeout counts the time away from the page, not the time since the last message:
    // a customer who waited quietly in the queue and then reloads keeps the chat.
    window.addEventListener("pagehide", () => this.save());
    this.plugin = bus.registerPlugin("WebChatService");
    this.reset();
    this.prefilters = [];
    this.preprocessors = [];
    this.pollExceptions = 0;
    this.offline = false;
    this.poller = null;
    this.typing = false;
    this.typingTimer = null;
    this.transport = null;
    this.typingInputs = [];
    const commands = {
      configure: this.configure, startChat: this.startChat, endChat: this.endChat,
      sendMessage: this.sendMessage, sendCustomNotice: this.sendCustomNotice,
      sendTyping: this.sendTyping, sendFilteredMessage: this.sendFilteredMessage,
      addPrefilter: this.addPrefilter, updateUserData: this.updateUserData, poll: this.poll,
      startPoll: this.startPoll, stopPoll: this.stopPoll, resetPollExceptions: this.resetPollExceptions,
      restore: this.restore, restoreChat: this.restore, getTranscript: this.getTranscript,
      getAgents: this.getAgents, getStats: this.getStats, sendFile: this.sendFile,
      downloadFile: this.downloadFile, getFileLimits: this.getFileLimits, deleteFile: this.deleteFile,
      getSessionData: this.getSessionData, fetchHistory: this.fetchHistory,
      registerPreProcessor: this.registerPreProcessor,
      registerTypingPreviewInput: this.registerTypingPreviewInput, verifySession: this.verifySession,
    };
    for (const [name, fn] of Object.entries(commands)) this.plugin.registerCommand(name, fn.bind(this));
  }

  reset() {
    this.session = {state: "idle", chatId: null, userId: null, secureKey: null, alias: null,
                    nextPosition: 1, transcript: [], participants: new Map(), selfId: null};
    this.restoringBelow = 0;
  }

  async loadTransport() {
    if (this.transport) return this.transport;
    if (this.config.cometD.enabled) {
      try {
        const {CometD, AckExtension} = await import("./vendor/cometd/cometd.js");
        this.transport = new CometdTransport(this, CometD, AckExtension);
        return this.transport;
      } catch (e) {
        // An error, not a warning: a server or package missing static/vendor degrades every chat.
        console.error(`webchat: the CometD client did not load (${e.message}); using REST polling`);
      }
    }
    this.transport = new RestTransport(this);
    return this.transport;
  }

  // CometD that cannot even handshake (the endpoint is down, or a proxy refuses it) must not
  // stop the customer from chatting: the chat goes over REST polling instead. Only before a
  // chat exists on CometD; once one does, the CometD client reconnects by itself.
  async fallBackToRest(error) {
    const failed = this.transport;
    console.warn(`webchat: CometD is unavailable (${error.message}); using REST polling`);
    this.transport = new RestTransport(this);
    await failed.close().catch(() => {});
  }

  async start({autoRestore = true} = {}) {
    await this.loadTransport();
    this.plugin.ready();
    if (autoRestore && this.loadSaved()) {
      try { await this.restore({}); } catch { /* reported by restoreTimeout / restoreFailed */ }
    }
  }

  // ---- plumbing ------------------------------------------------------------------------------

  get active() { return this.session.state === "active" || this.session.state === "starting"; }

  sessionData() {
    const s = this.session;
    return {sessionID: s.chatId, alias: s.alias, secureKey: s.secureKey, userId: s.userId,
            transcriptPosition: s.nextPosition};
  }

  requireSession() {
    if (this.session.state !== "active" || !this.session.chatId) throw rejection(NO_SESSION);
  }

  transportError(text, status = null) {
    const error = rejection(text, {type: "error", text, status});
    error.transport = true;
    return error;
  }

  identity() {
    const s = this.session;
    return {userId: s.userId, secureKey: s.secureKey, alias: s.alias};
  }

  // One GMS operation over whichever transport is on; the reply goes through receive().
  async operation(op, fields = {}, {position = false} = {}) {
    this.requireSession();
    const all = {...this.identity(), ...fields};
    if (position) all.transcriptPosition = String(this.session.nextPosition);
    const reply = await this.carry(op, all);
    this.receive(op, all, reply);
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    return reply;
  }

  async carry(op, fields) {
    let transport = await this.loadTransport();
    if (transport.pushes && !transport.isUp) {
      try {
        await transport.start();
      } catch (e) {
        await this.fallBackToRest(e);
        transport = this.transport;
      }
    }
    try {
      if (transport.pushes) {
        const cometOp = {send: "sendMessage", refresh: "requestNotifications"}[op] ?? op;
        return await transport.call(cometOp, fields);
      }
      const path = op === "requestChat" ? "" : `/${encodeURIComponent(this.session.chatId)}/${op}`;
      return await transport.call(path, fields);
    } catch (e) {
      if (e.transport) this.plugin.publish("error", e.data);
      throw e;
    }
  }

  receive(op, fields, reply) {
    if (reply.statusCode !== 0) {
      if (op === "requestChat") this.session.state = "idle";
      this.plugin.publish("error", reply);
      return;
    }
    const s = this.session;
    if (op === "requestChat") {
      Object.assign(s, {chatId: reply.chatId, userId: reply.userId, secureKey: reply.secureKey,
                        alias: reply.alias, state: "active"});
      this.save();
      this.plugin.publish("started", this.sessionData());
    }
    const asked = Number(fields.transcriptPosition ?? NaN);
    const covered = op === "requestChat" || (Number.isInteger(asked) && asked <= s.nextPosition);
    this.take(reply, covered);
  }

  onPush(reply) {
    const indexes = (reply.messages ?? []).map((m) => m.index).filter(Boolean);
    if (indexes.length && Math.min(...indexes) > this.session.nextPosition) {
      this.resync();  // a gap: ask for what we missed rather than skip it
      return;
    }
    this.take(reply, false);
  }

  resync() {
    if (this.session.state === "active") this.operation("refresh", {}, {position: true}).catch(() => {});
  }

  take(reply, covered) {
    const s = this.session;
    const fresh = [];
    for (const msg of [...(reply.messages ?? [])].sort((a, b) => a.index - b.index)) {
      if (msg.index) {
        if (msg.index < s.nextPosition) continue;  // seen: replayed or overlapping
        s.nextPosition = msg.index + 1;
      }
      fresh.push(msg);
    }
    if (covered && reply.nextPosition > s.nextPosition) s.nextPosition = reply.nextPosition;
    if (fresh.length) {
      s.transcript.push(...fresh);
      // A reply that ends the chat is not saved (as in the Python service): saving it would
      // hand other tabs, and the next page load, a chat that is already over.
      if (!reply.chatEnded) this.save();
      this.publishMessages(fresh);
      for (const msg of fresh) this.interpret(msg);
    }
    if (reply.chatEnded && s.state === "active") {
      s.state = "ended";
      this.stopPolling(true);
      this.clearTypingTimer();
      this.forget();
      this.plugin.publish("ended", this.sessionData());
    }
  }

  publishMessages(originals) {
    const groups = [];
    for (const msg of originals) {
      const restoring = msg.index > 0 && msg.index < this.restoringBelow;
      if (groups.length && groups.at(-1)[0] === restoring) groups.at(-1)[1].push(msg);
      else groups.push([restoring, [msg]]);
    }
    for (const [restoring, group] of groups) {
      this.plugin.publish("messageReceived", {messages: this.show(group), originalMessages: group,
                                              restoring, sessionData: this.sessionData()});
    }
  }

  show(originals) {
    const shown = [];
    for (const original of originals) {
      if (typeof original.text === "string" && this.prefilters.some((re) => re.test(original.text))) continue;
      let msg = structuredClone(original);
      for (const pre of this.preprocessors) {
        try { msg = pre(msg); } catch (e) { console.error("preprocessor failed", e); msg = structuredClone(original); break; }
        if (msg == null) break;
      }
      if (msg != null) shown.push(msg);
    }
    return shown;
  }

  interpret(msg) {
    const s = this.session;
    const from = msg.from ?? {};
    let p = s.participants.get(from.participantId);
    if (!p) { p = {participantId: from.participantId, name: from.nickname, type: from.type, connected: false, joined: false}; s.participants.set(from.participantId, p); }
    if (from.nickname) p.name = from.nickname;
    if (s.selfId === null && from.type === "Client" && msg.type === "ParticipantJoined") s.selfId = from.participantId;
    const restoring = msg.index > 0 && msg.index < this.restoringBelow;
    if (msg.type === "ParticipantJoined" || msg.type === "ParticipantLeft") {
      const joined = msg.type === "ParticipantJoined";
      p.connected = joined;
      if (joined) p.joined = true;
      const name = (joined ? CONNECTED : DISCONNECTED)[from.type];
      if (name) this.plugin.publish(name, {message: msg, agents: this.agents(), numAgentsConnected: this.numAgents()});
    } else if ((msg.type === "TypingStarted" || msg.type === "TypingStopped")
               && from.participantId !== s.selfId && !restoring) {
      this.plugin.publish(msg.type === "TypingStarted" ? "agentTypingStarted" : "agentTypingStopped", {message: msg});
    } else if (msg.type === "FileUploaded" && !restoring) {
      const meta = msg.userData ?? {};
      this.plugin.publish("fileUploaded", {message: msg, fileId: meta["file-id"] ?? msg.text,
        fileName: meta["file-name"], fileType: meta["file-type"],
        fileSize: meta["file-size"] ? Number(meta["file-size"]) : null, from});
    }
  }

  agents() {
    const out = {};
    for (const [id, p] of this.session.participants) {
      if (p.type !== "Client" && p.joined) out[id] = {name: p.name, type: p.type, connected: p.connected, participantId: id};
    }
    return out;
  }

  numAgents() {
    return [...this.session.participants.values()].filter((p) => p.connected && p.type === "Agent").length;
  }

  // ---- persistence (restore across page loads) ----------------------------------------------

  save() {
    if (this.session.state !== "active") return;
    const data = {...this.sessionData(), savedAt: Date.now(), async: this.config.async.enabled};
    if (this.config.async.setSessionData) this.config.async.setSessionData(data);
    else this.storage?.setItem(this.config.stateStorageKey, JSON.stringify(data));
  }

  forget() {
    if (this.config.async.setSessionData) this.config.async.setSessionData(null);
    else this.storage?.removeItem(this.config.stateStorageKey);
  }

  onSharedSession(event) {
    if (event.key !== this.config.stateStorageKey || !event.newValue) return;
    if (this.active || !this.plugin.isReady || this.config.async.getSessionData) return;
    // An ended chat keeps its id here: only a different chat is joined (as the Python
    // follow_shared_session does), never the one this tab has just seen end.
    if (this.loadSaved()?.sessionID === this.session.chatId) return;
    this.restore({}).catch(() => { /* published as restoreFailed / restoreTimeout */ });
  }

  loadSaved() {
    let data;
    try {
      data = this.config.async.getSessionData ? this.config.async.getSessionData()
        : JSON.parse(this.storage?.getItem(this.config.stateStorageKey) ?? "null");
    } catch { return null; }
    const ok = data && ["sessionID", "secureKey", "userId"].every((k) => typeof data[k] === "string" && data[k])
      && typeof data.alias === "string" && Number.isInteger(data.transcriptPosition) && Number.isInteger(data.savedAt);
    return ok ? data : null;
  }

  // ---- polling ------------------------------------------------------------------------------

  startPolling() {
    if (this.transport?.pushes || this.poller || this.session.state !== "active") return;
    const tick = async () => {
      if (this.session.state !== "active" || !this.poller) return;
      await this.pollOnce();
      if (this.poller) this.poller = setTimeout(tick, this.config.pollInterval);
    };
    this.poller = setTimeout(tick, this.config.pollInterval);
    this.plugin.publish("pollingStarted");
  }

  stopPolling(publish) {
    if (!this.poller) return;
    clearTimeout(this.poller);
    this.poller = null;
    if (publish) this.plugin.publish("pollingStopped");
  }

  async pollOnce() {
    try {
      await this.operation("refresh", {}, {position: true});
      this.pollExceptions = 0;
      if (this.offline) { this.offline = false; this.plugin.publish("chatServerBackOnline"); }
    } catch (e) {
      if (this.session.state !== "active") return;
      this.pollExceptions += 1;
      if (this.pollExceptions >= this.config.pollExceptionLimit && !this.offline) {
        this.offline = true;
        this.plugin.publish("chatServerWentOffline", {pollExceptions: this.pollExceptions});
        this.stopPolling(true);
      }
    }
  }

  clearTypingTimer() {
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.typingTimer = null;
  }

  // ---- commands -----------------------------------------------------------------------------

  async configure(options) {
    const config = merge(this.config, options);
    for (const key of ["ajaxTimeout", "pollInterval", "typingStopDelay", "restoreTimeout"]) {
      if (!Number.isInteger(config[key]) || config[key] <= 0) throw rejection(`${key} must be a positive integer`);
    }
    for (const [key, value] of [["stateStorageKey", config.stateStorageKey], ["async.userDataKey", config.async.userDataKey]]) {
      if (typeof value !== "string" || !value) throw rejection(`${key} must be a non-empty string`);
    }
    const connection = (c) => JSON.stringify([c.dataURL, c.endpoint, c.apikey, c.cometD]);
    if (connection(config) !== connection(this.config)) {
      if (this.active) throw rejection("the transport cannot change during an active chat session");
      await this.transport?.close();
      this.transport = null;
    }
    this.config = config;
    await this.loadTransport();
    return {configured: Object.keys(options).sort()};
  }

  async startChat(options) {
    const o = checkOptions(options, {userData: ["object", "string"], nickname: "string", firstname: "string",
                                     lastname: "string", email: "string", subject: "string"});
    if (this.active) throw rejection(ALREADY_ACTIVE);
    // The page context under the configured userData, under the caller's: theirs win.
    const userData = {...pageContext(), ...stringMap(this.config.userData), ...parseUserData(o.userData)};
    if (this.config.async.enabled) userData[this.config.async.userDataKey] ??= "true";
    const form = {nickname: o.nickname, firstName: o.firstname, lastName: o.lastname,
                  emailAddress: o.email, subject: o.subject};
    const fields = Object.fromEntries(Object.entries(form).filter(([, v]) => v));
    for (const [k, v] of Object.entries(userData)) fields[`userData[${k}]`] = v;
    this.reset();
    this.session.state = "starting";
    let reply;
    try {
      reply = await this.carry("requestChat", fields);
    } catch (e) {
      this.session.state = "idle";
      throw e;
    }
    this.receive("requestChat", fields, reply);
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    this.startPolling();
    return reply;
  }

  async endChat(options) {
    checkOptions(options, {});
    this.requireSession();
    this.clearTypingTimer();
    return this.operation("disconnect", {}, {position: true});
  }

  // `type` is the original's name for what goes out as messageType.
  async sendMessage(options) {
    const o = checkOptions(options, {message: "string", messageType: "string", type: "string"});
    return this.send(o.message, oneOf(o, "messageType", "type"));
  }

  async send(text, messageType) {
    if (!text || !text.trim()) throw rejection(NO_MESSAGE);
    this.requireSession();
    this.clearTypingTimer();
    this.typing = false;
    return this.operation("send", {message: text, messageType: messageType || DEFAULT_MESSAGE_TYPE},
                          {position: true});
  }

  async sendFilteredMessage(options) {
    const o = checkOptions(options, {message: "string", regex: ["regexp", "string"]}, ["regex"]);
    const patterns = toRegExps(o.regex);
    if (!o.message || !o.message.trim()) throw rejection(NO_MESSAGE);
    this.requireSession();
    this.prefilters.push(...patterns);
    return this.send(o.message);
  }

  async addPrefilter(options) {
    const o = checkOptions(options, {filters: ["regexp", "string", "array"]}, ["filters"]);
    this.prefilters.push(...toRegExps(o.filters));
    return {filters: this.prefilters.length};
  }

  async registerPreProcessor(options) {
    const o = checkOptions(options, {preprocessor: "function"}, ["preprocessor"]);
    this.preprocessors.push(o.preprocessor);
    return {preprocessors: this.preprocessors.length};
  }

  async registerTypingPreviewInput(options) {
    const o = checkOptions(options, {input: "object"}, ["input"]);
    const input = o.input;
    if (!(input instanceof HTMLInputElement || input instanceof HTMLTextAreaElement)) {
      throw rejection("option 'input' must be an input or textarea element");
    }
    const onInput = () => {
      if (this.session.state === "active" && input.value) {
        this.bus.command("WebChatService.sendTyping", {message: input.value}).catch(() => {});
      }
    };
    input.addEventListener("input", onInput);
    this.typingInputs.push(input);
    return {inputs: this.typingInputs.length};
  }

  // isTyping as the original reads it: only false is false (anything else, or nothing, is
  // typing). The original then still only starts; we stop at once, which is what a caller
  // saying "not typing" means. A start stops by itself after typingStopDelay of silence.
  async sendTyping(options) {
    const o = checkOptions(options, {message: "string", isTyping: "any"});
    this.requireSession();
    if (o.isTyping === false) return this.stopTyping();
    this.clearTypingTimer();
    this.typingTimer = setTimeout(() => this.stopTyping().catch(() => {}), this.config.typingStopDelay);
    if (this.typing) return null;
    this.typing = true;
    const reply = await this.operation("startTyping", o.message ? {message: o.message} : {});
    this.plugin.publish("clientTypingStarted", {message: o.message});
    return reply;
  }

  // stopTyping if this client is typing (the reply), else nothing (null): a stop the server
  // never had a start for would only add noise to the transcript.
  async stopTyping() {
    this.clearTypingTimer();
    if (!this.typing || this.session.state !== "active") return null;
    this.typing = false;
    const reply = await this.operation("stopTyping");
    this.plugin.publish("clientTypingStopped");
    return reply;
  }

  async sendCustomNotice(options) {
    const o = checkOptions(options, {message: "string"});
    return this.operation("customNotice", o.message ? {message: o.message} : {});
  }

  async updateUserData(options) {
    if (!options || !Object.keys(options).length) throw rejection("no userData provided");
    const data = stringMap(options);
    const fields = {};
    for (const [k, v] of Object.entries(data)) fields[`userData[${k}]`] = v;
    return this.operation("updateData", fields);
  }

  async poll(options) {
    checkOptions(options, {});
    return this.operation("refresh", {}, {position: true});
  }

  async startPoll(options) {
    checkOptions(options, {});
    this.requireSession();
    if (this.transport?.pushes) throw rejection("polling is not used while CometD delivers the chat");
    this.startPolling();
    return {polling: Boolean(this.poller)};
  }

  async stopPoll(options) {
    checkOptions(options, {});
    this.stopPolling(true);
    return {polling: false};
  }

  async resetPollExceptions(options) {
    checkOptions(options, {});
    this.pollExceptions = 0;
    if (this.session.state === "active") this.startPolling();
    return {pollExceptions: 0};
  }

  async restore(options) {
    checkOptions(options, {});
    if (this.active) throw rejection(ALREADY_ACTIVE);
    const saved = this.loadSaved();
    if (!saved) throw rejection(NOTHING_TO_RESTORE);
    const asynchronous = this.config.async.enabled || saved.async === true;
    const publicData = {sessionID: saved.sessionID, alias: saved.alias, secureKey: saved.secureKey,
                        userId: saved.userId, transcriptPosition: saved.transcriptPosition};
    if (!asynchronous && Date.now() - saved.savedAt > this.config.restoreTimeout) {
      this.forget();
      this.plugin.publish("restoreTimeout", {sessionData: publicData});
      throw rejection("The chat session was not restored: it has been inactive longer than restoreTimeout");
    }
    this.reset();
    Object.assign(this.session, {state: "active", chatId: saved.sessionID, userId: saved.userId,
                                 secureKey: saved.secureKey, alias: saved.alias, nextPosition: 1});
    this.restoringBelow = saved.transcriptPosition;
    const fields = {...this.identity(), transcriptPosition: "1"};
    let reply;
    try {
      reply = await this.carry("refresh", fields);
    } catch (e) {
      this.reset();
      this.plugin.publish("restoreFailed", {sessionData: publicData, error: e.data});
      throw rejection(`The chat session could not be restored: ${e.reason ?? e.message}`, e.data);
    }
    if (reply.statusCode !== 0) {
      this.reset();
      this.forget();
      this.plugin.publish("restoreFailed", {sessionData: publicData, error: reply});
      throw rejection(`The chat session could not be restored: ${reasonOf(reply)}`, reply);
    }
    this.plugin.publish("restored", {sessionData: publicData, async: asynchronous,
                                     newMessageRestoreState: this.config.async.newMessageRestoreState});
    this.receive("refresh", fields, reply);
    this.startPolling();
    return this.sessionData();
  }

  async getTranscript(options) {
    checkOptions(options, {});
    return {messages: structuredClone(this.session.transcript)};
  }

  async getAgents(options) {
    checkOptions(options, {});
    return {agents: this.agents(), numAgentsConnected: this.numAgents()};
  }

  async getStats(options) {
    checkOptions(options, {});
    const s = this.session;
    if (!s.chatId) throw rejection(NO_SESSION);
    const texts = s.transcript.filter((m) => m.type === "Message");
    return {sessionID: s.chatId, startTime: s.transcript[0]?.utcTime ?? null,
            endTime: s.state === "ended" ? s.transcript.at(-1)?.utcTime ?? null : null,
            messagesSent: texts.filter((m) => m.from.participantId === s.selfId).length,
            messagesReceived: texts.filter((m) => m.from.participantId !== s.selfId).length,
            agentsJoined: Object.values(this.agents()).filter((a) => a.type === "Agent").length,
            numAgentsConnected: this.numAgents()};
  }

  async getSessionData(options) {
    checkOptions(options, {});
    if (!this.session.chatId) throw rejection(NO_SESSION);
    return this.sessionData();
  }

  async verifySession(options) {
    checkOptions(options, {});
    const active = this.session.state === "active" && Boolean(this.session.chatId);
    return {sessionActive: active, sessionData: this.session.chatId ? this.sessionData() : null};
  }

  async fetchHistory(options) {
    checkOptions(options, {});
    const reply = await this.operation("refresh", {transcriptPosition: "1"});
    return {messages: reply.messages ?? []};
  }

  // ---- files --------------------------------------------------------------------------------

  fileEndpoint() {
    const c = this.config;
    if (this.transport?.pushes) {
      if (!c.cometD.apiURL) throw rejection("file operations over CometD need webchat.cometD.apiURL");
      return {url: c.cometD.apiURL, ntf: true};
    }
    return {url: null, ntf: false};
  }

  async fileCall(op, path, extra = {}, body = null, raw = false) {
    this.requireSession();
    const {url, ntf} = this.fileEndpoint();
    const fields = {...this.identity(), ...extra};
    if (ntf) fields.operation = op;
    if (body) for (const [k, v] of Object.entries(fields)) body.append(k, v);  // multipart upload
    if (!ntf) {
      const rest = this.transport instanceof RestTransport ? this.transport : new RestTransport(this);
      return rest.call(`/${encodeURIComponent(this.session.chatId)}/${path}`, fields, {raw, body});
    }
    const form = body ?? new URLSearchParams(fields);
    const response = await fetch(url, {method: "POST", body: form,
      credentials: this.config.xhrFields?.withCredentials ? "include" : "same-origin"});
    const type = response.headers.get("Content-Type") ?? "";
    if (raw && response.ok && !type.startsWith("application/json")) return response;
    return response.json();
  }

  async getFileLimits(options) {
    checkOptions(options, {});
    const reply = await this.fileCall("fileGetLimits", "file/limits");
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    const notice = (reply.messages ?? []).find((m) => m.text === "file-client-cfg-get");
    if (!notice) throw rejection("the server's reply carried no file limits", reply);
    return notice.userData;
  }

  async sendFile(options) {
    const o = checkOptions(options, {files: "object", file: "object", description: "string"});
    const file = o.file ?? o.files?.[0];
    if (!(file instanceof Blob)) throw rejection("option 'files' must be a FileList (or 'file' a File)");
    const body = new FormData();
    if (o.description) body.append("userData[file-description]", o.description);
    body.append("file", file, file.name ?? "file");
    const reply = await this.fileCall("fileUpload", "file", {}, body);
    if (reply.statusCode !== 0) { this.plugin.publish("error", reply); throw rejection(reasonOf(reply), reply); }
    if (!this.transport.pushes) this.pollOnce();
    return reply;
  }

  async downloadFile(options) {
    const o = checkOptions(options, {fileId: "string"}, ["fileId"]);
    const path = `file/${encodeURIComponent(o.fileId)}/download`;
    const response = await this.fileCall("fileDownload", path, this.fileEndpoint().ntf ? {fileId: o.fileId} : {}, null, true);
    if (!(response instanceof Response)) throw rejection(reasonOf(response), response);
    const blob = await response.blob();
    const name = /filename\*=UTF-8''([^;]+)/.exec(response.headers.get("Content-Disposition") ?? "")?.[1];
    return {fileId: o.fileId, fileName: name ? decodeURIComponent(name) : "", contentType: blob.type, size: blob.size, blob};
  }

  async deleteFile(options) {
    const o = checkOptions(options, {fileId: "string"}, ["fileId"]);
    const path = `file/${encodeURIComponent(o.fileId)}/delete`;
    const reply = await this.fileCall("fileDelete", path, this.fileEndpoint().ntf ? {fileId: o.fileId} : {});
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    return reply;
  }
}

function reasonOf(reply) {
  const errors = reply.errors ?? [];
  if (errors.length) return errors.map((e) => e.advice ? `${e.code}: ${e.advice}` : String(e.code)).join("; ");
  return `server error (statusCode ${reply.statusCode})`;
}
