// Fleet: core devices, the model each serves, health, deployments with per-device outcome, latest frames.
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
  document.getElementById("frames").replaceChildren(
    ...data.frames.map((f) => {
      const boxes = (f.boxes || []).map((b) => ({
        left: b.xyxy[0],
        top: b.xyxy[1],
        width: b.xyxy[2] - b.xyxy[0],
        height: b.xyxy[3] - b.xyxy[1],
        label: `${b.class_name} ${b.confidence}`,
      }));
      const image = f.image || { width: 64, height: 48 };
      return el(
        "figure",
        {},
        boxesSvg(image.width, image.height, boxes, null, 200),
        el("figcaption", {}, `${f.thing} · ${f.source} · model ${f.model_version} · ${f.verdict || ""}${f.uncertain ? " · uncertain" : ""}`),
      );
    }),
  );
  if (!data.frames.length) document.getElementById("frames").append(el("p", { class: "muted" }, "No inference result seen since the console started."));
}

poll(refresh, 2000);
