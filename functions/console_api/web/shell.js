// The console's shell: sign-in state (amazon-cognito-identity-js, tokens in sessionStorage only), API calls with
// the person's token, the nav bar, messages, polling, DOM helpers and the box editor the Labeling and Review pages
// share. Pages never read tokens: they call Loupe.api.
"use strict";

(function () {
  const PAGES = [
    ["labeling", "Labeling"],
    ["review", "Review"],
    ["models", "Models"],
    ["fleet", "Fleet"],
    ["loop", "Loop"],
  ];
  let configPromise = null;

  function loadConfig() {
    if (!configPromise) {
      configPromise = fetch("/config.json", { cache: "no-store", credentials: "omit" }).then((r) => {
        if (!r.ok) throw new Error(`the console's configuration could not be read (HTTP ${r.status})`);
        return r.json();
      });
    }
    return configPromise;
  }

  async function pool() {
    const cfg = await loadConfig();
    return new AmazonCognitoIdentity.CognitoUserPool({
      UserPoolId: cfg.userPoolId,
      ClientId: cfg.clientId,
      endpoint: cfg.cognitoEndpoint,
      Storage: window.sessionStorage,
    });
  }

  // The signed-in person's session, refreshed by the library when its tokens expired; null when nobody is signed in.
  async function session() {
    const user = (await pool()).getCurrentUser();
    if (!user) return null;
    return new Promise((resolve) => {
      user.getSession((err, s) => resolve(!err && s && s.isValid() ? { user, session: s } : null));
    });
  }

  function here() {
    return location.pathname + location.search;
  }

  // Only a page of this app may be the place to return to after signing in (no open redirect).
  function safeNext(value) {
    return typeof value === "string" && /^\/web\/[a-z]+\.html(\?[\w=&%.-]*)?$/.test(value) ? value : "/web/labeling.html";
  }

  function toSignIn() {
    location.replace(`/web/signin.html?next=${encodeURIComponent(here())}`);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function banner() {
    let box = document.getElementById("msg");
    if (!box) {
      box = el("div", { id: "msg", role: "status", "aria-live": "polite", hidden: true });
      document.body.prepend(box);
    }
    return box;
  }

  function show(text, kind) {
    const box = banner();
    box.textContent = text;
    box.className = kind || "info";
    box.dataset.kind = kind || "info";
    box.hidden = false;
  }

  async function api(method, path, body) {
    const current = await session();
    if (!current) {
      toSignIn();
      throw Object.assign(new Error("you are signed out"), { status: 401 });
    }
    const headers = { Authorization: `Bearer ${current.session.getIdToken().getJwtToken()}` };
    const options = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw Object.assign(new Error(`the console's API cannot be reached (${err.message})`), { status: 0 });
    }
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (response.status === 401) toSignIn();
    if (!response.ok) {
      const message = (data && data.message) || `${method} ${path} failed with HTTP ${response.status}`;
      throw Object.assign(new Error(message), { status: response.status, body: data });
    }
    return data;
  }

  function poll(fn, ms) {
    let timer = null;
    let running = false;
    async function tick() {
      if (document.hidden || running) return;
      running = true;
      try {
        await fn();
      } catch (err) {
        show(err.message, "error");
      } finally {
        running = false;
      }
    }
    tick();
    timer = setInterval(tick, ms);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) tick();
    });
    return () => clearInterval(timer);
  }

  async function signOut() {
    const current = await session();
    sessionStorage.clear();
    if (!current) return location.replace("/web/signin.html");
    // GlobalSignOut revokes every token Cognito issued to this person (API Reference, GlobalSignOut)
    current.user.globalSignOut({
      onSuccess: () => location.replace("/web/signin.html?signedout=1"),
      onFailure: () => {
        current.user.signOut();
        location.replace("/web/signin.html?signedout=1");
      },
    });
  }

  function nav(me) {
    const page = document.body.dataset.page;
    const header = el(
      "header",
      {},
      el("span", { class: "brand" }, "Loupe console"),
      el(
        "nav",
        {},
        PAGES.map(([key, title]) =>
          el("a", { href: `/web/${key}.html`, class: key === page ? "active" : null, "aria-current": key === page ? "page" : null }, title),
        ),
      ),
      el("span", { class: "who", "data-me": me.username }, me.name || me.username, " ", el("span", { class: "muted" }, (me.groups || []).join(", ") || "no group")),
      el("button", { id: "sign-out", onclick: signOut }, "Sign out"),
    );
    document.body.prepend(header);
    banner();
  }

  async function ready(fn) {
    const current = await session().catch(() => null);
    if (!current) return toSignIn();
    let me;
    try {
      me = await api("GET", "/me");
    } catch (err) {
      nav({ username: "?", groups: [] });
      return show(err.message, "error");
    }
    nav(me);
    try {
      await fn(me);
    } catch (err) {
      show(err.message, "error");
    }
  }

  // ------------------------------------------------------------------ the box editor (image pixels; SVG viewBox)
  const NS = "http://www.w3.org/2000/svg";
  const HANDLE = 8; // screen pixels

  // editor(svg, {readOnly, onChange}) -> {load(image), boxes(), setBoxes(list), select(i), zoom(f), remove(), ...}
  // A box is {label, left, top, width, height} in the image's pixels; `extra` boxes (other labelers') are drawn
  // beside the editable ones, never sent.
  function editor(svg, options) {
    const opts = options || {};
    const state = { image: null, boxes: [], extra: [], selected: -1, zoom: 1, fit: 1, drag: null, label: "" };

    function changed() {
      render();
      if (opts.onChange) opts.onChange(state.boxes);
    }

    function render() {
      const img = state.image;
      if (!img) return svg.replaceChildren();
      svg.setAttribute("viewBox", `0 0 ${img.width} ${img.height}`);
      svg.setAttribute("width", Math.round(img.width * state.zoom));
      svg.setAttribute("height", Math.round(img.height * state.zoom));
      const image = document.createElementNS(NS, "image");
      image.setAttribute("href", img.url);
      image.setAttribute("width", img.width);
      image.setAttribute("height", img.height);
      image.setAttribute("preserveAspectRatio", "none");
      const nodes = [image];
      state.extra.forEach((b) => nodes.push(rect(b, `box other other-${b.group || 0}`)));
      state.boxes.forEach((b, i) => {
        const r = rect(b, `box${b.prefilled ? " predicted" : ""}${i === state.selected ? " selected" : ""}`);
        r.dataset.index = i;
        nodes.push(r);
      });
      const sel = state.boxes[state.selected];
      if (sel && !opts.readOnly) {
        const h = HANDLE / state.zoom;
        for (const [cx, cy, corner] of [
          [sel.left, sel.top, "nw"],
          [sel.left + sel.width, sel.top, "ne"],
          [sel.left, sel.top + sel.height, "sw"],
          [sel.left + sel.width, sel.top + sel.height, "se"],
        ]) {
          const r = document.createElementNS(NS, "rect");
          r.setAttribute("x", cx - h / 2);
          r.setAttribute("y", cy - h / 2);
          r.setAttribute("width", h);
          r.setAttribute("height", h);
          r.setAttribute("class", `handle handle-${corner}`);
          r.dataset.corner = corner;
          nodes.push(r);
        }
      }
      svg.replaceChildren(...nodes);
    }

    function rect(b, cls) {
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("x", b.left);
      r.setAttribute("y", b.top);
      r.setAttribute("width", Math.max(0, b.width));
      r.setAttribute("height", Math.max(0, b.height));
      r.setAttribute("vector-effect", "non-scaling-stroke");
      r.setAttribute("class", cls);
      return r;
    }

    function point(event) {
      const p = svg.createSVGPoint();
      p.x = event.clientX;
      p.y = event.clientY;
      const q = p.matrixTransform(svg.getScreenCTM().inverse());
      return { x: q.x, y: q.y };
    }

    function clampBox(b) {
      const img = state.image;
      b.left = Math.max(0, Math.min(b.left, img.width - b.width));
      b.top = Math.max(0, Math.min(b.top, img.height - b.height));
    }

    function normalise(b) {
      if (b.width < 0) {
        b.left += b.width;
        b.width = -b.width;
      }
      if (b.height < 0) {
        b.top += b.height;
        b.height = -b.height;
      }
      const img = state.image;
      const right = Math.min(img.width, b.left + b.width);
      const bottom = Math.min(img.height, b.top + b.height);
      b.left = Math.round(Math.max(0, b.left));
      b.top = Math.round(Math.max(0, b.top));
      b.width = Math.round(right - b.left);
      b.height = Math.round(bottom - b.top);
    }

    svg.addEventListener("pointerdown", (event) => {
      if (!state.image || opts.readOnly || event.button !== 0) return;
      const p = point(event);
      const target = event.target;
      svg.setPointerCapture(event.pointerId);
      if (target.dataset.corner) {
        state.drag = { mode: "resize", corner: target.dataset.corner, start: p, orig: { ...state.boxes[state.selected] } };
      } else if (target.dataset.index !== undefined) {
        state.selected = Number(target.dataset.index);
        state.drag = { mode: "move", start: p, orig: { ...state.boxes[state.selected] } };
      } else {
        state.boxes.push({ label: state.label, left: p.x, top: p.y, width: 0, height: 0 });
        state.selected = state.boxes.length - 1;
        state.drag = { mode: "draw", start: p };
      }
      render();
    });

    svg.addEventListener("pointermove", (event) => {
      const drag = state.drag;
      if (!drag) return;
      const p = point(event);
      const b = state.boxes[state.selected];
      const dx = p.x - drag.start.x;
      const dy = p.y - drag.start.y;
      if (drag.mode === "draw") {
        b.width = dx;
        b.height = dy;
      } else if (drag.mode === "move") {
        b.left = drag.orig.left + dx;
        b.top = drag.orig.top + dy;
        clampBox(b);
      } else {
        const o = drag.orig;
        if (drag.corner.includes("w")) {
          b.left = o.left + dx;
          b.width = o.width - dx;
        } else b.width = o.width + dx;
        if (drag.corner.includes("n")) {
          b.top = o.top + dy;
          b.height = o.height - dy;
        } else b.height = o.height + dy;
      }
      delete b.prefilled;
      render();
    });

    function endDrag() {
      const drag = state.drag;
      if (!drag) return;
      state.drag = null;
      const b = state.boxes[state.selected];
      normalise(b);
      if (drag.mode === "draw" && (b.width < 1 || b.height < 1)) {
        state.boxes.splice(state.selected, 1);
        state.selected = -1;
        show("That box was empty (no area), so it was not added: drag across the defect to draw a box.", "error");
      }
      changed();
    }
    svg.addEventListener("pointerup", endDrag);
    svg.addEventListener("pointercancel", endDrag);

    const api = {
      load(image, boxes, extra) {
        state.image = image;
        state.boxes = (boxes || []).map((b) => ({ ...b }));
        state.extra = (extra || []).map((b) => ({ ...b }));
        state.selected = -1;
        const wrap = svg.parentElement;
        state.fit = Math.min(1, (wrap.clientWidth - 4) / image.width) || 1;
        state.zoom = Math.max(state.fit, Math.min(4, 640 / Math.max(image.width, image.height)));
        changed();
      },
      clear() {
        state.image = null;
        state.boxes = [];
        state.extra = [];
        render();
      },
      boxes() {
        return state.boxes.map((b) => ({ label: b.label, left: b.left, top: b.top, width: b.width, height: b.height }));
      },
      setBoxes(list) {
        state.boxes = list.map((b) => ({ ...b }));
        state.selected = -1;
        changed();
      },
      setLabel(label) {
        state.label = label;
        const b = state.boxes[state.selected];
        if (b) {
          b.label = label;
          changed();
        }
      },
      remove() {
        if (state.selected < 0) return;
        state.boxes.splice(state.selected, 1);
        state.selected = -1;
        changed();
      },
      deselect() {
        state.selected = -1;
        render();
      },
      nudge(dx, dy) {
        const b = state.boxes[state.selected];
        if (!b) return false;
        b.left += dx;
        b.top += dy;
        clampBox(b);
        changed();
        return true;
      },
      zoom(factor) {
        if (!state.image) return "";
        state.zoom = factor === 0 ? state.fit : Math.max(0.1, Math.min(16, state.zoom * factor));
        render();
        return `${Math.round(state.zoom * 100)}%`;
      },
      get loaded() {
        return state.image !== null;
      },
    };
    return api;
  }

  // Keyboard of an editor page: Del, arrows (Shift: 10 px), + - 0 zoom, Esc, Enter submits.
  function editorKeys(ed, actions) {
    document.addEventListener("keydown", (event) => {
      const tag = event.target.tagName;
      if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA" || !ed.loaded) return;
      const step = event.shiftKey ? 10 : 1;
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      if (event.key === "Delete" || event.key === "Backspace") ed.remove();
      else if (event.key === "Escape") ed.deselect();
      else if (event.key === "+" || event.key === "=") actions.zoom(1.25);
      else if (event.key === "-") actions.zoom(0.8);
      else if (event.key === "0") actions.zoom(0);
      else if (event.key === "Enter") actions.submit();
      else if (moves[event.key]) {
        if (!ed.nudge(...moves[event.key])) return;
      } else return;
      event.preventDefault();
    });
  }

  // a value for a table cell: "–" for nothing
  function text(value) {
    return value === undefined || value === null || value === "" ? "–" : String(value);
  }

  // table #id's body: the rows, or one muted row saying ``empty``
  function fill(id, rows, empty) {
    const body = document.querySelector(`#${id} tbody`);
    const columns = document.querySelectorAll(`#${id} thead th`).length;
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty))]));
  }

  window.Loupe = { ready, api, el, show, poll, signOut, editor, editorKeys, pool, loadConfig, safeNext, text, fill };
})();
