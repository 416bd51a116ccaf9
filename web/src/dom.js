// Tiny DOM helpers shared by the page's modules (main.js, refresh.js). Plain DOM, no
// framework: h() builds an element, errorBox() turns any error into the message a
// person can act on (messages.js).

import { describeError } from "./messages.js";

export const $ = (selector, root = document) => root.querySelector(selector);

/** h("div", {class, style, onclick, dataset, ...attributes}, ...children) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An alert box for an error; `describe` picks the words (default: describeError). */
export function errorBox(error, extra = {}, describe = describeError) {
  const d = describe(error);
  return h(
    "div",
    { class: "alert", role: "alert", "data-code": d.code, ...extra },
    h("strong", { class: "alert-title" }, d.title),
    h("span", {}, d.message),
    d.detail && d.detail !== d.message ? h("small", { class: "detail" }, `${d.code}: ${d.detail}`) : null,
  );
}

/** Fill a page's own alert element with an error, or hide it (error null). */
export function showAlert(el, error, describe = describeError) {
  if (!error) {
    el.hidden = true;
    el.replaceChildren();
    delete el.dataset.code;
    return;
  }
  const box = errorBox(error, {}, describe);
  el.replaceChildren(...box.childNodes);
  el.dataset.code = box.dataset.code;
  el.hidden = false;
}

let toastTimer;
/** A short message at the bottom of the page, gone after a few seconds. */
export function toast(text, kind = "info") {
  const el = $("#toast");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 4500);
}
