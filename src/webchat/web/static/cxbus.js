// A CXBus-compatible bus for the browser: plugins own namespaces; commands return promises
// that resolve or reject with a reason; events go to subscribers in publish order.
// Like the original, command() also answers .done()/.fail() (jQuery-deferred style).

export class CommandPromise extends Promise {
  static get [Symbol.species]() { return Promise; }
  done(fn) { this.then(fn, () => {}); return this; }
  fail(fn) { this.catch(fn); return this; }
}

function split(name) {
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
  }
  registerCommand(command, handler) {
    if (this.commands.has(command)) throw new Error(`${this.name}.${command} is already registered`);
    this.commands.set(command, handler);
  }
  publish(event, data) { this.bus.publish(`${this.name}.${event}`, data, this.name); }
  ready() {
    if (this.isReady) return;
    this.isReady = true;
    this.publish("ready");
  }
  command(name, options) { return this.bus.command(name, options); }
  subscribe(pattern, handler) { return this.bus.subscribe(pattern, handler, this.name); }
}

export class Bus {
  constructor() {
    this.plugins = new Map();
    this.subs = new Map();
    this.hooks = new Map();
    this.nextId = 1;
  }

  registerPlugin(name) {
    if (!name || name.includes(".") || this.plugins.has(name)) {
      throw new Error(`cannot register plugin ${JSON.stringify(name)}`);
    }
    const plugin = new Plugin(this, name);
    this.plugins.set(name, plugin);
    return plugin;
  }

  command(name, options) {
    return new CommandPromise((resolve, reject) => {
      this._run(name, options).then(resolve, reject);
    });
  }

  async _run(name, options) {
    let namespace, member;
    try { [namespace, member] = split(name); } catch (e) { throw reason(e.message, name); }
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
    return await plugin.commands.get(member)(opts);
  }

  before(command, hook) {
    split(command);
    if (!this.hooks.has(command)) this.hooks.set(command, []);
    this.hooks.get(command).push(hook);
  }

  subscribe(pattern, handler, owner = "") {
    if (pattern !== "*" && !pattern.endsWith(".*")) split(pattern);
    const id = this.nextId++;
    this.subs.set(id, {pattern, handler, owner});
    return id;
  }

  unsubscribe(id) { return this.subs.delete(id); }

  publish(event, data, publisher = "") {
    split(event);
    for (const {pattern, handler} of [...this.subs.values()]) {
      if (!matches(pattern, event)) continue;
      try {
        handler({event, data, publisher});
      } catch (e) {
        console.error(`subscriber of ${event} failed`, e);  // one bad widget must not stop the rest
      }
    }
  }
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
