// The client side of one GMS chat, as a pure state machine: no DOM, no fetch, no timers, no
// storage. The browser's twin of src/webchat/protocol/gms/session.py; both are driven through
// the same cases (tests/fixtures/session/*.json: tests/test_session.py there, tests/node/ here),
// so a rule changed on one side only fails a test.
//
// Callers ask it for a request ({operation, path, fields}), carry it over any transport, and
// feed the decoded chat response back through receive(), which returns what happened: a list
// of events {kind, ...} (started, messages, joined, left, typing, fileUploaded, ended, error,
// gap). Transcript events are deduplicated by index, so replayed or overlapping refreshes
// never show a message twice.

export const NO_SESSION = "There is no active chat session";
export const ALREADY_ACTIVE = "There is already an active chat session";

export class SessionError extends Error {}

// The request a pushed (CometD) chat response answers: it covers no transcript position.
export const PUSH = Object.freeze({operation: "push", path: "", fields: {}});
// Pushes held while a start's reply is awaited; past them the last is replaced by a gap, so
// the session asks for the transcript once it has its chat.
export const MAX_EARLY_PUSHES = 64;

const STAFF = new Set(["Agent", "Supervisor"]);
// What a typing agent sends that ends the typing, as the original reads it.
const ENDS_TYPING = new Set(["Message", "PushUrl", "Notice"]);

export class ChatSession {
  constructor() {
    this.state = "idle";  // idle, starting, active, ended
    this.chatId = null;
    this.userId = null;
    this.secureKey = null;
    this.alias = null;
    this.nextPosition = 1;
    this.selfId = null;
    this.participants = new Map();
    this.transcript = [];
    // Events with a smaller index were shown before a restore: reported as restoring.
    this.restoringBelow = 0;
    this.seenUnindexed = new Set();
    this.early = [];  // pushes that came before the start's reply (see push); null: dropped
  }

  // Re-attach to an existing chat (after a reload) from its saved identity.
  static resume(chatId, userId, secureKey, alias, nextPosition = 1, restoringBelow = 0) {
    const s = new ChatSession();
    Object.assign(s, {state: "active", chatId, userId, secureKey, alias,
                      nextPosition: Math.max(1, nextPosition), restoringBelow});
    return s;
  }

  get active() { return this.state === "starting" || this.state === "active"; }

  sessionData() {
    return {sessionID: this.chatId, alias: this.alias, secureKey: this.secureKey,
            userId: this.userId, transcriptPosition: this.nextPosition};
  }

  // Non-client participants keyed by participantId, as getAgents returns them.
  agents() {
    const out = {};
    for (const [id, p] of this.participants) {
      if (p.type !== "Client" && p.joined) out[String(id)] = agentEntry(p);
    }
    return out;
  }

  // A transcript event the way the original's events and getTranscript carry it: the event as
  // the server sent it, plus the original's names for its parts (from.id, from.name,
  // timestamp), restoring (shown before a restore), isTyping on typing events and fileDetails
  // on file events. Sites written for the original read those; nothing of the server's event
  // is left out.
  originalMessage(message) {
    const sender = message.from ?? {};
    const out = {...message, from: {...sender, id: sender.participantId, name: sender.nickname},
                 timestamp: message.utcTime, restoring: this.restoring(message)};
    if (message.type === "TypingStarted" || message.type === "TypingStopped") {
      out.isTyping = message.type === "TypingStarted";
    } else if (message.type === "FileUploaded") {
      out.fileDetails = message.userData ?? {};
    }
    return out;
  }

  connectedAgents() {
    return [...this.participants.values()].filter((p) => p.connected && p.type === "Agent").length;
  }

  // ---- requests ----------------------------------------------------------------------------

  requestChat(form) {
    if (this.state !== "idle") throw new SessionError(ALREADY_ACTIVE);
    this.state = "starting";
    return {operation: "requestChat", path: "", fields: {...form}};
  }

  refresh() {
    return this.call("refresh", "refresh", {transcriptPosition: String(this.nextPosition)});
  }

  sendMessage(text, messageType = null) {
    const fields = {message: text, transcriptPosition: String(this.nextPosition)};
    if (messageType) fields.messageType = messageType;
    return this.call("send", "send", fields);
  }

  startTyping(preview = null) {
    return this.call("startTyping", "startTyping", preview ? {message: preview} : {});
  }

  stopTyping() { return this.call("stopTyping", "stopTyping", {}); }

  disconnect() {
    return this.call("disconnect", "disconnect", {transcriptPosition: String(this.nextPosition)});
  }

  customNotice(text = null) {
    return this.call("customNotice", "customNotice", text ? {message: text} : {});
  }

  updateData(userData) {
    const fields = {};
    for (const [k, v] of Object.entries(userData)) fields[`userData[${k}]`] = v;
    return this.call("updateData", "updateData", fields);
  }

  pushUrl(url) { return this.call("pushUrl", "pushUrl", {pushUrl: url}); }

  fileLimits() { return this.call("fileLimits", "file/limits", {}); }

  // The form fields of an upload; the transport adds the file part.
  uploadFile(description = null) {
    return this.call("fileUpload", "file", description ? {"userData[file-description]": description} : {});
  }

  // Also after the chat ended: its files stay readable (transcript review).
  downloadFile(fileId) {
    return this.call("fileDownload", `file/${encodeURIComponent(fileId)}/download`, {}, true);
  }

  deleteFile(fileId) {
    return this.call("fileDelete", `file/${encodeURIComponent(fileId)}/delete`, {});
  }

  call(operation, suffix, extra, endedOk = false) {
    const usable = endedOk ? ["active", "ended"] : ["active"];
    if (!usable.includes(this.state) || this.chatId === null) throw new SessionError(NO_SESSION);
    const fields = {userId: this.userId ?? "", secureKey: this.secureKey ?? "",
                    alias: this.alias ?? "", ...extra};
    return {operation, path: `/${encodeURIComponent(this.chatId)}/${suffix}`, fields};
  }

  // ---- replies -----------------------------------------------------------------------------

  // The request-chat call failed before any reply: the session may be started again.
  failStart() {
    if (this.state === "starting") {
      this.state = "idle";
      this.early = [];
    }
  }

  // A chat response the server pushed (CometD): applied, unless it leaves a gap. A push can
  // overtake the start's reply (over long-polling they come on two requests' answers, in
  // either order): applied before it, it would be a gap the session cannot yet ask about and
  // the reply's nextPosition would skip it, so it is held and applied after the reply.
  push(response) {
    if (this.state === "idle") return [];  // no chat: a late push of a start given up on
    if (this.state === "starting") {
      if (this.early.length < MAX_EARLY_PUSHES) this.early.push(response);
      else this.early[this.early.length - 1] = null;
      return [];
    }
    const indexes = (response.messages ?? []).map((m) => m.index).filter(Boolean);
    if (indexes.length && Math.min(...indexes) > this.nextPosition) return [{kind: "gap"}];
    return this.receive(PUSH, response);
  }

  // Apply the reply to request. nextPosition is trusted only when the request asked for the
  // transcript from a position we had reached: otherwise the reply says how long the
  // transcript is, not that we have seen it.
  receive(request, response) {
    const operation = request.operation;
    if (response.statusCode !== 0) {
      if (operation === "requestChat") this.failStart();
      return [{kind: "error", operation, response}];
    }
    const events = [];
    if (operation === "requestChat") {
      if (this.state !== "starting") return [];
      Object.assign(this, {chatId: response.chatId ?? null, userId: response.userId ?? null,
                           secureKey: response.secureKey ?? null, alias: response.alias ?? null,
                           state: "active"});
      events.push({kind: "started", response});
    }
    const raw = request.fields.transcriptPosition;
    const covered = operation === "requestChat"
      || (typeof raw === "string" && /^\d+$/.test(raw) && Number(raw) <= this.nextPosition);
    events.push(...this.takeMessages(response, covered));
    if (response.chatEnded && this.state === "active") {
      this.state = "ended";
      events.push({kind: "ended"});
    }
    if (operation === "requestChat") {
      const early = this.early;
      this.early = [];
      for (const pushed of early) {
        if (pushed === null) events.push({kind: "gap"});
        // Not an earlier start's chat (its pushes may still come after a timeout).
        else if (pushed.chatId == null || pushed.chatId === this.chatId) events.push(...this.push(pushed));
      }
    }
    return events;
  }

  takeMessages(response, covered) {
    const fresh = [];
    for (const msg of [...(response.messages ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0))) {
      if (msg.index) {
        if (msg.index < this.nextPosition) continue;  // already delivered: replayed or overlapping
        this.nextPosition = msg.index + 1;
      } else {
        // Old GMS without fast refresh sends no index; dedupe on content instead.
        const key = JSON.stringify([msg.from?.participantId, msg.type, msg.utcTime, msg.text ?? null]);
        if (this.seenUnindexed.has(key)) continue;
        this.seenUnindexed.add(key);
      }
      fresh.push(msg);
    }
    if (covered && response.nextPosition && response.nextPosition > this.nextPosition) {
      this.nextPosition = response.nextPosition;
    }
    if (!fresh.length) return [];
    this.transcript.push(...fresh);
    const events = [];
    for (const msg of fresh) {
      const restoring = this.restoring(msg);
      const last = events.at(-1);
      if (last && last.restoring === restoring) last.messages.push(msg);
      else events.push({kind: "messages", messages: [msg], restoring});
    }
    for (const msg of fresh) events.push(...this.interpret(msg));
    return events;
  }

  restoring(msg) { return (msg.index ?? 0) > 0 && msg.index < this.restoringBelow; }

  interpret(msg) {
    const sender = msg.from ?? {};
    let info = this.participants.get(sender.participantId);
    if (!info) {
      info = {participantId: sender.participantId, name: sender.nickname, type: sender.type,
              connected: false, joined: false, typing: false, connectedTime: null, disconnectedTime: null};
      this.participants.set(sender.participantId, info);
    }
    if (sender.nickname) info.name = sender.nickname;
    if (this.selfId === null && sender.type === "Client" && msg.type === "ParticipantJoined") {
      this.selfId = sender.participantId;
    }
    const isSelf = sender.participantId === this.selfId;
    const staff = !isSelf && STAFF.has(sender.type);
    if (msg.type === "ParticipantJoined") {
      Object.assign(info, {connected: true, joined: true, connectedTime: msg.utcTime, disconnectedTime: null});
      return [{kind: "joined", message: msg, participant: info, isSelf}];
    }
    if (msg.type === "ParticipantLeft") {
      Object.assign(info, {connected: false, disconnectedTime: msg.utcTime});
      return [{kind: "left", message: msg, participant: info, isSelf}, ...stoppedTyping(msg, info)];
    }
    // An agent's typing also while restoring, as the original reports it: the replay ends on
    // the typing state the agent is in now. A typing agent who sends a message, a URL or a
    // notice, or leaves, has stopped too (the event is then that message).
    if ((msg.type === "TypingStarted" || msg.type === "TypingStopped") && staff) {
      info.typing = msg.type === "TypingStarted";
      return [{kind: "typing", message: msg, participant: info, started: info.typing}];
    }
    if (ENDS_TYPING.has(msg.type) && staff) return stoppedTyping(msg, info);
    if (msg.type === "FileUploaded" && !this.restoring(msg)) return [{kind: "fileUploaded", message: msg}];
    return [];
  }
}

function stoppedTyping(msg, info) {
  if (!info.typing) return [];
  info.typing = false;
  return [{kind: "typing", message: msg, participant: info, started: false}];
}

// An entry of getAgents and of the connection events' agents: ours (type, participantId) and
// the original's (supervisor, connectedTime, disconnectedTime, false while connected).
function agentEntry(p) {
  return {name: p.name, type: p.type, connected: p.connected, participantId: p.participantId,
          supervisor: p.type === "Supervisor", connectedTime: p.connectedTime,
          disconnectedTime: p.disconnectedTime || false};
}
