// Entry point a site includes (<script type="module" src="/webchat/webchat.js">): the bus
// (window.CXBus, like the original) and WebChatService configured from
// window._genesys.widgets.webchat, then <webchat-widget> becomes available.

import {Bus} from "./cxbus.js";
import {WebChatService} from "./webchat-service.js";
import {presentation} from "./themes.js";
import {WebChatWidget} from "./webchat-widget.js";

const genesys = (window._genesys ??= {});
const widgets = (genesys.widgets ??= {});
const bus = window.CXBus ?? new Bus();
window.CXBus = bus;
widgets.bus = bus;
presentation(bus);  // main's page-wide options (debug first, so the bus logs all that follows)
// Page scripts written for the original come as extensions: each is called once, before the
// widgets start, with ($, CXBus, Common), and registers, subscribes and commands from there.
for (const [name, extension] of Object.entries(widgets.extensions ?? {})) {
  if (typeof extension !== "function") continue;
  try { extension(window.jQuery, bus, {}); } catch (e) { console.error(`extension ${name} failed`, e); }
}

export const service = new WebChatService(bus);
// Defined once the bus exists and before the service starts: the widgets already in the page
// connect now and hear everything the start publishes (a restore, or why it failed).
if (!customElements.get("webchat-widget")) customElements.define("webchat-widget", WebChatWidget);
export const ready = service.start();
window.dispatchEvent(new CustomEvent("webchat:loaded", {detail: {bus}}));
// The original's second way onto the bus: _genesys.widgets.onReady(CXBus), once started.
ready.then(() => {
  if (typeof widgets.onReady !== "function") return;
  try { widgets.onReady(bus); } catch (e) { console.error("_genesys.widgets.onReady failed", e); }
});
