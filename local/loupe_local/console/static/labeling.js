// Labeling: the local Ground Truth workforce's task queue for a person. Boxes live in image pixels; the SVG's
// viewBox is the image, so zooming only changes the SVG's rendered size.
"use strict";

const NS = "http://www.w3.org/2000/svg";
const HANDLE = 8; // screen pixels
const state = { tasks: [], task: null, boxes: [], selected: -1, zoom: 1, fit: 1, drag: null, submitting: false, opened: 0 };
const svg = document.getElementById("canvas");

function $(id) {
  return document.getElementById(id);
}

// ------------------------------------------------------------------ the queue
async function refreshQueue() {
  const data = await api("GET", "/api/tasks");
  $("mode").textContent = data.mode === "manual" ? "manual workforce" : `${data.mode} workforce`;
  state.tasks = data.tasks;
  $("queue-empty").hidden = data.tasks.length > 0;
  if (data.mode !== "manual" && data.tasks.length === 0) {
    $("queue-empty").textContent = "No pending tasks. The workforce answers automatically (known labels); start with `loupe local up --label manual` to label here.";
  } else {
    $("queue-empty").textContent = "No pending tasks.";
  }
  $("queue").replaceChildren(
    ...data.tasks.map((t) =>
      el(
        "li",
        { class: state.task && state.task.id === t.id ? "current" : "", "data-task": t.id, onclick: () => openTask(t.id) },
        el("div", {}, t.kind === "verify" ? "verify " : "label ", el("code", {}, t.sha256.slice(0, 12))),
        el("div", { class: "muted" }, `${t.width}×${t.height} · ${t.job}`),
      ),
    ),
  );
  if (state.task && !data.tasks.some((t) => t.id === state.task.id) && !state.submitting) {
    showMessage(`Task ${state.task.id} left the queue (its job was stopped or its time ran out); your boxes were not sent.`, "error");
    closeTask();
  }
  if (!state.task && data.tasks.length && !state.submitting) openTask(data.tasks[0].id);
}

function closeTask() {
  state.task = null;
  state.boxes = [];
  state.selected = -1;
  svg.replaceChildren();
  $("task-title").textContent = "Pick a task";
  $("task-info").textContent = "";
  $("assist").textContent = "";
  $("verdicts").hidden = true;
  $("box-count").textContent = "";
}

async function openTask(id) {
  const task = state.tasks.find((t) => t.id === id);
  if (!task) return;
  const opened = ++state.opened; // a later openTask (a click, the queue's auto-open) wins over this one
  state.task = task;
  state.selected = -1;
  state.boxes = task.kind === "verify" ? task.boxes.map((b) => ({ ...b, shown: true })) : [];
  for (const li of document.querySelectorAll("#queue li")) li.classList.toggle("current", li.dataset.task === id);
  $("task-title").textContent = task.kind === "verify" ? "Verify these boxes" : "Draw a box around every defect";
  $("task-info").textContent = `${task.width}×${task.height} · ${task.source_ref}`;
  const classes = $("class-select");
  classes.replaceChildren(...Object.entries(task.class_map).map(([k, v]) => el("option", { value: k }, `${k}: ${v}`)));
  const verdicts = $("verdicts");
  verdicts.hidden = task.kind !== "verify";
  verdicts.replaceChildren(
    ...(task.verdicts || []).map((v, i) =>
      el("button", { class: i === 0 ? "primary" : "", "data-verdict": v, onclick: () => submitVerdict(v) }, v),
    ),
  );
  for (const id of ["class-select", "delete-box", "clear-boxes", "submit"]) $(id).disabled = task.kind === "verify";
  const wrap = $("canvas-wrap");
  state.fit = Math.min(1, (wrap.clientWidth - 4) / task.width) || 1;
  state.zoom = Math.max(state.fit, Math.min(4, 640 / Math.max(task.width, task.height)));
  render();
  $("assist").textContent = "";
  if (task.kind === "label") {
    try {
      const pred = await api("GET", `/api/tasks/${encodeURIComponent(id)}/predictions`);
      if (state.opened !== opened) return;
      if (pred.model && pred.boxes.length && state.boxes.length === 0) {
        state.boxes = pred.boxes.map((b) => ({ ...b, predicted: true }));
        $("assist").textContent = `Pre-filled with ${pred.boxes.length} box(es) from deployed model ${pred.model}: correct them, then submit.`;
        render();
      } else if (pred.model && pred.boxes.length) {
        $("assist").textContent = `Deployed model ${pred.model} found ${pred.boxes.length} box(es); not applied over the boxes you drew.`;
      } else if (pred.model) {
        $("assist").textContent = `Deployed model ${pred.model} finds nothing here.`;
      } else if (pred.error) {
        $("assist").textContent = pred.error;
      } else {
        $("assist").textContent = "No model is deployed yet: no pre-annotation.";
      }
    } catch (err) {
      if (state.opened === opened) $("assist").textContent = `No pre-annotation: ${err.message}`;
    }
  }
}

// ------------------------------------------------------------------ drawing
function render() {
  const task = state.task;
  if (!task) return;
  svg.setAttribute("viewBox", `0 0 ${task.width} ${task.height}`);
  svg.setAttribute("width", Math.round(task.width * state.zoom));
  svg.setAttribute("height", Math.round(task.height * state.zoom));
  $("zoom-level").textContent = `${Math.round(state.zoom * 100)}%`;
  const image = document.createElementNS(NS, "image");
  image.setAttribute("href", `/api/tasks/${encodeURIComponent(task.id)}/image`);
  image.setAttribute("width", task.width);
  image.setAttribute("height", task.height);
  image.setAttribute("preserveAspectRatio", "none");
  const nodes = [image];
  state.boxes.forEach((b, i) => {
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", b.left);
    r.setAttribute("y", b.top);
    r.setAttribute("width", Math.max(0, b.width));
    r.setAttribute("height", Math.max(0, b.height));
    r.setAttribute("vector-effect", "non-scaling-stroke");
    r.classList.add("box");
    if (b.predicted) r.classList.add("predicted");
    if (b.shown) r.classList.add("shown");
    if (i === state.selected) r.classList.add("selected");
    r.dataset.index = i;
    nodes.push(r);
  });
  const sel = state.boxes[state.selected];
  if (sel && !sel.shown) {
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
      r.classList.add("handle");
      r.dataset.corner = corner;
      r.style.cursor = `${corner}-resize`;
      nodes.push(r);
    }
  }
  svg.replaceChildren(...nodes);
  const n = state.boxes.length;
  $("box-count").textContent = task.kind === "verify" ? `${n} box(es) to verify` : `${n} box(es)${n === 0 ? " — submitting none means: no defect in this image" : ""}`;
}

function point(event) {
  const p = svg.createSVGPoint();
  p.x = event.clientX;
  p.y = event.clientY;
  const q = p.matrixTransform(svg.getScreenCTM().inverse());
  return { x: q.x, y: q.y };
}

function clampBox(b) {
  const t = state.task;
  b.left = Math.max(0, Math.min(b.left, t.width - b.width));
  b.top = Math.max(0, Math.min(b.top, t.height - b.height));
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
  const t = state.task;
  const right = Math.min(t.width, b.left + b.width);
  const bottom = Math.min(t.height, b.top + b.height);
  b.left = Math.max(0, b.left);
  b.top = Math.max(0, b.top);
  b.width = Math.round(right - b.left);
  b.height = Math.round(bottom - b.top);
  b.left = Math.round(b.left);
  b.top = Math.round(b.top);
}

svg.addEventListener("pointerdown", (event) => {
  if (!state.task || state.task.kind !== "label" || event.button !== 0) return;
  const p = point(event);
  const target = event.target;
  svg.setPointerCapture(event.pointerId);
  if (target.dataset.corner) {
    const b = state.boxes[state.selected];
    state.drag = { mode: "resize", corner: target.dataset.corner, start: p, orig: { ...b } };
  } else if (target.dataset.index !== undefined) {
    state.selected = Number(target.dataset.index);
    state.drag = { mode: "move", start: p, orig: { ...state.boxes[state.selected] } };
  } else {
    const cls = Number($("class-select").value || 0);
    state.boxes.push({ class_id: cls, left: p.x, top: p.y, width: 0, height: 0 });
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
  delete b.predicted;
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
    showMessage("That box was empty (no area), so it was not added: drag across the defect to draw a box.", "error");
  }
  render();
}
svg.addEventListener("pointerup", endDrag);
svg.addEventListener("pointercancel", endDrag);

function deleteSelected() {
  if (state.selected < 0) return;
  state.boxes.splice(state.selected, 1);
  state.selected = -1;
  render();
}

function zoom(factor) {
  if (!state.task) return;
  state.zoom = factor === 0 ? state.fit : Math.max(0.1, Math.min(16, state.zoom * factor));
  render();
}

// ------------------------------------------------------------------ answers
async function send(answer) {
  const task = state.task;
  if (!task || state.submitting) return;
  state.submitting = true;
  $("submit").disabled = true;
  try {
    const out = await api("POST", `/api/tasks/${encodeURIComponent(task.id)}`, answer);
    showMessage(`${out.ok}.`, "ok");
    closeTask();
    state.tasks = state.tasks.filter((t) => t.id !== task.id);
  } catch (err) {
    // nothing is lost: the boxes stay on screen for another try
    showMessage(`Not submitted: ${err.message}`, "error");
  } finally {
    state.submitting = false;
    $("submit").disabled = !state.task || state.task.kind === "verify";
  }
  await refreshQueue().catch(() => {});
}

function submitBoxes() {
  if (!state.task || state.task.kind !== "label") return;
  const boxes = state.boxes.map((b) => ({
    class_id: b.class_id,
    left: b.left,
    top: b.top,
    width: b.width,
    height: b.height,
  }));
  return send({ boxes });
}

function submitVerdict(verdict) {
  return send({ verdict });
}

$("submit").addEventListener("click", submitBoxes);
$("delete-box").addEventListener("click", deleteSelected);
$("clear-boxes").addEventListener("click", () => {
  state.boxes = [];
  state.selected = -1;
  render();
});
$("zoom-in").addEventListener("click", () => zoom(1.25));
$("zoom-out").addEventListener("click", () => zoom(0.8));
$("class-select").addEventListener("change", () => {
  const b = state.boxes[state.selected];
  if (b) {
    b.class_id = Number($("class-select").value);
    render();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "SELECT" || event.target.tagName === "INPUT") return;
  const b = state.boxes[state.selected];
  const step = event.shiftKey ? 10 : 1;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (event.key === "Delete" || event.key === "Backspace") deleteSelected();
  else if (event.key === "Escape") {
    state.selected = -1;
    render();
  } else if (event.key === "+" || event.key === "=") zoom(1.25);
  else if (event.key === "-") zoom(0.8);
  else if (event.key === "0") zoom(0);
  else if (event.key === "Enter") submitBoxes();
  else if (event.key === "n") {
    const i = state.tasks.findIndex((t) => state.task && t.id === state.task.id);
    const next = state.tasks[(i + 1) % Math.max(1, state.tasks.length)];
    if (next) openTask(next.id);
  } else if (moves[event.key] && b && !b.shown) {
    b.left += moves[event.key][0];
    b.top += moves[event.key][1];
    clampBox(b);
    render();
  } else return;
  event.preventDefault();
});

poll(refreshQueue, 2000);
