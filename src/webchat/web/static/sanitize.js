// Markup a site hands the widget (a chatButton.template, an injectMessage of type "html", an
// overlay, a registration form's wrappers) is the site's own markup, but never its scripts:
// it is parsed inert in a <template>, then only harmless elements and attributes are kept.
// Nothing a customer or agent types ever comes through here (that is text: dom.js).

const KEEP = new Set(("a abbr b bdi bdo blockquote br caption cite code col colgroup dd del details dfn "
  + "div dl dt em figcaption figure h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small "
  + "span strong sub summary sup table tbody td tfoot th thead time tr u ul wbr").split(" "));
// Dropped with everything inside them; any other unknown element is unwrapped (its text stays).
const DROP = new Set(("script style iframe frame frameset object embed applet link meta base form input "
  + "button textarea select option template noscript svg math portal audio video source track canvas "
  + "dialog slot").split(" "));
const ATTRIBUTES = new Set(["class", "id", "title", "lang", "dir", "role", "alt", "width", "height",
                            "colspan", "rowspan", "headers", "scope", "datetime", "href", "src",
                            "target", "rel"]);
const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:", "tel:"]);
export const MAX_MARKUP = 20000;  // characters of site markup taken at once

// A URL attribute's value if it is a safe one for `attribute`, else null.
function safeUrl(attribute, value) {
  let url;
  try { url = new URL(value, document.baseURI); } catch { return null; }
  if (attribute === "src") {
    const image = url.protocol === "data:" && /^data:image\/(png|gif|jpe?g|webp);/i.test(value.trim());
    return url.protocol === "http:" || url.protocol === "https:" || image ? url.href : null;
  }
  return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
}

function clean(node) {
  for (const child of [...node.childNodes]) {
    if (child.nodeType === Node.TEXT_NODE) continue;
    if (child.nodeType !== Node.ELEMENT_NODE) { child.remove(); continue; }  // comments, CDATA
    const tag = child.localName;
    if (DROP.has(tag)) { child.remove(); continue; }
    clean(child);
    if (!KEEP.has(tag)) { child.replaceWith(...child.childNodes); continue; }
    for (const {name, value} of [...child.attributes]) {
      const allowed = ATTRIBUTES.has(name) || name.startsWith("aria-") || name.startsWith("data-");
      if (!allowed) { child.removeAttribute(name); continue; }
      if (name === "href" || name === "src") {
        const url = safeUrl(name, value);
        if (url === null || (name === "src" && tag !== "img")) child.removeAttribute(name);
        else child.setAttribute(name, url);
      }
    }
    if (tag === "a" && child.hasAttribute("target")) child.setAttribute("rel", "noopener noreferrer");
  }
}

// `html` as a fragment of harmless nodes, ready to insert anywhere.
export function sanitize(html) {
  const template = document.createElement("template");
  template.innerHTML = String(html ?? "").slice(0, MAX_MARKUP);
  const fragment = template.content;
  clean(fragment);
  return document.importNode(fragment, true);
}
