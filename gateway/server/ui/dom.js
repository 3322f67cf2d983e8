// Building the page's elements. Text always goes in as text (a Text node), never as
// HTML, so a message body can never become markup.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

export function $(id) {
  return document.getElementById(id);
}

export function time(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  const today = new Date().toDateString() === moment.toDateString();
  return today
    ? moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : moment.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

export function timeElement(iso) {
  return h("time", { datetime: iso || "" }, time(iso));
}
