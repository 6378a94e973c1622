// A CXBus-compatible bus for the browser: plugins own namespaces; commands return promises
// that resolve or reject with a reason; events go to subscribers in publish order.
// Like the original, command() also answers .done()/.fail() (jQuery-deferred style), a
// command handler may settle e.deferred instead of returning, subscribers get
// {event, data, publisher, time}, names may carry the "cx.plugin." root, and every plugin
// republishes "ready". The rest of the original's API: registerEvents (the registry),
// republish (late subscribers still get the last one), publishDirect (no debug line unless
// someone listens), before/after hooks, configure({debug, pluginsPath}) and loadPlugin.
// Loading this module defines window.CXBus, as the original's cxbus script does.

export class CommandPromise extends Promise {
  static get [Symbol.species]() { return Promise; }
  done(fn) { this.then(fn, () => {}); return this; }
  fail(fn) { this.catch(fn); return this; }
}

const ROOT = "cx.plugin.";
// The original's plugin file names (CXBus.loadPlugin("webchat")) and their namespaces;
// "widgets-core" is this bus and what comes with it, so loading it resolves at once.
const ALIASES = {"webchat": "WebChat", "webchat-service": "WebChatService"};
const CORE = "widgets-core";
const LOAD_TIMEOUT_MS = 10_000;
// What a command handler may read besides its options, as the original's event object has.
const COMMAND_FIELDS = ["deferred", "data", "commander", "command", "time"];

function normal(name) {
  return typeof name === "string" && name.startsWith(ROOT) ? name.slice(ROOT.length) : name;
}

function split(name) {
  name = normal(name);
  const dot = typeof name === "string" ? name.indexOf(".") : -1;
  if (dot <= 0 || dot === name.length - 1) throw new Error(`invalid name ${JSON.stringify(name)}`);
  return [name.slice(0, dot), name.slice(dot + 1)];
}

function matches(pattern, event) {
  if (pattern === "*" || pattern === event) return true;
  return pattern.endsWith(".*") && event.startsWith(pattern.slice(0, -1));
}

export class Plugin {
  constructor(bus, name) {
    this.bus = bus;
    this.name = name;
    this.isReady = false;
    this.commands = new Map();
    this.events = new Set();
  }
  registerCommand(command, handler) {
    if (this.commands.has(command)) throw new Error(`${this.name}.${command} is already registered`);
    this.commands.set(command, handler);
    this.bus._debug(`${this.name} registered the command ${command}`);
    return true;
  }
  registerEvents(names) {
    for (const name of typeof names === "string" ? [names] : [...(names ?? [])]) {
      if (typeof name !== "string" || !name || name.includes(".") || name === "*") {
        throw new Error(`invalid event name ${JSON.stringify(name)}`);
      }
      this.events.add(name);
    }
    this.bus._debug(`${this.name} registered the events ${[...this.events].join(", ")}`);
    return true;
  }
  namespace() { return this.name; }
  publish(event, data) { return this.bus.publish(`${this.name}.${event}`, data, this.name); }
  republish(event, data) {
    return this.bus.publish(`${this.name}.${event}`, data, this.name, {retain: true});
  }
  publishDirect(event, data) {
    return this.bus.publish(`${this.name}.${event}`, data, this.name, {quiet: true});
  }
  ready() {
    if (this.isReady) return;
    this.isReady = true;
    this.bus._announceReady(this.name);
    this.republish("ready");
  }
  command(name, options) { return this.bus.command(name, options, this.name); }
  subscribe(pattern, handler) { return this.bus.subscribe(pattern, handler, this.name); }
  unsubscribe(subscription) { return this.bus.unsubscribe(subscription, this.name); }
  before(command, hook) { this.bus.before(command, hook); }
  after(command, hook) { this.bus.after(command, hook); }
}

export class Bus {
  constructor() {
    this.plugins = new Map();
    this.subs = new Map();
    this.hooks = new Map();
    this.afterHooks = new Map();
    this.retained = new Map();
    this.waiters = new Map();
    this.nextId = 1;
    this.debug = false;
    this.pluginsPath = "";
    this.loadTimeout = LOAD_TIMEOUT_MS;
  }

  // The original's CXBus.configure: debug logs every command, event and subscription to the
  // console; pluginsPath is where loadPlugin finds a plugin's module (`${path}${name}.js`).
  configure(options) {
    if (!options || typeof options !== "object") throw new Error("configure takes an object");
    if (options.debug !== undefined) {
      if (typeof options.debug !== "boolean") throw new Error("debug must be true or false");
      this.debug = options.debug;
    }
    if (typeof options.pluginsPath === "string") this.pluginsPath = options.pluginsPath;
    return true;
  }

  _debug(line) { if (this.debug) console.log(`CXBus: ${line}`); }

  registry() {
    const out = {};
    for (const [name, plugin] of this.plugins) {
      out[name] = {events: [...plugin.events], commands: [...plugin.commands.keys()]};
    }
    return out;
  }

  // Returns the plugin's interface, or false when the name is taken (as the original does).
  registerPlugin(name) {
    if (!name || typeof name !== "string" || name.includes(".") || name === "*") {
      throw new Error(`cannot register plugin ${JSON.stringify(name)}`);
    }
    if (this.plugins.has(name)) {
      console.warn(`CXBus: cannot register plugin ${name}: the name is already taken`);
      return false;
    }
    const plugin = new Plugin(this, name);
    this.plugins.set(name, plugin);
    this._debug(`plugin ${name} registered`);
    return plugin;
  }

  _announceReady(name) {
    for (const wake of this.waiters.get(name) ?? []) wake();
    this.waiters.delete(name);
  }

  _whenReady(namespace, what) {
    if (this.plugins.get(namespace)?.isReady) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (!this.waiters.has(namespace)) this.waiters.set(namespace, []);
      const waiting = this.waiters.get(namespace);
      const wake = () => { clearTimeout(timer); resolve(); };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(wake), 1);
        reject(reason(`plugin ${namespace} was not loaded within ${this.loadTimeout / 1000} s`, what));
      }, this.loadTimeout);
      waiting.push(wake);
    });
  }

  // Resolves once the plugin is on the bus and ready. `name` is a namespace or one of the
  // original's file names; with pluginsPath set, a plugin not yet here is imported first
  // (and a module that registers no plugin of that name resolves once it has run).
  loadPlugin(name) {
    return new CommandPromise((resolve, reject) => this._load(name).then(resolve, reject));
  }

  async _load(name) {
    const what = `loadPlugin ${name}`;
    if (typeof name !== "string" || !name) throw reason("a plugin name is needed", what);
    if (name === CORE) return;
    const namespace = ALIASES[name] ?? name;
    if (!this.plugins.has(namespace) && this.pluginsPath) {
      const url = new URL(`${encodeURIComponent(name)}.js`, new URL(this.pluginsPath, document.baseURI));
      try {
        await import(url.href);
      } catch (e) {
        throw reason(`plugin ${name} could not be loaded from ${url.href}`, what);
      }
      if (!this.plugins.has(namespace)) return;
    }
    await this._whenReady(namespace, what);
  }

  command(name, options, commander = "") {
    return new CommandPromise((resolve, reject) => {
      this._run(name, options, commander).then(resolve, reject);
    });
  }

  async _run(name, options, commander) {
    let namespace, member;
    try { [namespace, member] = split(name); } catch (e) { throw reason(e.message, name); }
    name = `${namespace}.${member}`;
    this._debug(`${commander || "(page)"} called the command ${name}`);
    const plugin = this.plugins.get(namespace);
    if (!plugin || !plugin.commands.has(member)) throw reason("command not found", name);
    if (!plugin.isReady) throw reason(`plugin ${namespace} is not ready`, name);
    let opts = options ?? {};
    if (typeof opts !== "object" || Array.isArray(opts)) {
      throw reason(`options must be an object, not ${Array.isArray(opts) ? "array" : typeof opts}`, name);
    }
    for (const hook of this.hooks.get(name) ?? []) {
      const verdict = await hook({...opts});
      if (verdict === false) throw reason("rejected by a before-hook", name);
      if (verdict && typeof verdict === "object") opts = verdict;
    }
    let result;
    try {
      result = await invoke(plugin.commands.get(member), opts, name, commander);
    } catch (e) {
      this._debug(`${name} rejected: ${e?.reason ?? e}`);
      throw e;
    }
    for (const hook of this.afterHooks.get(name) ?? []) {
      try {
        await hook({...opts}, result);
      } catch (e) {
        console.error(`an after-hook of ${name} failed`, e);  // the command has happened
      }
    }
    return result;
  }

  before(command, hook) {
    split(command);
    command = normal(command);
    if (!this.hooks.has(command)) this.hooks.set(command, []);
    this.hooks.get(command).push(hook);
  }

  // hook(options, result) runs each time the command resolved, before its caller hears.
  after(command, hook) {
    split(command);
    command = normal(command);
    if (!this.afterHooks.has(command)) this.afterHooks.set(command, []);
    this.afterHooks.get(command).push(hook);
  }

  subscribe(pattern, handler, owner = "") {
    pattern = normal(pattern);
    if (pattern !== "*") {
      const [namespace, member] = split(pattern);
      this._checkDeclared(namespace, member, "subscribed to");
    }
    const id = this.nextId++;
    this.subs.set(id, {pattern, handler, owner});
    this._debug(`${owner || "(page)"} subscribed to ${pattern}`);
    for (const message of this.retained.values()) {
      if (!matches(pattern, message.event)) continue;
      setTimeout(() => { if (this.subs.has(id)) deliver(handler, message); }, 0);
    }
    return id;
  }

  // By the id subscribe returned; or by an event name or pattern, every subscription of
  // `owner` to it (the original's unsubscribe(name)). Returns whether any was dropped.
  unsubscribe(subscription, owner = "") {
    if (typeof subscription === "number") return this.subs.delete(subscription);
    const pattern = normal(subscription);
    let dropped = false;
    for (const [id, sub] of this.subs) {
      if (sub.pattern === pattern && sub.owner === owner) dropped = this.subs.delete(id);
    }
    this._debug(`${owner || "(page)"} unsubscribed from ${pattern}`);
    return dropped;
  }

  publish(event, data, publisher = "", {retain = false, quiet = false} = {}) {
    const [namespace, member] = split(event);
    event = `${namespace}.${member}`;
    const message = {event, data: data ?? {}, publisher, time: Date.now()};
    if (retain) {
      this.retained.delete(event);
      this.retained.set(event, message);
    }
    const targets = [...this.subs.values()].filter(({pattern}) => matches(pattern, event));
    if (!quiet || targets.length) {
      this._debug(`${publisher || "(page)"} published ${event}`);
      this._checkDeclared(namespace, member, "published");
    }
    for (const {handler} of targets) deliver(handler, message);
    return true;
  }

  _checkDeclared(namespace, member, what) {
    const plugin = this.plugins.get(namespace);
    if (this.debug && member !== "*" && plugin?.events.size && !plugin.events.has(member)) {
      console.warn(`CXBus: ${what} ${namespace}.${member}, which ${namespace} has not registered (registerEvents)`);
    }
  }
}

function deliver(handler, message) {
  try {
    handler({...message});
  } catch (e) {
    console.error(`subscriber of ${message.event} failed`, e);  // one bad widget must not stop the rest
  }
}

// Calls a command handler with its options, which also carry (not enumerable, so spreading
// them copies only the options) what the original's handlers read: e.data, e.commander,
// e.command, e.time and e.deferred. A handler that returns a value or a promise settles the
// command with it; one that returns nothing after taking e.deferred settles it through that.
async function invoke(handler, opts, command, commander) {
  let settle;
  const settled = new Promise((resolve, reject) => { settle = {resolve, reject}; });
  const deferred = {
    resolve: (value) => settle.resolve(value),
    reject: (why) => settle.reject(why),
    promise: () => settled,
  };
  let deferredTaken = false;
  const e = {...opts};
  const fields = {data: opts, commander, command, time: Date.now()};
  for (const field of COMMAND_FIELDS) {
    if (Object.hasOwn(e, field)) continue;  // an option of that name wins
    Object.defineProperty(e, field, field === "deferred"
      ? {get() { deferredTaken = true; return deferred; }, enumerable: false}
      : {value: fields[field], enumerable: false});
  }
  const returned = handler(e);
  if (returned === undefined && deferredTaken) return await settled;
  return await returned;
}

function reason(text, command) {
  const error = new Error(`${command}: ${text}`);
  error.reason = text;
  return error;
}

export function rejection(text, data) {
  const error = new Error(text);
  error.reason = text;
  if (data !== undefined) error.data = data;
  return error;
}

if (typeof window !== "undefined") window.CXBus ??= new Bus();
