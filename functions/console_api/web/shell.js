// STAND-IN for the web helper's shell.js (shell.md): just the interface the Fleet and Loop pages use
// (Loupe.ready/api/el/show/poll). It reads the ID token where amazon-cognito-identity-js keeps a signed-in session
// (localStorage, CognitoIdentityServiceProvider.<client id>.<user>.idToken) and never refreshes it. Replaced at merge.
"use strict";

(function () {
  function idToken() {
    const prefix = "CognitoIdentityServiceProvider.";
    const last = Object.keys(localStorage).find((k) => k.startsWith(prefix) && k.endsWith(".LastAuthUser"));
    if (!last) return "";
    const client = last.slice(prefix.length, -".LastAuthUser".length);
    return localStorage.getItem(`${prefix}${client}.${localStorage.getItem(last)}.idToken`) || "";
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(text, kind) {
    let banner = document.getElementById("banner");
    if (!banner) {
      banner = el("div", { id: "banner", role: "status" });
      document.body.prepend(banner);
    }
    banner.className = `banner ${kind || "info"}`;
    banner.dataset.kind = kind || "info";
    banner.textContent = text;
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${idToken()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((data && data.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function poll(fn, ms) {
    let timer = null;
    const tick = async () => {
      try {
        await fn();
      } catch (error) {
        show(error.message, "error");
      }
      timer = document.hidden ? null : setTimeout(tick, ms);
    };
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null) tick();
    });
    tick();
  }

  function nav(me) {
    const links = ["labeling", "review", "models", "fleet", "loop"].map((page) =>
      el("a", { href: `/web/${page}.html` }, page[0].toUpperCase() + page.slice(1)),
    );
    document.body.prepend(el("nav", { class: "nav" }, ...links, el("span", { class: "who", "data-me": me.username }, me.name || me.username)));
  }

  function ready(fn) {
    const start = async () => {
      let me;
      try {
        me = await api("GET", "/me");
      } catch (error) {
        if (error.status === 401) {
          location.assign(`/web/signin.html?next=${encodeURIComponent(location.pathname)}`);
          return;
        }
        show(error.message, "error");
        return;
      }
      nav(me);
      fn(me);
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }

  window.Loupe = { ready, api, el, show, poll };
})();
