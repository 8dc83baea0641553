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

// An SVG of an image's boxes ([{left, top, width, height, label}]) at `scale`, optionally over the image itself.
function boxesSvg(width, height, boxes, href, maxWidth) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", Math.min(maxWidth || 240, width));
  svg.classList.add("thumb");
  if (href) {
    const img = document.createElementNS(ns, "image");
    img.setAttribute("href", href);
    img.setAttribute("width", width);
    img.setAttribute("height", height);
    svg.append(img);
  } else {
    const bg = document.createElementNS(ns, "rect");
    bg.setAttribute("width", width);
    bg.setAttribute("height", height);
    bg.setAttribute("class", "frame-bg");
    svg.append(bg);
  }
  for (const b of boxes) {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", b.left);
    r.setAttribute("y", b.top);
    r.setAttribute("width", b.width);
    r.setAttribute("height", b.height);
    r.setAttribute("class", "box");
    r.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(r);
    if (b.label) {
      const t = document.createElementNS(ns, "title");
      t.textContent = b.label;
      r.append(t);
    }
  }
  return svg;
}
