// Where the page keeps the chat's keys so a reload restores it: localStorage under
// stateStorageKey, or the site's own async.getSessionData / setSessionData.

export class SessionStore {
  constructor(storage, config) {
    this.storage = storage;
    this.config = config;  // a function: the service's current configuration
  }

  save(data) {
    const c = this.config();
    if (c.async.setSessionData) c.async.setSessionData(data);
    else this.storage?.setItem(c.stateStorageKey, JSON.stringify(data));
  }

  forget() {
    const c = this.config();
    if (c.async.setSessionData) c.async.setSessionData(null);
    else this.storage?.removeItem(c.stateStorageKey);
  }

  // The saved chat, or null when there is none or it is not one we could have saved.
  load() {
    const c = this.config();
    let data;
    try {
      data = c.async.getSessionData ? c.async.getSessionData()
        : JSON.parse(this.storage?.getItem(c.stateStorageKey) ?? "null");
    } catch { return null; }
    const ok = data && ["sessionID", "secureKey", "userId"].every((k) => typeof data[k] === "string" && data[k])
      && typeof data.alias === "string" && Number.isInteger(data.transcriptPosition) && Number.isInteger(data.savedAt);
    return ok ? data : null;
  }
}
