// Shared helpers of the local console: JSON calls that surface errors, messages, polling, small DOM builders.
"use strict";

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`the console cannot be reached (${err.message}); is the local AWS still running?`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    throw new Error((data && data.error) || `${method} ${url} failed with HTTP ${response.status}`);
  }
  return data;
}

function showMessage(text, kind) {
  const box = document.getElementById("msg");
  box.textContent = text;
  box.className = kind || "info";
  box.hidden = false;
}

function clearMessage() {
  document.getElementById("msg").hidden = true;
}

// Run fn now and every `ms`; the header tells when the page last refreshed, or why it could not.
function poll(fn, ms) {
  const stamp = document.getElementById("refreshed");
  async function tick() {
    try {
      await fn();
      stamp.textContent = `refreshed ${new Date().toLocaleTimeString()}`;
      stamp.classList.remove("error");
    } catch (err) {
      stamp.textContent = `refresh failed: ${err.message}`;
      stamp.classList.add("error");
    }
  }
  tick();
  return setInterval(tick, ms);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

function fmt(value, digits) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "number") return digits === undefined ? String(value) : value.toFixed(digits);
  return String(value);
}

// A real image (served by the console from S3) with boxes drawn over its pixels: an <img> under an SVG whose
// viewBox is the image's own pixel size, so boxes ([{xyxy: [x1, y1, x2, y2], kind, label}], original image pixels)
// land where they belong at any display size. `onError(text)` is told why the image did not load (the API's error).
function imageWithBoxes(src, width, height, boxes, displayWidth, onError) {
  const ns = "http://www.w3.org/2000/svg";
  const shown = displayWidth || 320;
  const wrap = el("div", { class: "shot" });
  wrap.style.width = `${shown}px`;
  const img = el("img", { src, alt: "", width, height, "data-image": src });
  img.addEventListener("error", async () => {
    wrap.classList.add("broken");
    let why = "the image could not be loaded";
    try {
      const response = await fetch(src);
      const data = await response.json();
      why = `${why}: ${data.error || `HTTP ${response.status}`}`;
    } catch (err) {
      why = `${why} (${err.message})`;
    }
    if (onError) onError(why);
  });
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const fontSize = (11 * width) / shown;
  for (const b of boxes) {
    const [x1, y1, x2, y2] = b.xyxy;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x1);
    r.setAttribute("y", y1);
    r.setAttribute("width", Math.max(0, x2 - x1));
    r.setAttribute("height", Math.max(0, y2 - y1));
    r.setAttribute("class", `box ${b.kind || ""}`);
    r.setAttribute("data-kind", b.kind || "box");
    r.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(r);
    if (b.label) {
      const title = document.createElementNS(ns, "title");
      title.textContent = b.label;
      r.append(title);
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x1 + fontSize * 0.2);
      t.setAttribute("y", y1 >= fontSize * 1.1 ? y1 - fontSize * 0.25 : y1 + fontSize);
      t.setAttribute("font-size", fontSize);
      t.setAttribute("class", `label ${b.kind || ""}`);
      t.textContent = b.label;
      svg.append(t);
    }
  }
  wrap.append(img, svg);
  return wrap;
}

function signed(value, digits) {
  if (value === null || value === undefined) return "–";
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(digits)}`;
}

function interval(ci, digits, sign) {
  if (!ci) return "not measured";
  const f = sign ? (v) => signed(v, digits) : (v) => v.toFixed(digits);
  return `[${f(ci[0])}, ${f(ci[1])}]`;
}
