// WebChatService for the browser: the original's commands and events on a CXBus, reading the
// same configuration object (window._genesys.widgets.webchat). It talks GMS Chat API v2 over
// CometD (the official client: WebSocket, falling back to long-polling) or REST polling, and
// keeps the chat's keys in localStorage so a reloaded page restores the chat with nothing lost
// or shown twice (restoring: true for what the page had shown before the reload).
//
// The GMS rules live in the pure session (session.js, shared cases with the Python client);
// this module wires it to the transports (transports.js), the storage (storage.js), the
// options (options.js), the page, timers and the bus.

import {rejection} from "./cxbus.js";
import {checkConfig, checkOptions, DEFAULTS, merge, oneOf, parseUserData, stringMap, toRegExps} from "./options.js";
import {ALREADY_ACTIVE, ChatSession, NO_SESSION, SessionError} from "./session.js";
import {SessionStore} from "./storage.js";
import {CometdTransport, RestTransport} from "./transports.js";

const NO_MESSAGE = "No message text provided";
const NOTHING_TO_RESTORE = "There is no chat session to restore";
// The original's reason, for startPoll while CometD delivers the chat.
const NO_POLLING_ON_COMETD = "Polling is not supported when using CometD";
// The original sends `messageType: data.type || "text"` with every message.
const DEFAULT_MESSAGE_TYPE = "text";
const CONNECTED = {Agent: "agentConnected", Client: "clientConnected", Supervisor: "supervisorConnected"};
const DISCONNECTED = {Agent: "agentDisconnected", Client: "clientDisconnected",
                      Supervisor: "supervisorDisconnected"};
// The original's catch-up after the connection came back: a refresh every 3 s, 30 times at
// most, then chatServerTimeout (as the Python service: RESYNC_INTERVAL_MS, RESYNC_ATTEMPTS).
const RESYNC_INTERVAL_MS = 3000;
const RESYNC_ATTEMPTS = 30;
// Every event the service publishes, declared on the bus with registerEvents as the original's
// plugin does: the 8.5 bundle's list, in its order, then the ones it publishes without
// declaring and ours. The same list as the Python service's EVENTS (webchat.service.core),
// which tests/test_service_payloads_browser.py holds them to.
export const EVENTS = Object.freeze([
  "ready", "restored", "restoreTimeout", "restoreFailed", "messageReceived", "error", "started", "ended",
  "agentTypingStarted", "agentTypingStopped", "pollingStarted", "pollingStopped", "clientConnected",
  "clientDisconnected", "agentConnected", "agentDisconnected", "supervisorConnected", "supervisorDisconnected",
  "clientTypingStarted", "clientTypingStopped", "ajaxResponse", "disconnected", "reconnected",
  "chatServerWentOffline", "chatServerBackOnline", "restoredOffline", "chatServerTimeout", "fileUploaded",
]);
// CometD operation names of the GMS operations that differ.
const COMETD_OPERATION = {send: "sendMessage", refresh: "requestNotifications"};

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

// ---- the service --------------------------------------------------------------------------

export class WebChatService {
  constructor(bus, options = {}) {
    this.bus = bus;
    this.config = merge(DEFAULTS, options.config ?? window._genesys?.widgets?.webchat ?? {});
    this.storage = options.storage ?? window.localStorage;
    this.store = new SessionStore(this.storage, () => this.config);
    // Another tab of the site that starts (or restores) a chat saves it here: follow it too.
    if (this.storage === window.localStorage) window.addEventListener("storage", (e) => this.onSharedSession(e));
    // restoreTimeout counts the time away from the page, not the time since the last message:
    // a customer who waited quietly in the queue and then reloads keeps the chat.
    window.addEventListener("pagehide", () => this.save());
    this.plugin = bus.registerPlugin("WebChatService");
    this.plugin.registerEvents(EVENTS);
    this.session = new ChatSession();
    this.prefilters = [];
    this.preprocessors = [];
    this.pollExceptions = 0;
    this.offline = false;
    // A request failed at the network level (or CometD lost its connection) and nothing has
    // succeeded since: the next success publishes reconnected.
    this.disconnected = false;
    this.resyncInterval = RESYNC_INTERVAL_MS;
    this.resyncAttempts = RESYNC_ATTEMPTS;
    this.resyncing = null;
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
    if (autoRestore && this.store.load()) {
      try { await this.restore({}); } catch { /* reported by restoreTimeout / restoreFailed */ }
    }
  }

  // ---- plumbing ------------------------------------------------------------------------------

  get active() { return this.session.active; }

  sessionData() { return this.session.sessionData(); }

  requireSession() {
    if (this.session.state !== "active" || !this.session.chatId) throw rejection(NO_SESSION);
  }

  // A request from the session; one that makes no sense now is the command's rejection.
  request(make) {
    try {
      return make();
    } catch (e) {
      if (e instanceof SessionError) throw rejection(e.message);
      throw e;
    }
  }

  // status null: the server was not reached at all (no network, no reply in time).
  transportError(text, status = null) {
    const error = rejection(text, {type: "error", text, status});
    error.transport = true;
    return error;
  }

  // One GMS operation over whichever transport is on; the reply goes through the session.
  async operation(make) {
    const request = this.request(make);
    const reply = await this.carry(request);
    this.apply(request, reply);
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    return reply;
  }

  async carry(request) {
    let transport = await this.loadTransport();
    if (transport.pushes && !transport.isUp) {
      try {
        await transport.start();
      } catch (e) {
        await this.fallBackToRest(e);
        transport = this.transport;
      }
    }
    return this.reach(request, () => transport.pushes
      ? transport.call(COMETD_OPERATION[request.operation] ?? request.operation, request.fields)
      : transport.call(request.path, request.fields));
  }

  // Carry one request, keeping the connection events: disconnected when it fails at the
  // network level, reconnected on the first success after that (the chat is then refreshed
  // from its position), ajaxResponse with every successful chat response.
  async reach(request, send) {
    let reply;
    try {
      reply = await send();
    } catch (e) {
      if (e.transport) {
        if (e.data?.status === null) this.onLink(false);
        this.plugin.publish("error", e.data);
      }
      throw e;
    }
    const ok = reply?.statusCode === 0;
    this.onLink(true, ok && request.operation === "refresh");
    if (ok) this.plugin.publish("ajaxResponse", reply);
    return reply;
  }

  onLink(up, refreshed = false) {
    if (!up) {
      if (!this.disconnected) {
        this.disconnected = true;
        this.plugin.publish("disconnected");
      }
      return;
    }
    if (!this.disconnected) return;
    this.disconnected = false;
    this.plugin.publish("reconnected");
    if (!refreshed) this.resync();
  }

  apply(request, reply) {
    for (const event of this.session.receive(request, reply)) this.publishEvent(event);
  }

  onPush(reply) {
    for (const event of this.session.push(reply)) this.publishEvent(event);
  }

  // What the session reports, as the original's bus events. Payloads carry transcript events
  // in the original's shape (session.originalMessage), the server's ones in originalMessages.
  publishEvent(event) {
    const publish = (name, data) => this.plugin.publish(name, data);
    const s = this.session;
    const original = (msg) => s.originalMessage(msg);
    switch (event.kind) {
      case "started":
        this.save();
        // The original's "AJAX Response containing session data".
        publish("started", {...event.response, ...this.sessionData()});
        break;
      case "messages":
        this.save();
        publish("messageReceived", {messages: this.show(event.messages.map(original)),
                                    originalMessages: event.messages, restoring: event.restoring,
                                    sessionData: this.sessionData()});
        break;
      case "joined":
      case "left": {
        const name = (event.kind === "joined" ? CONNECTED : DISCONNECTED)[event.participant.type];
        if (name) {
          publish(name, {message: original(event.message), agents: s.agents(),
                         numAgentsConnected: s.connectedAgents()});
        }
        break;
      }
      case "typing": {
        // The original's data is the message itself (from.id, from.name); ours also names it
        // message. A stop implied by a message or a departure is that event.
        const message = original(event.message);
        publish(event.started ? "agentTypingStarted" : "agentTypingStopped",
                {...message, isTyping: event.started, message});
        break;
      }
      case "fileUploaded": {
        const msg = original(event.message);
        const meta = msg.userData ?? {};
        publish("fileUploaded", {message: msg, fileId: meta["file-id"] ?? msg.text,
          fileName: meta["file-name"], fileType: meta["file-type"],
          fileSize: meta["file-size"] ? Number(meta["file-size"]) : null, from: msg.from});
        break;
      }
      case "ended":
        this.stopPolling(true);
        this.clearTypingTimer();
        this.forget();
        publish("ended", this.sessionData());
        break;
      case "error":
        publish("error", event.response);
        break;
      case "gap":
        this.resync();  // events we never received: ask for them rather than skip them
        break;
    }
  }

  // Catch the chat up from its position, one catch-up at a time: a refresh, retried every
  // resyncInterval until one succeeds; after resyncAttempts failures the service gives up
  // and publishes chatServerTimeout.
  resync() {
    if (this.resyncing || this.session.state !== "active") return;
    this.resyncing = (async () => {
      for (let attempt = 0; attempt < this.resyncAttempts; attempt += 1) {
        if (attempt) await new Promise((resolve) => setTimeout(resolve, this.resyncInterval));
        if (this.session.state !== "active") return;
        try {
          await this.operation(() => this.session.refresh());
          return;
        } catch { /* published as error; tried again */ }
      }
      if (this.session.state === "active") this.plugin.publish("chatServerTimeout");
    })().finally(() => { this.resyncing = null; });
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

  // ---- persistence (restore across page loads) ----------------------------------------------

  save() {
    if (this.session.state !== "active") return;
    this.store.save({...this.sessionData(), savedAt: Date.now(), async: this.config.async.enabled});
  }

  forget() { this.store.forget(); }

  loadSaved() { return this.store.load(); }

  onSharedSession(event) {
    if (event.key !== this.config.stateStorageKey || !event.newValue) return;
    if (this.active || !this.plugin.isReady || this.config.async.getSessionData) return;
    // An ended chat keeps its id here: only a different chat is joined (as the Python
    // follow_shared_session does), never the one this tab has just seen end.
    if (this.loadSaved()?.sessionID === this.session.chatId) return;
    this.restore({}).catch(() => { /* published as restoreFailed / restoreTimeout */ });
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
      await this.operation(() => this.session.refresh());
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
    const config = checkConfig(merge(this.config, options));
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
    this.session = new ChatSession();
    const request = this.session.requestChat(fields);
    let reply;
    try {
      reply = await this.carry(request);
    } catch (e) {
      this.session.failStart();
      throw e;
    }
    this.apply(request, reply);
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    this.startPolling();
    return reply;
  }

  async endChat(options) {
    checkOptions(options, {});
    this.requireSession();
    this.clearTypingTimer();
    return this.operation(() => this.session.disconnect());
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
    return this.operation(() => this.session.sendMessage(text, messageType || DEFAULT_MESSAGE_TYPE));
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
    const reply = await this.operation(() => this.session.startTyping(o.message || null));
    this.plugin.publish("clientTypingStarted", {message: o.message});
    return reply;
  }

  // stopTyping if this client is typing (the reply), else nothing (null): a stop the server
  // never had a start for would only add noise to the transcript.
  async stopTyping() {
    this.clearTypingTimer();
    if (!this.typing || this.session.state !== "active") return null;
    this.typing = false;
    const reply = await this.operation(() => this.session.stopTyping());
    this.plugin.publish("clientTypingStopped");
    return reply;
  }

  async sendCustomNotice(options) {
    const o = checkOptions(options, {message: "string"});
    return this.operation(() => this.session.customNotice(o.message || null));
  }

  // The options object is the user data itself, as in the original. Without an active chat,
  // as there, it joins the configured userData that the next startChat sends, and the result
  // is that merged userData.
  async updateUserData(options) {
    if (!options || !Object.keys(options).length) throw rejection("no userData provided");
    const data = stringMap(options);
    if (this.session.state !== "active") {
      this.config.userData = {...this.config.userData, ...data};
      return {...this.config.userData};
    }
    return this.operation(() => this.session.updateData(data));
  }

  async poll(options) {
    checkOptions(options, {});
    return this.operation(() => this.session.refresh());
  }

  async startPoll(options) {
    checkOptions(options, {});
    this.requireSession();
    if (this.transport?.pushes) throw rejection(NO_POLLING_ON_COMETD);
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
    this.session = ChatSession.resume(saved.sessionID, saved.userId, saved.secureKey, saved.alias, 1,
                                      saved.transcriptPosition);
    const restored = {sessionData: publicData, async: asynchronous,
                      newMessageRestoreState: this.config.async.newMessageRestoreState};
    const request = this.session.refresh();
    let reply;
    try {
      reply = await this.carry(request);
    } catch (e) {
      if (!e.transport) throw e;
      // The server could not be reached: the chat stays restorable. Restored offline, it is
      // caught up as soon as the server answers (polling, or CometD's resync).
      this.plugin.publish("restored", restored);
      this.offline = true;
      this.plugin.publish("restoredOffline");
      if (this.transport.pushes) this.resync();
      else this.startPolling();
      return this.sessionData();
    }
    if (reply.statusCode !== 0) {
      this.session = new ChatSession();
      this.forget();
      this.plugin.publish("restoreFailed", {sessionData: publicData, error: reply});
      throw rejection(`The chat session could not be restored: ${reasonOf(reply)}`, reply);
    }
    this.plugin.publish("restored", restored);
    this.apply(request, reply);
    this.startPolling();
    return this.sessionData();
  }

  // As the original: messages in its shape, originalMessages as the server sent them.
  async getTranscript(options) {
    checkOptions(options, {});
    const originals = structuredClone(this.session.transcript);
    return {messages: originals.map((m) => this.session.originalMessage(m)), originalMessages: originals};
  }

  async getAgents(options) {
    checkOptions(options, {});
    return {agents: this.session.agents(), numAgentsConnected: this.session.connectedAgents()};
  }

  async getStats(options) {
    checkOptions(options, {});
    const s = this.session;
    if (!s.chatId) throw rejection(NO_SESSION);
    const texts = s.transcript.filter((m) => m.type === "Message");
    const [first, last] = [s.transcript[0], s.transcript.at(-1)];
    // The original's agents, startTime, endTime and duration (first event to last), and counts.
    return {sessionID: s.chatId, agents: s.agents(), startTime: first?.utcTime ?? null,
            duration: first ? last.utcTime - first.utcTime : null,
            endTime: s.state === "ended" ? s.transcript.at(-1)?.utcTime ?? null : null,
            messagesSent: texts.filter((m) => m.from.participantId === s.selfId).length,
            messagesReceived: texts.filter((m) => m.from.participantId !== s.selfId).length,
            agentsJoined: Object.values(s.agents()).filter((a) => a.type === "Agent").length,
            numAgentsConnected: s.connectedAgents()};
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
    const reply = await this.operation(() => {
      const request = this.session.refresh();
      return {...request, fields: {...request.fields, transcriptPosition: "1"}};
    });
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

  // A file operation: over REST on the chat's own URL, over CometD on the chat-ntf side door
  // (cometD.apiURL) with the operation named in the form.
  async fileCall(make, ntfOperation, extra = {}, body = null, raw = false) {
    this.requireSession();
    const request = this.request(make);
    const {url, ntf} = this.fileEndpoint();
    const fields = {...request.fields, ...extra};
    if (ntf) fields.operation = ntfOperation;
    if (body) for (const [k, v] of Object.entries(fields)) body.append(k, v);  // multipart upload
    const rest = this.transport instanceof RestTransport ? this.transport : new RestTransport(this);
    return this.reach(request, () => ntf ? rest.post(url, fields, {raw, body, bare: true})
      : rest.call(request.path, fields, {raw, body}));
  }

  async getFileLimits(options) {
    checkOptions(options, {});
    const reply = await this.fileCall(() => this.session.fileLimits(), "fileGetLimits");
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
    body.append("file", file, file.name ?? "file");
    const reply = await this.fileCall(() => this.session.uploadFile(o.description || null), "fileUpload", {}, body);
    if (reply.statusCode !== 0) { this.plugin.publish("error", reply); throw rejection(reasonOf(reply), reply); }
    if (!this.transport.pushes) this.pollOnce();
    return reply;
  }

  async downloadFile(options) {
    const o = checkOptions(options, {fileId: "string"}, ["fileId"]);
    const response = await this.fileCall(() => this.session.downloadFile(o.fileId), "fileDownload",
                                         this.fileEndpoint().ntf ? {fileId: o.fileId} : {}, null, true);
    if (!(response instanceof Response)) throw rejection(reasonOf(response), response);
    const blob = await response.blob();
    const name = /filename\*=UTF-8''([^;]+)/.exec(response.headers.get("Content-Disposition") ?? "")?.[1];
    return {fileId: o.fileId, fileName: name ? decodeURIComponent(name) : "", contentType: blob.type, size: blob.size, blob};
  }

  async deleteFile(options) {
    const o = checkOptions(options, {fileId: "string"}, ["fileId"]);
    const reply = await this.fileCall(() => this.session.deleteFile(o.fileId), "fileDelete",
                                      this.fileEndpoint().ntf ? {fileId: o.fileId} : {});
    if (reply.statusCode !== 0) throw rejection(reasonOf(reply), reply);
    return reply;
  }
}

function reasonOf(reply) {
  const errors = reply.errors ?? [];
  if (errors.length) return errors.map((e) => e.advice ? `${e.code}: ${e.advice}` : String(e.code)).join("; ");
  return `server error (statusCode ${reply.statusCode})`;
}
