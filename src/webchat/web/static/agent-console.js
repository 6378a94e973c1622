// Agent console: log in, go ready, see the queue with each chat's userData, accept offers, work
// several chats in tabs (transcript, typing both ways, end, transfer). Talks to /agent/v1 (REST)
// and its WebSocket event stream. Customer text is always inserted as text, never as HTML.
// The bearer token has a lifetime: the console swaps it for a new one half way through
// (POST /refresh), and goes back to the login form when the server no longer takes it.

import {el} from "./dom.js";
import {direction, loadStrings, translate} from "./strings.js";

const API = "/agent/v1";
const TOKEN_KEY = "webchat.agent.token";
const REFRESH_KEY = "webchat.agent.refreshAt";  // when (ms since the epoch) to swap the token
const TOKEN_GONE = 4401;  // the event stream's close code once its token is revoked or expired
const LANG_KEY = "webchat.agent.lang";
const $ = (id) => document.getElementById(id);

// The console's language: ?lang= (kept for the next visit), else the last one chosen, else the
// browser's. Its strings come from the same catalogs as the widget's ("console" entries).
function consoleLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked) localStorage.setItem(LANG_KEY, asked);
  return asked || localStorage.getItem(LANG_KEY) || navigator.language || "en";
}

let strings = {};
const t = (key, params) => translate(strings, key, params);

async function localize() {
  const lang = consoleLanguage();
  strings = await loadStrings("console", lang, null);
  document.documentElement.lang = lang;
  document.documentElement.dir = direction(lang);
  document.title = t("Title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
}

// A chat's userData as the agent reads it, in the queue and above the chat: the customer's own
// keys first, then the page context the customer's WebChatService adds (_genesys_url, the
// page title, browser...), and no empty values (a page without a referrer, say): they say
// nothing. Everything is shown as text.
function userDataEntries(userData) {
  const entries = Object.entries(userData ?? {}).filter(([, v]) => v !== "" && v != null);
  const context = ([key]) => key.startsWith("_genesys_");
  return [...entries.filter((e) => !context(e)), ...entries.filter(context)];
}

class AgentConsole {
  constructor() {
    this.token = sessionStorage.getItem(TOKEN_KEY);
    this.chats = new Map();  // chatId -> {tab, panel, log, typing, input, endButton, meta, next, ended}
    this.closed = new Set();  // chats whose tab the agent closed: late events do not reopen them
    this.opening = new Map();  // chatId -> promise of its panel
    this.current = null;
    this.socket = null;
    this.writes = new Map();  // id of a write sent on the event stream -> {resolve, reject}
    this.nextWrite = 1;
    this.typingTimers = new Map();
    this.baseTitle = document.title;
    this.refreshTimer = null;
    $("login").addEventListener("submit", (e) => this.login(e));
    $("ready").addEventListener("change", () => this.setReady($("ready").checked));
    $("logout").addEventListener("click", () => this.logout());
    if (this.token) {
      this.scheduleRefresh(Number(sessionStorage.getItem(REFRESH_KEY) ?? 0));
      this.start().catch(() => this.showLogin());
    }
  }

  async call(method, path, body) {
    const response = await fetch(API + path, {
      method, headers: {"Authorization": `Bearer ${this.token}`,
                        ...(body ? {"Content-Type": "application/json"} : {})},
      body: body ? JSON.stringify(body) : undefined});
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 && this.token) this.showLogin();  // the token is gone
    if (!response.ok) throw new Error(data.error?.message ?? `HTTP ${response.status}`);
    return data;
  }

  // A chat write (send, typing, end...): on the event stream while it is open, which spares an
  // HTTP request per message and is answered in order with the events; else the REST call.
  // Either way the server runs the same command and answers the same status and error.
  write(op, chatId, body) {
    const socket = this.socket;
    if (socket?.readyState !== WebSocket.OPEN) {
      return this.call("POST", `/chats/${encodeURIComponent(chatId)}/${op}`, body);
    }
    const id = this.nextWrite++;
    return new Promise((resolve, reject) => {
      this.writes.set(id, {resolve, reject});
      socket.send(JSON.stringify({id, op, chatId, ...(body ? {body} : {})}));
    });
  }

  replied(reply) {
    const pending = this.writes.get(reply.id);
    if (!pending) return;
    this.writes.delete(reply.id);
    if (reply.ok) return pending.resolve(reply.result ?? {ok: true});
    if (reply.status === 401 && this.token) this.showLogin();  // the token is gone
    pending.reject(new Error(reply.error?.message ?? `HTTP ${reply.status}`));
  }

  // The stream closed with writes unanswered: they may or may not have been done.
  abandonWrites() {
    for (const {reject} of this.writes.values()) reject(new Error("the connection closed before the server answered"));
    this.writes.clear();
  }

  // A login or refresh reply: keep its token and swap it half way through its life.
  takeToken(data) {
    this.token = data.token;
    sessionStorage.setItem(TOKEN_KEY, this.token);
    const refreshAt = Date.now() + data.expiresInS * 500;
    sessionStorage.setItem(REFRESH_KEY, String(refreshAt));
    this.scheduleRefresh(refreshAt);
  }

  scheduleRefresh(at) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), Math.max(0, at - Date.now()));
  }

  async refresh() {
    try {
      this.takeToken(await this.call("POST", "/refresh"));
    } catch {
      if (this.token) this.scheduleRefresh(Date.now() + 5000);  // the server was away: again
    }
  }

  showLogin() {
    clearTimeout(this.refreshTimer);
    this.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(REFRESH_KEY);
    this.socket?.close();
    this.socket = null;
    $("console").hidden = true;
    $("login").hidden = false;
  }

  async login(event) {
    event.preventDefault();
    const form = Object.fromEntries(new FormData($("login")));
    const response = await fetch(`${API}/login`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                  body: JSON.stringify(form)});
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("login").querySelector(".error").textContent = data.error?.message ?? t("LoginFailed");
      return;
    }
    this.takeToken(data);
    await this.start();
  }

  async logout() {
    await this.call("POST", "/logout").catch(() => {});
    this.showLogin();
  }

  async start() {
    const me = await this.call("GET", "/me");
    $("login").hidden = true;
    $("console").hidden = false;
    $("me").textContent = me.nickname;
    this.showReady(me.ready);  // an agent may log in already ready (another tab, a reload)
    this.connect();
    await this.refreshQueue();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${API}/events?token=${encodeURIComponent(this.token)}`);
    this.socket = socket;
    socket.onmessage = (e) => this.onEvent(JSON.parse(e.data));
    socket.onclose = async (e) => {
      if (this.socket === socket) this.abandonWrites();
      if (this.socket !== socket || !this.token) return;
      if (e.code === TOKEN_GONE) await this.refresh();  // a new token, or the login form
      if (this.socket === socket && this.token) setTimeout(() => this.connect(), 1000);
    };
  }

  async setReady(ready) {
    // Going ready is the moment to ask for desktop notifications: a click, as browsers require,
    // and the moment new chats start to matter.
    if (ready && window.Notification?.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    const me = await this.call("POST", "/state", {ready});
    this.showReady(me.ready);
  }

  showReady(ready) {
    $("ready").checked = ready;
    $("status").textContent = t(ready ? "ReadyForChats" : "NotReady");
  }

  // The first page of the queue (what the list shows) and how many wait in all.
  async refreshQueue() {
    const {chats, total} = await this.call("GET", "/queue");
    const list = $("queue");
    list.replaceChildren(...chats.map((c) => this.queueItem(c)));
    if (total > chats.length) list.append(el("li", {class: "hint", text: t("QueueMore", {count: total - chats.length})}));
    $("queue-count").textContent = String(total);
    $("queue-count").classList.toggle("empty", total === 0);
    $("queue-empty").hidden = total > 0;
  }

  queueItem(chat) {
    const data = el("dl", {});
    const fields = {...chat.customer, ...Object.fromEntries(userDataEntries(chat.userData))};
    for (const [key, value] of Object.entries(fields)) data.append(el("dt", {text: key}), el("dd", {text: String(value)}));
    return el("li", {"data-chat": chat.chatId},
      el("strong", {text: chat.customer?.nickname || `${chat.customer?.firstName ?? ""} ${chat.customer?.lastName ?? ""}`}),
      data,
      el("button", {type: "button", text: t("Accept"), onclick: () => this.accept(chat.chatId)}));
  }

  async onEvent(event) {
    switch (event.type) {
      case "reply":
        this.replied(event);
        break;
      case "hello": {
        // Sent on every (re)connect. Chats merely offered to us wait in the queue list until
        // accepted; chats already on screen fetch what was said while the stream was down, and
        // so do those that ended or left us meanwhile (they are no longer listed).
        const listed = new Set(event.chats.map((c) => c.chatId));
        for (const chat of event.chats) {
          if (this.chats.has(chat.chatId)) await this.catchUp(chat.chatId);
          else if (chat.status !== "queued" && !this.closed.has(chat.chatId)) await this.openChat(chat.chatId, null);
        }
        for (const [id, chat] of this.chats) if (!chat.ended && !listed.has(id)) await this.catchUp(id);
        await this.refreshQueue();
        break;
      }
      case "offer":
        this.notify(t("NewChat", {name: event.chat.customer?.nickname ?? t("ACustomer")}));
        await this.refreshQueue();
        break;
      case "offerRevoked":
      case "queue":
        await this.refreshQueue();
        break;
      case "message":
        this.onMessage(event.chatId, event.message, event.chatEnded);
        break;
      case "userData": {
        const chat = this.chats.get(event.chatId);
        if (chat) chat.meta.textContent = this.describe(event.userData);
        break;
      }
      case "idle":
        this.notify(t("CustomerWaiting"));
        break;
    }
  }

  notify(text) {
    $("status").textContent = text;
    document.title = `● ${text}`;
    setTimeout(() => { document.title = this.baseTitle; }, 4000);
    if (window.Notification?.permission === "granted") new Notification(text);
  }

  describe(userData) {
    return userDataEntries(userData).map(([k, v]) => `${k}: ${v}`).join(" · ");
  }

  async accept(chatId) {
    try {
      // The tab is reserved now, so tabs keep the order the agent clicked in.
      await this.openChat(chatId, this.write("accept", chatId));
      await this.refreshQueue();
    } catch (e) {
      $("status").textContent = t("AcceptFailed", {error: e.message});
    }
  }

  openChat(chatId, detail) {
    // One panel per chat even when the accept reply and the first pushed event race here.
    if (!this.opening.has(chatId)) this.opening.set(chatId, this.buildChat(chatId, detail));
    return this.opening.get(chatId);
  }

  async buildChat(chatId, pendingDetail) {
    const log = el("div", {class: "log", role: "log", "aria-live": "polite"});
    const typing = el("div", {class: "typing", "aria-live": "polite"});
    const input = el("textarea", {"aria-label": t("Reply"), placeholder: t("TypeReply"),
                                  onkeydown: (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.send(chatId); } },
                                  oninput: () => this.typing(chatId)});
    const endButton = el("button", {type: "button", class: "secondary", text: t("End"), onclick: () => this.end(chatId)});
    const transferTo = el("input", {placeholder: t("TransferPlaceholder"), "aria-label": t("TransferTo"), size: 14});
    const meta = el("div", {class: "meta"});
    const panel = el("div", {class: "chat", role: "tabpanel", hidden: true, "data-chat": chatId},
      meta, log, typing,
      el("div", {class: "composer"}, input,
        el("button", {type: "button", text: t("Send"), onclick: () => this.send(chatId)}),
        endButton,
        transferTo,
        el("button", {type: "button", class: "secondary", text: t("Transfer"),
                      onclick: () => this.transfer(chatId, transferTo.value.trim())})));
    const tab = el("button", {type: "button", role: "tab", "aria-selected": "false", "data-chat": chatId,
                              text: chatId, onclick: () => this.select(chatId)});
    $("tabs").append(tab);
    $("panels").append(panel);
    let detail;
    try {
      detail = (await pendingDetail) ?? await this.call("GET", `/chats/${encodeURIComponent(chatId)}`);
    } catch (e) {
      tab.remove();
      panel.remove();
      this.opening.delete(chatId);
      throw e;
    }
    tab.textContent = detail.customer?.nickname ?? chatId;
    meta.textContent = this.describe(detail.userData);
    this.chats.set(chatId, {tab, panel, log, typing, input, endButton, meta, next: 1, ended: false});
    for (const message of detail.messages ?? []) this.onMessage(chatId, message, false);
    if (detail.status === "ended") this.finish(chatId, "Ended");
    if (!this.current) this.select(chatId);
  }

  // What was said in a chat after the last event shown, fetched after the stream was down.
  async catchUp(chatId) {
    const chat = this.chats.get(chatId);
    try {
      const detail = await this.call("GET", `/chats/${encodeURIComponent(chatId)}?from=${chat.next}`);
      for (const message of detail.messages ?? []) this.onMessage(chatId, message, false);
      if (detail.status === "ended") this.finish(chatId, "Ended");
    } catch (e) {
      $("status").textContent = t("NoLongerYours", {chat: chatId, error: e.message});
      this.finish(chatId, "Closed");
    }
  }

  // The chat is over for this agent: nothing more can be sent, and its tab can be closed.
  finish(chatId, why) {
    const chat = this.chats.get(chatId);
    if (!chat || chat.ended) return;
    chat.ended = true;
    chat.tab.textContent += ` (${t(why)})`;
    for (const control of chat.panel.querySelectorAll(".composer :is(textarea, input, button)")) {
      control.disabled = control !== chat.endButton;  // reply, send and transfer are over
    }
    chat.endButton.textContent = t("CloseTab");
  }

  closeTab(chatId) {
    const chat = this.chats.get(chatId);
    this.closed.add(chatId);
    this.chats.delete(chatId);
    this.opening.delete(chatId);
    chat.tab.remove();
    chat.panel.remove();
    if (this.current === chatId) {
      this.current = null;
      const next = this.chats.keys().next();
      if (!next.done) this.select(next.value);
    }
  }

  select(chatId) {
    this.current = chatId;
    for (const [id, chat] of this.chats) {
      const on = id === chatId;
      chat.tab.setAttribute("aria-selected", String(on));
      chat.panel.hidden = !on;
      if (on) { chat.tab.classList.remove("attention"); chat.input.focus(); }
    }
  }

  onMessage(chatId, message, ended) {
    const chat = this.chats.get(chatId);
    if (!chat) {
      if (!this.closed.has(chatId)) this.openChat(chatId, null).then(() => this.onMessage(chatId, message, ended), () => {});
      return;
    }
    if (message.index && message.index < chat.next) return;  // already shown
    chat.next = Math.max(chat.next, (message.index ?? 0) + 1);
    const from = message.from ?? {};
    if (message.type === "TypingStarted" || message.type === "TypingStopped") {
      if (from.type === "Client") {
        chat.typing.textContent = message.type === "TypingStarted"
          ? t(message.text ? "TypingPreview" : "Typing", {name: from.nickname, text: message.text}) : "";
      }
      return;
    }
    let line;
    if (message.type === "Message") {
      line = el("div", {class: "line", "data-index": message.index, dir: "auto"},
        el("span", {class: "who", text: `${from.nickname}:`}), document.createTextNode(String(message.text ?? "")));
      if (from.type === "Client") chat.typing.textContent = "";
    } else if (message.type === "FileUploaded") {
      const name = String(message.userData?.["file-name"] ?? t("AFile"));
      line = el("div", {class: "line system", "data-index": message.index, text: `${t("SentFile", {name: from.nickname, file: name})} `},
        el("button", {type: "button", class: "link", text: t("Download"),
                      onclick: () => this.download(chatId, String(message.text), name)}));
    } else {
      const key = {ParticipantJoined: "Joined", ParticipantLeft: "Left"}[message.type];
      const text = key ? t(key, {name: from.nickname}) : String(message.text ?? message.type);
      line = el("div", {class: "line system", "data-index": message.index, dir: "auto", text});
    }
    chat.log.append(line);
    chat.log.scrollTop = chat.log.scrollHeight;
    if (chatId !== this.current && from.type === "Client") chat.tab.classList.add("attention");
    if (ended) this.finish(chatId, "Ended");
  }

  // Files need the agent's token, so they are fetched here and handed to the browser as a blob.
  async download(chatId, fileId, name) {
    const response = await fetch(`${API}/chats/${encodeURIComponent(chatId)}/files/${encodeURIComponent(fileId)}`,
                                 {headers: {"Authorization": `Bearer ${this.token}`}});
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      $("status").textContent = t("DownloadFailed", {error: data.error?.message ?? `HTTP ${response.status}`});
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", {href: url, download: name, hidden: true});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  async send(chatId) {
    const chat = this.chats.get(chatId);
    const text = chat.input.value;
    if (!text.trim() || chat.ended) return;
    chat.input.value = "";
    try {
      await this.write("send", chatId, {text});
      this.typingOff(chatId);
    } catch (e) {
      chat.input.value = text;
      $("status").textContent = t("NotSent", {error: e.message});
    }
  }

  typing(chatId) {
    if (!this.typingTimers.has(chatId)) {
      this.write("typing", chatId, {typing: true}).catch(() => {});
    } else {
      clearTimeout(this.typingTimers.get(chatId));
    }
    this.typingTimers.set(chatId, setTimeout(() => this.typingOff(chatId), 3000));
  }

  typingOff(chatId) {
    if (!this.typingTimers.has(chatId)) return;
    clearTimeout(this.typingTimers.get(chatId));
    this.typingTimers.delete(chatId);
    this.write("typing", chatId, {typing: false}).catch(() => {});
  }

  async end(chatId) {
    if (this.chats.get(chatId)?.ended) { this.closeTab(chatId); return; }
    await this.write("end", chatId).catch((e) => { $("status").textContent = e.message; });
  }

  async transfer(chatId, toAgent) {
    try {
      await this.write("transfer", chatId, toAgent ? {toAgent} : {});
      this.finish(chatId, "Transferred");
    } catch (e) {
      $("status").textContent = t("TransferFailed", {error: e.message});
    }
  }
}

localize().finally(() => { window.agentConsole = new AgentConsole(); });
