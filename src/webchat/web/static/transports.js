// How WebChatService reaches the chat server: GMS REST (fetch, form-encoded) or CometD (the
// official client: WebSocket, falling back to long-polling). Each carries a request the pure
// session built and hands back the chat response; a failure to reach the server at all is the
// service's transportError.

export class RestTransport {
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
  call(path, fields, options = {}) {
    return this.post(this.url(path), fields, options);
  }
  // POST to url; `bare` leaves out the chat API's headers (the chat-ntf side door takes none).
  async post(url, fields, {raw = false, body = null, bare = false} = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.service.config.ajaxTimeout);
    const form = body ? {} : {"Content-Type": "application/x-www-form-urlencoded"};
    let response;
    try {
      response = await fetch(url, {
        method: "POST", signal: controller.signal,
        credentials: this.service.config.xhrFields?.withCredentials ? "include" : "same-origin",
        headers: bare ? form : this.headers(form),
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

export class CometdTransport {
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
      // The connection itself (the original's disconnected / reconnected): a connect that
      // fails for want of a network, then the first that gets through again. An unknown
      // client is the server having lost us, which the re-handshake above takes care of.
      this.cometd.addListener("/meta/connect", (reply) => {
        if (this.cometd.isDisconnected()) return;
        if (reply.successful === true) this.service.onLink(true);
        else if (reply.error !== "402::Unknown client") this.service.onLink(false);
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
      try {
        return await Promise.race([startedP, new Promise((_, reject) => setTimeout(
          () => reject(this.service.transportError("requestChat over CometD: timed out")),
          Math.max(this.service.config.ajaxTimeout, 10000)))]);
      } finally {
        this.started = null;  // a late reply is then a push, for a session no longer starting
      }
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
