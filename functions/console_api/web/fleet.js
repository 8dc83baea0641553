// Fleet: devices (Greengrass status, model component, serving version, last health), deployment runs, and the
// uncertain frames devices sent, their boxes drawn over the presigned image.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

const { text, fill } = Loupe;

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// The frame's boxes over its image, in the image's own pixels (an SVG viewBox of its natural size: no inline style).
function frameView(frame) {
  const holder = Loupe.el("div", { class: "frame-view", "data-boxes": frame.boxes.length });
  const probe = new Image();
  probe.onload = () => {
    const w = probe.naturalWidth;
    const h = probe.naturalHeight;
    const svg = svgNode("svg", { viewBox: `0 0 ${w} ${h}`, width: Math.min(w, 320), class: "frame", role: "img" });
    svg.append(svgNode("image", { href: frame.image_url, x: 0, y: 0, width: w, height: h }));
    for (const box of frame.boxes) {
      const [x1, y1, x2, y2] = box.xyxy;
      const rect = svgNode("rect", { x: x1, y: y1, width: x2 - x1, height: y2 - y1, class: "box", fill: "none", stroke: "#e5484d", "stroke-width": Math.max(1, w / 200), "data-box": box.xyxy.join(",") });
      const title = svgNode("title", {});
      title.textContent = `class ${box.class_id} · ${box.confidence.toFixed(2)}`;
      rect.append(title);
      svg.append(rect);
    }
    holder.replaceChildren(svg);
  };
  probe.onerror = () => holder.replaceChildren(Loupe.el("span", { class: "error", "data-error": "" }, "the image could not be loaded"));
  probe.src = frame.image_url;
  return holder;
}

function frameFigure(frame) {
  const caption = Loupe.el(
    "figcaption",
    {},
    `${frame.frame_id} · model ${text(frame.model_version)} · top confidence ${text(frame.max_confidence)}`,
    Loupe.el("br"),
    Loupe.el("span", { class: "muted" }, `${text(frame.reason)} · uploaded ${text(frame.uploaded)}`),
  );
  if (frame.note) caption.append(Loupe.el("br"), Loupe.el("span", { class: "muted", "data-note": "" }, frame.note));
  const list = Loupe.el(
    "ul",
    { class: "box-list" },
    ...(frame.boxes.length
      ? frame.boxes.map((b) => Loupe.el("li", {}, `class ${b.class_id} ${b.confidence.toFixed(2)} at [${b.xyxy.map((v) => Math.round(v)).join(", ")}]`))
      : [Loupe.el("li", { class: "muted" }, "no box")]),
  );
  return Loupe.el("figure", { "data-frame": frame.frame_id, "data-key": frame.key }, frameView(frame), caption, list);
}

function renderFrames(frames) {
  const root = document.getElementById("frames");
  const sections = Object.keys(frames)
    .sort()
    .filter((thing) => frames[thing].length)
    .map((thing) => {
      const sig = frames[thing].map((f) => f.key).join("|");
      const old = root.querySelector(`section[data-thing="${CSS.escape(thing)}"]`);
      if (old && old.dataset.sig === sig) return old; // unchanged: keep the images drawn (their URLs are fresh enough)
      const section = Loupe.el("section", { class: "device-frames", "data-thing": thing }, Loupe.el("h3", {}, thing), Loupe.el("div", { class: "frames" }, ...frames[thing].map(frameFigure)));
      section.dataset.sig = sig;
      return section;
    });
  root.replaceChildren(...(sections.length ? sections : [Loupe.el("p", { class: "muted" }, "No device has sent an uncertain frame yet.")]));
}

function renderCanary(canary) {
  const section = document.getElementById("canary");
  section.hidden = !canary;
  if (!canary) return;
  const hold = canary.hold;
  const lines = [
    Loupe.el("p", { "data-canary-status": hold ? "HELD" : canary.status },
      `model ${text(canary.challenger_version)} on ${(canary.cohort || []).join(", ") || "–"} beside model ${text(canary.champion_version)}: `,
      Loupe.el("span", { class: `badge ${hold ? "HELD" : canary.status}` }, hold ? "HELD" : text(canary.status)),
      hold ? ` since ${text(hold.since)}, rolled back at ${text(hold.until)} unless decided` : ""),
  ];
  if (hold) {
    lines.push(Loupe.el("ul", {}, ...(hold.reasons || []).map((r) => Loupe.el("li", { class: "muted" }, r))));
    const row = (who, lab) =>
      Loupe.el("tr", { "data-labels": who },
        Loupe.el("td", {}, who),
        Loupe.el("td", {}, text(lab.frames)),
        Loupe.el("td", {}, `${text(lab.true_positives)}/${text(lab.predicted)}`),
        Loupe.el("td", { "data-precision": lab.precision ?? "" }, lab.precision == null ? "–" : Number(lab.precision).toFixed(3)),
        Loupe.el("td", {}, `${text(lab.ng_correct)}/${text(lab.ng_calls)}`));
    const labels = hold.labels || {};
    lines.push(Loupe.el("table", {},
      Loupe.el("thead", {}, Loupe.el("tr", {}, ...["model", "labeled frames", "boxes right", "precision", "NG calls correct"].map((h) => Loupe.el("th", {}, h)))),
      Loupe.el("tbody", {}, row("challenger", labels.canary || {}), row("champion", labels.champion || {}))));
  }
  document.getElementById("canary-state").replaceChildren(...lines);
}

async function refresh() {
  const data = await Loupe.api("GET", "/fleet");
  renderCanary(data.canary);
  fill(
    "devices",
    data.devices.map((d) =>
      Loupe.el(
        "tr",
        { "data-thing": d.thing },
        Loupe.el("td", {}, d.thing),
        Loupe.el("td", {}, Loupe.el("span", { class: `badge ${d.status}` }, d.status)),
        Loupe.el("td", {}, text(d.last_update)),
        Loupe.el("td", {}, text(d.model_component)),
        Loupe.el("td", { class: "serving", "data-serving": d.serving }, text(d.serving)),
        Loupe.el("td", {}, text(d.health_updated)),
      ),
    ),
    `No device in thing group ${data.thing_group} yet.`,
  );
  fill(
    "deployments",
    data.deployments.map((r) =>
      Loupe.el(
        "tr",
        { "data-model": r.model_version, "data-outcome": r.outcome },
        Loupe.el("td", {}, text(r.finished)),
        Loupe.el("td", {}, text(r.model_version)),
        Loupe.el("td", {}, text(r.mode)),
        Loupe.el("td", {}, text(r.deployment_id)),
        Loupe.el("td", {}, Loupe.el("span", { class: `badge ${r.outcome}` }, text(r.outcome))),
        Loupe.el("td", {}, Object.entries(r.devices || {}).map(([t, d]) => `${t}: ${(d && d.status) || d}`).join(", ") || "–"),
        Loupe.el("td", { class: "muted" }, text(r.reason)),
      ),
    ),
    "No deployment yet.",
  );
  renderFrames(data.frames || {});
}

Loupe.ready(() => Loupe.poll(refresh, 10000));
