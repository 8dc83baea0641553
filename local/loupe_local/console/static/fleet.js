// Fleet: core devices, the model each serves, health, deployments with per-device outcome, each device's latest
// results with their boxes (over the real image for the uncertain frames the device uploaded).
"use strict";

async function refresh() {
  const data = await api("GET", "/api/fleet");
  fillTable(
    "devices",
    data.devices.map((d) => {
      const h = d.health || {};
      const lat = h.latency_ms || {};
      const outbox = h.outbox ? `${h.outbox.results} results, ${h.outbox.uploads} uploads` : "–";
      const dep = d.deployment || {};
      return el(
        "tr",
        { "data-thing": d.thing },
        el("td", {}, d.thing),
        el("td", {}, el("span", { class: `badge ${d.status}` }, d.status)),
        el("td", { class: "serving" }, fmt(d.serving)),
        el("td", {}, fmt(d.model_component)),
        el("td", {}, fmt(h.fps, 1)),
        el("td", {}, fmt(lat.p50, 1)),
        el("td", {}, fmt(lat.p95, 1)),
        el("td", {}, h.uncertain_share === null || h.uncertain_share === undefined ? "–" : `${(h.uncertain_share * 100).toFixed(1)}%`),
        el("td", {}, outbox),
        el("td", {}, dep.status ? `${dep.status} ${dep.reason || ""}` : "–"),
      );
    }),
  );
  fillTable(
    "deployments",
    data.deployments.map((r) =>
      el(
        "tr",
        { "data-model": r.model_version, "data-outcome": r.outcome },
        el("td", {}, fmt(r.finished)),
        el("td", {}, fmt(r.model_version)),
        el("td", {}, fmt(r.mode)),
        el("td", {}, el("span", { class: `badge ${r.outcome}` }, r.outcome)),
        el("td", {}, Object.entries(r.devices || {}).map(([t, d]) => `${t}: ${d.status}`).join(", ") || "–"),
        el("td", { class: "muted" }, fmt(r.reason)),
      ),
    ),
  );
  renderFrames(data.devices.map((d) => d.thing), data.frames || {});
}

// One result as the device published it: its boxes over the real image where the device uploaded the frame
// (an uncertain one, in the raw bucket), else a plain statement that the device sent no pixels.
function frameFigure(thing, f) {
  const size = f.image || {};
  const boxes = (f.boxes || []).map((b) => ({ xyxy: b.xyxy, kind: "result", label: `${b.class_name} ${fmt(b.confidence, 2)}` }));
  const caption = el(
    "figcaption",
    {},
    `${f.source || f.frame_id} · model ${fmt(f.model_version)} · ${f.verdict || ""}${f.uncertain ? " · uncertain" : ""}`,
    el("br"),
    el("span", { class: "muted" }, fmt(f.timestamp)),
  );
  const pixels = f.pixels || {};
  let view;
  if (pixels.key && size.width && size.height) {
    const url = `/api/fleet/${encodeURIComponent(thing)}/frames/${encodeURIComponent(f.frame_id)}/image`;
    view = imageWithBoxes(url, size.width, size.height, boxes, 220, (why) => caption.append(el("br"), el("span", { class: "error", "data-error": "" }, why)));
    caption.append(el("br"), el("span", { class: "muted", "data-key": pixels.key }, `uploaded: ${pixels.key}`));
  } else {
    view = el("div", { class: "no-image", "data-missing": "" }, pixels.missing || "image not sent by the device (only uncertain frames are uploaded)");
  }
  const list = el(
    "ul",
    { class: "box-list" },
    ...(boxes.length ? boxes.map((b) => el("li", {}, `${b.label} at [${b.xyxy.map((v) => Math.round(v)).join(", ")}]`)) : [el("li", { class: "muted" }, "no box above the confidence threshold")]),
  );
  if (f.boxes_truncated) list.append(el("li", { class: "muted" }, `${f.boxes_truncated} more not sent (message size)`));
  return el("figure", { "data-frame": f.frame_id, "data-pixels": pixels.key ? "s3" : "none" }, view, caption, list);
}

function renderFrames(things, frames) {
  const root = document.getElementById("frames");
  const all = [...new Set([...things, ...Object.keys(frames)])].sort();
  const sections = all.map((thing) => {
    const results = frames[thing] || [];
    const sig = JSON.stringify(results.map((f) => [f.frame_id, (f.pixels || {}).key || (f.pixels || {}).missing]));
    const old = root.querySelector(`section[data-thing="${CSS.escape(thing)}"]`);
    if (old && old.dataset.sig === sig) return old; // unchanged: keep its images as they are
    const body = results.length
      ? el("div", { class: "frames" }, ...results.map((f) => frameFigure(thing, f)))
      : el("p", { class: "muted" }, "No inference result seen since the console started.");
    const section = el("section", { class: "device-frames", "data-thing": thing }, el("h3", {}, thing), body);
    section.dataset.sig = sig;
    return section;
  });
  root.replaceChildren(...sections);
  if (!all.length) root.append(el("p", { class: "muted" }, "No device in the fleet yet."));
}

poll(refresh, 2000);
