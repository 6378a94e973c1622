// The registration form, built from a definition in the original's formJSON shape
// (webchat.form, or WebChat.open's formJSON): a form `wrapper` and `inputs`, each with id, name,
// type (text, hidden, select, checkbox, textarea), label, placeholder, value, maxlength,
// options (select), wrapper, validateWhileTyping and validate(event, form, input, label, $,
// CXBus, Common). Labels, placeholders and option texts may name a string as
// "@i18n:webchat.Key". Every field is bounded; what people type stays text.

import {el} from "./dom.js";
import {sanitize} from "./sanitize.js";

export const MAX_INPUTS = 50;
export const MAX_OPTIONS = 200;
const MAX_LENGTH = {text: 256, textarea: 2000};
const ROW = "<tr><th>{label}</th><td>{input}</td></tr>";
const TYPES = new Set(["text", "hidden", "select", "checkbox", "textarea", "email", "tel", "number"]);
// Form fields that WebChatService.startChat takes as options; every other field is userData.
export const CHAT_FIELDS = ["nickname", "firstname", "lastname", "email", "subject"];

const filled = (input) => input.val().trim() !== "";

// The form the widget shows when the site defines none: the original's four fields, first
// and last name required.
export const DEFAULT_FORM = {
  wrapper: "<table></table>",
  inputs: [
    {id: "cx_webchat_form_firstname", name: "firstname", maxlength: "100", autocomplete: "given-name",
     placeholder: "@i18n:webchat.ChatFormPlaceholderFirstName", label: "@i18n:webchat.ChatFormFirstName",
     validate: (event, form, input) => filled(input), error: "Errors.102"},
    {id: "cx_webchat_form_lastname", name: "lastname", maxlength: "100", autocomplete: "family-name",
     placeholder: "@i18n:webchat.ChatFormPlaceholderLastName", label: "@i18n:webchat.ChatFormLastName",
     validate: (event, form, input) => filled(input), error: "Errors.103"},
    {id: "cx_webchat_form_email", name: "email", maxlength: "100", type: "email", autocomplete: "email",
     placeholder: "@i18n:webchat.ChatFormPlaceholderEmail", label: "@i18n:webchat.ChatFormEmail"},
    {id: "cx_webchat_form_subject", name: "subject", maxlength: "100", autocomplete: "off",
     placeholder: "@i18n:webchat.ChatFormPlaceholderSubject", label: "@i18n:webchat.ChatFormSubject"},
  ],
};

export const FORM_CSS = `
form.register table { width: 100%; border-collapse: collapse; }
form.register th { text-align: start; font-weight: normal; font-size: 13px; padding: 4px 8px 4px 0;
  vertical-align: middle; white-space: nowrap; }
form.register td { padding: 4px 0; }
form.register td input:not([type=checkbox]), form.register td select, form.register td textarea {
  width: 100%; font: inherit; }
form.register .cx-error, form.register [aria-invalid=true] { border-color: #b00020;
  outline: 1px solid #b00020; }`;

// A few jQuery-style calls on elements, for validate functions written for the original.
export function wrap(nodes) {
  const list = nodes == null ? [] : nodes instanceof Node ? [nodes] : [...nodes];
  const first = list[0];
  const self = {
    length: list.length,
    val(value) {
      if (value === undefined) return first ? String(first.type === "checkbox" ? (first.checked ? first.value : "") : first.value ?? "") : undefined;
      for (const n of list) n.value = value;
      return self;
    },
    attr(name, value) {
      if (value === undefined) return first?.getAttribute(name) ?? undefined;
      for (const n of list) n.setAttribute(name, value);
      return self;
    },
    prop(name, value) {
      if (value === undefined) return first?.[name];
      for (const n of list) n[name] = value;
      return self;
    },
    is(selector) { return selector === ":checked" ? Boolean(first?.checked) : Boolean(first?.matches(selector)); },
    addClass(names) { for (const n of list) n.classList.add(...names.split(/\s+/).filter(Boolean)); return self; },
    removeClass(names) { for (const n of list) n.classList.remove(...names.split(/\s+/).filter(Boolean)); return self; },
    hasClass(name) { return list.some((n) => n.classList.contains(name)); },
    find(selector) { return wrap(list.flatMap((n) => [...n.querySelectorAll(selector)])); },
    text(value) {
      if (value === undefined) return first?.textContent ?? "";
      for (const n of list) n.textContent = value;
      return self;
    },
  };
  list.forEach((n, i) => { self[i] = n; });
  return self;
}

function bound(value, limit) {
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, limit) : limit;
}

// `wrapper` (site markup with {label} and {input} in it) holding the two nodes.
function placed(wrapper, label, input) {
  const fragment = sanitize(wrapper);
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  let used = false;
  for (const text of texts) {
    const parts = text.data.split(/(\{label\}|\{input\})/);
    if (parts.length === 1) continue;
    used = true;
    text.replaceWith(...parts.map((p) => p === "{label}" ? label : p === "{input}" ? input : p));
  }
  if (!used) fragment.append(label, input);
  return fragment;
}

export class RegistrationForm {
  // form: the <form> element to fill; t: the widget's strings; bus: the page's CXBus.
  constructor(form, {t, bus}) {
    this.form = form;
    this.t = t;
    this.bus = bus;
    this.fields = [];  // {def, input, label}
  }

  text(value) {
    const s = String(value ?? "");
    return s.startsWith("@i18n:") ? this.t(s.slice(6).replace(/^webchat\./, "")) : s;
  }

  // Builds the fields of `definition` (formJSON) into `container`, replacing what was there.
  render(definition, container) {
    const def = definition && typeof definition === "object" && Array.isArray(definition.inputs)
      ? definition : DEFAULT_FORM;
    const outer = sanitize(typeof def.wrapper === "string" ? def.wrapper : "<table></table>");
    const holder = outer.firstElementChild ?? container;
    if (holder !== container) container.replaceChildren(outer);
    else container.replaceChildren();
    this.fields = [];
    for (const [i, raw] of def.inputs.slice(0, MAX_INPUTS).entries()) {
      if (!raw || typeof raw !== "object" || !raw.name) continue;
      const field = this.field(raw, i);
      this.fields.push(field);
      if (field.def.type === "hidden") container.append(field.input);
      else holder.append(placed(typeof raw.wrapper === "string" ? raw.wrapper : ROW, field.label, field.input));
    }
  }

  field(raw, i) {
    const type = TYPES.has(raw.type) ? raw.type : "text";
    const def = {...raw, type};
    const id = String(raw.id ?? `cx_webchat_form_${i}`).slice(0, 100);
    let input;
    if (type === "select") {
      input = el("select", {id, name: raw.name});
      const options = Array.isArray(raw.options) ? raw.options.slice(0, MAX_OPTIONS) : [];
      for (const o of options) {
        input.append(el("option", {value: String(o?.value ?? o?.text ?? "").slice(0, MAX_LENGTH.text),
                                   selected: Boolean(o?.selected), text: this.text(o?.text ?? o?.value)}));
      }
    } else if (type === "textarea") {
      input = el("textarea", {id, name: raw.name, rows: 3, maxlength: bound(raw.maxlength, MAX_LENGTH.textarea),
                              placeholder: raw.placeholder ? this.text(raw.placeholder) : false});
      if (raw.value != null) input.value = String(raw.value).slice(0, MAX_LENGTH.textarea);
    } else {
      input = el("input", {id, name: raw.name, type, autocomplete: raw.autocomplete ?? false,
                           maxlength: type === "checkbox" ? false : bound(raw.maxlength, MAX_LENGTH.text),
                           placeholder: raw.placeholder && type !== "checkbox" ? this.text(raw.placeholder) : false});
      if (type === "checkbox") { input.value = String(raw.value ?? "true"); input.checked = Boolean(raw.checked); }
      else if (raw.value != null) input.value = String(raw.value).slice(0, MAX_LENGTH.text);
    }
    const label = el("label", {for: id, text: raw.label ? this.text(raw.label) : ""});
    const field = {def, input, label};
    if (raw.validateWhileTyping && typeof raw.validate === "function") {
      input.addEventListener(type === "select" || type === "checkbox" ? "change" : "input",
                             (event) => this.check(field, event));
    }
    return field;
  }

  // Runs one field's validate; marks the field as the original does (cx-error) and for
  // assistive technology (aria-invalid). A validate that throws counts as "not valid".
  check(field, event) {
    if (typeof field.def.validate !== "function") return true;
    let ok;
    try {
      ok = field.def.validate(event, wrap(this.form), wrap(field.input), wrap(field.label),
                              window.jQuery ?? ((selector) => wrap(this.form.querySelectorAll(selector))),
                              this.bus, {});
    } catch (e) {
      console.error(`validate of ${field.def.name} failed`, e);
      ok = false;
    }
    ok = ok !== false;
    field.input.classList.toggle("cx-error", !ok);
    field.label.classList.toggle("cx-error", !ok);
    if (ok) field.input.removeAttribute("aria-invalid");
    else field.input.setAttribute("aria-invalid", "true");
    return ok;
  }

  // The first field that fails its validation (after marking them all), or null.
  invalid(event) {
    let first = null;
    for (const field of this.fields) if (!this.check(field, event) && !first) first = field;
    return first;
  }

  hasInput() {
    return this.fields.some(({def, input}) => def.type !== "hidden" && (def.type === "checkbox"
      ? input.checked !== Boolean(def.checked) : input.value.trim() !== "" && input.value !== String(def.value ?? "")));
  }

  fill(values) {
    for (const {input} of this.fields) {
      const value = values?.[input.name];
      if (value == null || typeof value === "object") continue;
      if (input.type === "checkbox") input.checked = value === true || value === "true";
      else input.value = String(value).slice(0, Number(input.maxLength) > 0 ? input.maxLength : MAX_LENGTH.text);
    }
  }

  // {fields for startChat, userData} from what is filled in: the chat fields by name, the
  // rest as userData; empty values are left out.
  values() {
    const options = {}, userData = {};
    for (const {def, input} of this.fields) {
      const value = def.type === "checkbox" ? String(input.checked ? input.value : false) : input.value.trim();
      if (value === "") continue;
      if (CHAT_FIELDS.includes(input.name)) options[input.name] = value;
      else userData[input.name] = value;
    }
    return {options, userData};
  }

  focus() {
    this.fields.find(({def}) => def.type !== "hidden")?.input.focus();
  }
}
