// Models: the package group, champion vs challenger on the same test images with the spread (the evaluation's
// details.json), sample test frames with their boxes, model cards, Approve / Reject (UpdateModelPackage, as in
// SageMaker Studio).
"use strict";

let chosen = null; // the version a person clicked; else the challenger waiting for approval, else the newest

function num(value) {
  const n = Number(value);
  return value === undefined || value === null || value === "" || Number.isNaN(n) ? null : n;
}

function measured(p) {
  return p.evaluation && p.evaluation.measured ? p.evaluation : null;
}

function testMap(p) {
  const ev = measured(p);
  return (ev && ev.fp32 && ev.fp32.map50) ?? num(p.metadata.test_map50) ?? num(p.card && p.card.metrics && p.card.metrics.map50);
}

function championMap(p) {
  const ev = measured(p);
  if (ev && ev.champion) return ev.champion.present ? ev.champion.map50 : null;
  return num(p.metadata.champion_map50);
}

async function act(version, action) {
  const verb = action === "approve" ? "Approve" : "Reject";
  for (const b of document.querySelectorAll("#packages button")) b.disabled = true;
  try {
    const out = await api("POST", `/api/models/${version}/${action}`, { description: `${verb}d in the Loupe local console` });
    showMessage(`${out.ok}: the edge deployment workflow picks it up from the model package state change event.`, "ok");
  } catch (err) {
    showMessage(`${verb} failed: ${err.message}`, "error");
  }
  await refresh();
}

// One horizontal axis from `from` to `to`: an interval (ci) with its point, and vertical marks ({value, label, cls}).
function intervalChart(from, to, ci, point, marks, field) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 520, H = 58, left = 26, right = 26;
  const x = (v) => left + ((v - from) / (to - from || 1)) * (W - left - right);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("data-chart", field);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: x(from), x2: x(to), y1: 40, y2: 40, class: "axis" });
  for (const v of [from, (from + to) / 2, to]) {
    add("text", { x: x(v), y: 54, class: "tick", "text-anchor": "middle" }, v.toFixed(2));
  }
  for (const m of marks) {
    if (m.value === null || m.value === undefined) continue;
    add("line", { x1: x(m.value), x2: x(m.value), y1: 4, y2: 40, class: `mark ${m.cls}` });
    const before = m.side === "left";
    add("text", { x: x(m.value) + (before ? -3 : 3), y: 11, class: `mark-label ${m.cls}`, "text-anchor": before ? "end" : "start" }, m.label);
  }
  if (ci) {
    add("line", { x1: x(ci[0]), x2: x(ci[1]), y1: 26, y2: 26, class: "ci" });
    for (const v of ci) add("line", { x1: x(v), x2: x(v), y1: 21, y2: 31, class: "ci" });
  }
  if (point !== null && point !== undefined) add("circle", { cx: x(point), cy: 26, r: 4, class: "point" });
  return svg;
}

function spreadSection(p, ev) {
  const fp32 = ev.fp32 || {};
  const spread = fp32.spread;
  const champion = ev.champion || { present: false };
  const cmp = ev.comparison;
  const lines = [];
  const spreadText = spread
    ? ` · 90% interval ${interval(spread.ci90, 4)} (bootstrap: ${fmt(spread.bootstrap)} resamples of ${fmt(spread.images)} test images)`
    : " · spread not measured";
  lines.push(
    el("p", {}, `Test mAP50 of version ${p.version}: `, el("strong", { "data-field": "challenger-map50" }, fmt(fp32.map50, 4)),
      el("span", { "data-field": "challenger-ci90" }, spreadText)),
  );
  const values = [fp32.map50];
  if (spread) values.push(...spread.ci90);
  if (champion.present) {
    values.push(champion.map50);
    lines.push(el("p", { "data-field": "champion" }, `Champion ${champion.version || champion.arn} on the same test images: mAP50 ${fmt(champion.map50, 4)}`));
    if (cmp) {
      lines.push(
        el("p", {}, "Difference (challenger − champion): ", el("strong", { "data-field": "difference" }, signed(cmp.difference, 4)),
          el("span", { "data-field": "difference-ci90" }, ` · 90% interval ${interval(cmp.ci90, 4, true)}`),
          cmp.p_challenger_better !== null ? ` · P(challenger better) ${fmt(cmp.p_challenger_better, 2)}` : ""),
      );
      if (cmp.champion_bar !== null) {
        values.push(cmp.champion_bar);
        const margin = cmp.margin !== null ? `, margin ${fmt(cmp.margin, 4)}` : "";
        const from = ` (from the champion's ${fmt(champion.map50, 4)} and the spread of the difference${margin})`;
        const where = fp32.map50 === null ? "" : ` · the challenger's ${fmt(fp32.map50, 4)} is ${fp32.map50 >= cmp.champion_bar ? "at or above" : "below"} it`;
        lines.push(el("p", {}, "Gate's bar: ", el("strong", { "data-field": "champion-bar" }, fmt(cmp.champion_bar, 4)), `${from}${where}`));
      } else {
        lines.push(el("p", { class: "muted", "data-field": "champion-bar" }, "Gate's bar: not measured"));
      }
    } else {
      lines.push(el("p", { class: "muted", "data-field": "difference" }, "Paired difference with the champion: not measured (evaluated before the comparison was recorded)"));
    }
  } else {
    lines.push(el("p", { class: "muted", "data-field": "champion" }, "No champion was compared: no approved package when this one was evaluated."));
  }
  const known = values.filter((v) => v !== null && v !== undefined);
  if (known.length) {
    const from = Math.max(0, Math.min(...known) - 0.05);
    const to = Math.min(1, Math.max(...known) + 0.05);
    const marks = [];
    if (champion.present) marks.push({ value: champion.map50, label: "champion", cls: "champion" });
    if (cmp && cmp.champion_bar !== null) marks.push({ value: cmp.champion_bar, label: "gate's bar", cls: "bar" });
    marks.sort((a, b) => a.value - b.value);
    if (marks.length > 1) marks[0].side = "left"; // two labels side by side, never on top of each other
    lines.push(el("div", { class: "chart-row" }, el("span", { class: "chart-title" }, "mAP50"), intervalChart(from, to > from ? to : from + 0.1, spread && spread.ci90, fp32.map50, marks, "map50")));
  }
  if (cmp && (cmp.ci90 || cmp.difference !== null)) {
    const vals = [cmp.difference, ...(cmp.ci90 || [])].filter((v) => v !== null).map(Math.abs);
    const m = Math.max(0.01, ...vals) * 1.25;
    lines.push(el("div", { class: "chart-row" }, el("span", { class: "chart-title" }, "difference"), intervalChart(-m, m, cmp.ci90, cmp.difference, [{ value: 0, label: "0", cls: "zero" }], "difference")));
  }
  return lines;
}

function sampleFigure(p, s) {
  const boxes = s.truth.map((b) => ({ xyxy: b, kind: "truth" }));
  boxes.push(...s.predictions.map((d) => ({ xyxy: d.box, kind: "predicted", label: d.conf === null ? "" : d.conf.toFixed(2) })));
  if (s.champion_predictions) boxes.push(...s.champion_predictions.map((d) => ({ xyxy: d.box, kind: "champion", label: d.conf === null ? "" : d.conf.toFixed(2) })));
  const caption = el("figcaption", {});
  const name = s.image.replace(/^samples\//, "");
  const counts = `${s.truth.length} true · ${s.predictions.length} predicted` + (s.champion_predictions ? ` · ${s.champion_predictions.length} by the champion` : "");
  caption.append(el("span", {}, name), el("br"), el("span", { class: "muted" }, `${counts}${s.conf_threshold !== null ? ` (conf ≥ ${s.conf_threshold})` : ""}`));
  const url = `/api/models/${encodeURIComponent(p.version)}/evaluation/${s.image.split("/").map(encodeURIComponent).join("/")}`;
  const shot = imageWithBoxes(url, s.width, s.height, boxes, 300, (why) => caption.append(el("br"), el("span", { class: "error", "data-error": "" }, why)));
  return el("figure", { "data-sample": s.image }, shot, caption);
}

function renderEvaluation(p) {
  const spread = document.getElementById("spread");
  const samples = document.getElementById("samples");
  document.getElementById("evaluation-version").textContent = p ? `version ${p.version}` : "";
  const ev = (p && p.evaluation) || {};
  const sig = JSON.stringify([p && p.version, ev.folder, ev.measured, ev.error, ev.reason]);
  if (spread.dataset.sig === sig) return; // an evaluation never changes: keep the images as they are
  spread.dataset.sig = sig;
  spread.classList.remove("muted");
  if (!p) {
    spread.replaceChildren(el("p", { class: "muted" }, "No model package yet."));
    samples.replaceChildren();
  } else if (ev.error) {
    spread.replaceChildren(el("p", { class: "error", "data-field": "evaluation-error" }, ev.error));
    samples.replaceChildren();
  } else if (!ev.measured) {
    spread.replaceChildren(el("p", { class: "muted", "data-field": "not-measured" }, `Not measured: ${ev.reason || "no evaluation details"}.`));
    samples.replaceChildren(el("p", { class: "muted", "data-field": "no-samples" }, "Sample test frames: not measured."));
  } else {
    spread.replaceChildren(...spreadSection(p, ev));
    if (!ev.samples || !ev.samples.length) {
      samples.replaceChildren(el("p", { class: "muted", "data-field": "no-samples" }, "Sample test frames: not measured (this evaluation kept none)."));
    } else {
      samples.replaceChildren(...ev.samples.map((s) => sampleFigure(p, s)));
    }
  }
}

function showCard(p) {
  document.getElementById("card-version").textContent = `version ${p.version}`;
  const card = document.getElementById("card");
  card.classList.remove("muted");
  card.textContent = JSON.stringify(p.card || {}, null, 2);
  for (const tr of document.querySelectorAll("#packages tbody tr")) tr.classList.toggle("selected", tr.dataset.version === String(p.version));
  renderEvaluation(p);
}

function comparisonLine(c, champion) {
  const ev = measured(c);
  const a = testMap(c);
  const b = championMap(c) ?? testMap(champion);
  let line = `Challenger ${c.version} vs champion ${champion.version} on the same test images: mAP50 ${fmt(a, 4)} vs ${fmt(b, 4)}`;
  const cmp = ev && ev.comparison;
  if (cmp && cmp.difference !== null) {
    line += ` (difference ${signed(cmp.difference, 4)}, 90% interval ${interval(cmp.ci90, 4, true)}` + (cmp.champion_bar !== null ? `; gate's bar ${cmp.champion_bar.toFixed(4)})` : ")");
  } else if (a !== null && b !== null) {
    line += ` (difference ${signed(a - b, 4)}; spread not measured)`;
  }
  return line;
}

// The package's agreement with production on the devices' frames while it ran beside it (shadow mode): not accuracy
// (nobody labelled those frames), but where and how often the two models disagree.
function fieldCell(field) {
  if (!field || !field.frames) {
    return el("td", { "data-field": "field-agreement" }, el("span", { class: "muted" }, field ? "no frame compared yet" : "not shadowed"));
  }
  const share = field.verdict_agreement === null ? "–" : `${(100 * field.verdict_agreement).toFixed(1)} %`;
  return el(
    "td",
    { "data-field": "field-agreement", title: `model ${field.model_version} beside production, last window ${field.last_window_end || "–"}` },
    `${share} of ${field.frames} frames · ${field.devices} devices`,
    el("div", { class: "muted" }, `${field.false_alarms} false alarms · ${field.missed_defects} missed · ${field.errors} errors`),
  );
}

async function refresh() {
  const data = await api("GET", "/api/models");
  document.getElementById("group").textContent = data.group;
  const champion = data.packages.find((p) => p.arn === data.champion);
  const rows = data.packages.map((p) => {
    const ev = measured(p);
    const mine = testMap(p);
    const champ = championMap(p);
    const cmp = ev && ev.comparison;
    const gain = cmp && cmp.difference !== null ? cmp.difference : mine !== null && champ !== null ? mine - champ : null;
    const spread = ev && ev.fp32 && ev.fp32.spread;
    const actions = el(
      "td",
      {},
      el("button", { class: "primary", "data-action": "approve", disabled: p.approval === "Approved" ? "" : null, onclick: (e) => { e.stopPropagation(); act(p.version, "approve"); } }, "Approve"),
      " ",
      el("button", { class: "danger", "data-action": "reject", disabled: p.approval === "Rejected" ? "" : null, onclick: (e) => { e.stopPropagation(); act(p.version, "reject"); } }, "Reject"),
    );
    return el(
      "tr",
      { "data-version": p.version, onclick: () => { chosen = p.version; showCard(p); } },
      el("td", {}, p.version, p.arn === data.champion ? el("span", { class: "badge Approved" }, " champion") : ""),
      el("td", {}, el("span", { class: `badge ${p.approval}`, "data-approval": p.approval }, p.approval),
        // a model the gate refused (the pipeline's RegisterRefused step): its reason, before anyone approves it
        p.metadata.gate === "refused"
          ? el("div", { class: "badge Rejected", "data-field": "gate-refused", title: p.metadata.training_diagnosis || "" },
            `refused by the gate: ${p.metadata.gate_refusal || "no reason recorded"}`)
          : ""),
      el("td", {}, p.created),
      el("td", {}, p.metadata.dataset_version ? `v${p.metadata.dataset_version}` : "–"),
      el("td", {}, fmt(mine, 4), spread ? el("span", { class: "muted" }, ` ${interval(spread.ci90, 3)}`) : ""),
      el("td", {}, ev && ev.champion && !ev.champion.present ? el("span", { class: "muted" }, "none compared") : fmt(champ, 4)),
      el("td", {}, gain === null ? "–" : signed(gain, 4), cmp && cmp.ci90 ? el("span", { class: "muted" }, ` ${interval(cmp.ci90, 3, true)}`) : ""),
      fieldCell(p.field_agreement),
      actions,
    );
  });
  fillTable("packages", rows);
  const pending = data.packages.filter((p) => p.approval === "PendingManualApproval");
  const comparison = document.getElementById("comparison");
  if (!data.packages.length) {
    comparison.textContent = "No model package yet: the training pipeline registers one after a dataset version passes its gate.";
  } else if (champion && pending.length) {
    comparison.textContent = comparisonLine(pending[0], champion);
  } else if (champion) {
    comparison.textContent = `Champion: version ${champion.version} (mAP50 ${fmt(testMap(champion), 4)} on its test split). No challenger waits for approval.`;
  } else {
    comparison.textContent = `No champion yet: ${pending.length} package(s) wait for approval.`;
  }
  const shown = data.packages.find((x) => x.version === chosen) || pending[0] || data.packages[0];
  if (shown) showCard(shown);
  else renderEvaluation(null);
}

poll(refresh, 3000);
