// Entry point a site includes (<script type="module" src="/webchat/webchat.js">): the bus
// (window.CXBus, like the original) and WebChatService configured from
// window._genesys.widgets.webchat, then <webchat-widget> becomes available.

import {Bus} from "./cxbus.js";
import {WebChatService} from "./webchat-service.js";
import "./webchat-widget.js";

const genesys = (window._genesys ??= {});
const widgets = (genesys.widgets ??= {});
const bus = window.CXBus ?? new Bus();
window.CXBus = bus;
widgets.bus = bus;

export const service = new WebChatService(bus);
export const ready = service.start();
window.dispatchEvent(new CustomEvent("webchat:loaded", {detail: {bus}}));
