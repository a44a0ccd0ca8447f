// The dashboard in Japanese when the browser asks for it (navigator.languages, which also sets the request's
// Accept-Language), with a switch in the header; the choice is remembered in this browser (localStorage).
//
// The views are written in English; this module translates what they put on the page, text and the
// placeholder/title/aria-label attributes, as it appears (a MutationObserver), from the tables in
// strings-ja.js. So the views need no change to be translated, and a text without an entry stays English.
// Each translated text keeps its English original, so switching back restores it without a reload.

import { EXACT, PATTERNS } from "./strings-ja.js";

const STORAGE_KEY = "zdl.lang";
const LANGUAGES = { en: "English", ja: "日本語" };
const ATTRIBUTES = ["placeholder", "title", "aria-label"];
const KEEP_TEXT = new Set(["SCRIPT", "STYLE", "CODE", "PRE", "TEXTAREA"]); // code and commands stay as written

/** English text -> Japanese, or null if there is no translation. Surrounding whitespace is kept. */
export function toJapanese(text) {
  const core = text.trim();
  if (!core) return null;
  let translated = EXACT.get(core);
  if (translated === undefined) {
    const rule = PATTERNS.find(([pattern]) => pattern.test(core));
    if (!rule) return null;
    translated = rule[1](...core.match(rule[0]).slice(1));
  }
  const lead = text.slice(0, text.indexOf(core));
  return lead + translated + text.slice(lead.length + core.length);
}

/** "en" or "ja": the one chosen with the switch, else the browser's first preference. */
export function chosenLanguage() {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (stored in LANGUAGES) return stored;
  const preferred = navigator.languages?.[0] || navigator.language || "en";
  return preferred.toLowerCase().startsWith("ja") ? "ja" : "en";
}

const originals = new WeakMap(); // node -> its English text; element -> {attribute: English value}
const shown = new WeakMap(); // node -> the translation this module put there (to tell it from the views' edits)
let language = "en";

function translateText(node) {
  if (KEEP_TEXT.has(node.parentElement?.tagName)) return;
  if (shown.get(node) === node.data) return; // our own translation, seen again
  originals.set(node, node.data);
  const translated = language === "ja" ? toJapanese(node.data) : null;
  if (translated !== null && translated !== node.data) {
    shown.set(node, translated);
    node.data = translated;
  }
}

function translateAttributes(element) {
  const saved = originals.get(element) || {};
  for (const name of ATTRIBUTES) {
    const value = element.getAttribute(name);
    if (value === null) continue;
    if (saved[name] === undefined || (value !== toJapanese(saved[name]) && value !== saved[name])) saved[name] = value;
    const translated = language === "ja" ? toJapanese(saved[name]) : null;
    const wanted = translated ?? saved[name];
    if (value !== wanted) element.setAttribute(name, wanted);
  }
  originals.set(element, saved);
}

function translateTree(root) {
  if (root.nodeType === Node.TEXT_NODE) {
    translateText(root);
    return;
  }
  if (root.nodeType !== Node.ELEMENT_NODE) return;
  translateAttributes(root);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeType === Node.TEXT_NODE) translateText(node);
    else translateAttributes(node);
  }
}

/** Put every text back in English (from the originals kept), or in Japanese. */
function retranslate(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (originals.has(node) && shown.get(node) === node.data) {
      node.data = originals.get(node);
      shown.delete(node);
    }
  }
  translateTree(root);
}

export function setLanguage(next) {
  language = next;
  document.documentElement.lang = next;
  document.title = language === "ja" ? toJapanese("zdl · training dashboard") : "zdl · training dashboard";
  retranslate(document.body);
  const button = document.getElementById("lang-switch");
  if (button) {
    const other = next === "ja" ? "en" : "ja";
    button.textContent = LANGUAGES[other];
    button.setAttribute("lang", other);
    button.dataset.language = other;
    shown.set(button.firstChild, button.textContent); // the switch names the other language, untranslated
  }
}

function addStyles() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/i18n.css";
  document.head.append(link);
}

function addSwitch() {
  const button = document.createElement("button");
  button.type = "button";
  button.id = "lang-switch";
  button.className = "link lang-switch";
  button.addEventListener("click", () => {
    const next = button.dataset.language;
    localStorage.setItem(STORAGE_KEY, next);
    setLanguage(next);
  });
  const header = document.querySelector(".topbar");
  header.insertBefore(button, header.querySelector(".docs"));
}

function observe() {
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      if (mutation.type === "characterData") translateText(mutation.target);
      else if (mutation.type === "attributes") translateAttributes(mutation.target);
      else mutation.addedNodes.forEach(translateTree);
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ATTRIBUTES });
  const confirm = window.confirm.bind(window); // the views' confirm() questions too
  window.confirm = (message) => confirm(language === "ja" ? toJapanese(String(message)) ?? message : message);
}

addStyles();
addSwitch();
observe();
setLanguage(chosenLanguage());
