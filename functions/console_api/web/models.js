// Models: the package group's packages with the gate's numbers and the field agreement of a candidate that ran beside
// production (GET /models); Approve / Reject for the approvers group (POST /models/{version}/approval).
"use strict";

Loupe.ready((me) => {
  const $ = (id) => document.getElementById(id);
  const approver = (me.groups || []).includes("approvers");
  let packages = [];
  let chosen = null;
  let deciding = false;

  const pct = (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)}%` : "—");
  const num = (v) => (v === undefined || v === null || v === "" || Number.isNaN(Number(v)) ? null : Number(v));
  const fixed = (v) => (num(v) === null ? "—" : num(v).toFixed(3));

  function agreementText(f) {
    if (!f) return "not run beside production";
    return `${pct(f.verdict_agreement)} of ${f.frames} frames on ${f.devices} device(s)`;
  }

  function row(p) {
    const g = p.gate || {};
    return Loupe.el(
      "tr",
      { "data-version": p.version, class: chosen === p.version ? "selected" : null, onclick: () => choose(p.version) },
      Loupe.el("td", {}, `v${p.version}`),
      Loupe.el("td", {}, Loupe.el("span", { class: `badge ${p.approval}`, "data-approval": p.approval }, p.approval)),
      Loupe.el("td", {}, fixed(g.test_map50), g.test_map50_ci90 ? Loupe.el("span", { class: "muted" }, ` (${g.test_map50_ci90})`) : ""),
      Loupe.el("td", {}, fixed(g.champion_map50)),
      Loupe.el("td", { class: "muted" }, g.gate_reason || "—"),
      Loupe.el("td", {}, agreementText(p.field_agreement)),
      Loupe.el("td", {}, g.dataset_version ? `v${g.dataset_version}` : "—"),
      Loupe.el("td", { class: "muted" }, p.created ? new Date(p.created).toLocaleString() : ""),
    );
  }

  function fieldTable(f) {
    if (!f) return Loupe.el("p", { class: "muted" }, "This package has not run beside production (shadow mode) yet.");
    const rows = [
      ["frames compared", f.frames],
      ["devices", f.devices],
      ["verdict agreement", pct(f.verdict_agreement)],
      ["missed defects (production NG, candidate OK)", f.missed_defects],
      ["false alarms (production OK, candidate NG)", f.false_alarms],
      ["candidate errors", f.errors],
      ["last window", f.last_window_end || "—"],
    ];
    return Loupe.el("table", { class: "facts-table", "data-field": f.model_version }, rows.map(([k, v]) => Loupe.el("tr", {}, Loupe.el("th", {}, k), Loupe.el("td", {}, String(v)))));
  }

  const SVG = "http://www.w3.org/2000/svg";
  const evaluations = new Map(); // version -> the API's evaluation answer (its URLs last minutes: refetched on choose)

  // One sample test frame with its truth (green), the candidate's (orange) and the champion's (purple) boxes.
  function sampleFigure(s) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${s.width} ${s.height}`);
    const add = (cls, box, label) => {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", box[0]);
      r.setAttribute("y", box[1]);
      r.setAttribute("width", Math.max(0, box[2] - box[0]));
      r.setAttribute("height", Math.max(0, box[3] - box[1]));
      r.setAttribute("class", `box ${cls}`);
      r.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(r);
      if (label) {
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", box[0] + 2);
        t.setAttribute("y", Math.max(10, box[1] - 3));
        t.setAttribute("class", `label ${cls}`);
        t.setAttribute("font-size", Math.max(10, Math.round(s.width / 40)));
        t.textContent = label;
        svg.append(t);
      }
    };
    s.truth.forEach((b) => add("truth", b));
    s.predictions.forEach((p) => add("predicted", p.box, typeof p.conf === "number" ? p.conf.toFixed(2) : ""));
    (s.champion_predictions || []).forEach((p) => add("champion", p.box));
    const img = Loupe.el("img", { src: s.image_url, alt: s.image, width: String(s.width), height: String(s.height) });
    const shot = Loupe.el("div", { class: "shot" }, img);
    img.addEventListener("error", () => shot.classList.add("broken"));
    shot.append(svg);
    return Loupe.el(
      "figure",
      { "data-sample": s.image },
      shot,
      Loupe.el("figcaption", { class: "muted" }, `${s.truth.length} true · ${s.predictions.length} predicted`),
    );
  }

  function samplesSection(version) {
    const out = evaluations.get(version);
    const section = Loupe.el("div", { id: "samples", "data-loaded": out ? "true" : "false" }, Loupe.el("h3", {}, "Evaluation samples (test split)"));
    if (!out) section.append(Loupe.el("p", { class: "muted" }, "Loading the evaluation samples…"));
    else if (!out.measured) section.append(Loupe.el("p", { class: "muted" }, `No samples: ${out.reason}.`));
    else if (!out.samples.length) section.append(Loupe.el("p", { class: "muted" }, "The evaluation kept no sample frames."));
    else {
      section.append(
        Loupe.el(
          "p",
          { class: "muted legend" },
          Loupe.el("span", { class: "key truth" }),
          "truth",
          Loupe.el("span", { class: "key predicted" }),
          "this package",
          Loupe.el("span", { class: "key champion" }),
          "champion",
        ),
        Loupe.el("div", { class: "frames" }, out.samples.map(sampleFigure)),
      );
    }
    return section;
  }

  async function loadSamples(version) {
    try {
      evaluations.set(version, await Loupe.api("GET", `/models/${encodeURIComponent(version)}/evaluation`));
    } catch (err) {
      evaluations.set(version, { measured: false, reason: err.message, samples: [] });
    }
    if (chosen === version) detail();
  }

  function detail() {
    const p = packages.find((x) => x.version === chosen);
    const box = $("detail");
    if (!p) {
      box.hidden = true;
      return;
    }
    const g = p.gate || {};
    // a re-render (the evaluation arriving, a refresh) keeps what the approver typed for this package, and the focus
    const typed = document.getElementById("decision-reason");
    const same = box.dataset.version === String(p.version);
    const kept = typed && same ? typed.value : "";
    const focused = typed && same && document.activeElement === typed;
    const reason = Loupe.el("input", { id: "decision-reason", maxlength: "512", placeholder: "reason (optional)" });
    reason.value = kept;
    const decide = (decision) => async () => {
      if (deciding) return;
      deciding = true;
      for (const b of box.querySelectorAll("button")) b.disabled = true;
      try {
        const out = await Loupe.api("POST", `/models/${encodeURIComponent(p.version)}/approval`, { decision, reason: reason.value.trim() });
        Loupe.show(`${out.approval_description}. ${decision === "Approved" ? "The edge deployment starts from the package's state change." : ""}`, "ok");
      } catch (err) {
        Loupe.show(`${decision === "Approved" ? "Approve" : "Reject"} failed (HTTP ${err.status}): ${err.message}`, "error");
      } finally {
        deciding = false;
      }
      await refresh();
    };
    const actions = approver
      ? Loupe.el(
          "div",
          { class: "toolbar", id: "decision" },
          reason,
          Loupe.el("button", { id: "approve", class: "primary", type: "button", disabled: p.approval === "Approved", onclick: decide("Approved") }, "Approve"),
          Loupe.el("button", { id: "reject", class: "danger", type: "button", disabled: p.approval === "Rejected", onclick: decide("Rejected") }, "Reject"),
        )
      : Loupe.el("p", { class: "muted", id: "no-decision" }, "Only the approvers group approves or rejects packages.");
    box.replaceChildren(
      Loupe.el("h3", {}, `Package v${p.version} `, Loupe.el("span", { class: `badge ${p.approval}` }, p.approval)),
      Loupe.el("p", { class: "muted" }, p.approval_description || "No decision recorded yet."),
      Loupe.el(
        "div",
        { class: "grid" },
        Loupe.el(
          "div",
          {},
          Loupe.el("h3", {}, "Gate (test split)"),
          Loupe.el(
            "table",
            { class: "facts-table" },
            [
              ["test mAP@50", fixed(g.test_map50)],
              ["90% interval", g.test_map50_ci90 || "—"],
              ["champion mAP@50", fixed(g.champion_map50)],
              ["bar to pass", fixed(g.champion_bar)],
              ["verdict", g.gate_reason || "—"],
              ["dataset version", g.dataset_version ? `v${g.dataset_version}` : "—"],
            ].map(([k, v]) => Loupe.el("tr", {}, Loupe.el("th", {}, k), Loupe.el("td", {}, v))),
          ),
        ),
        Loupe.el("div", {}, Loupe.el("h3", {}, "Field agreement (beside production)"), fieldTable(p.field_agreement)),
      ),
      actions,
      samplesSection(p.version),
    );
    box.dataset.version = String(p.version);
    box.hidden = false;
    if (focused) reason.focus();
  }

  function choose(version) {
    chosen = version;
    evaluations.delete(version);
    loadSamples(version);
    for (const tr of document.querySelectorAll("#packages tr")) tr.classList.toggle("selected", Number(tr.dataset.version) === version);
    detail();
  }

  async function refresh() {
    if (deciding) return;
    const out = await Loupe.api("GET", "/models");
    $("group").textContent = out.group;
    packages = out.packages || [];
    $("models-empty").hidden = packages.length > 0;
    if (!packages.some((p) => p.version === chosen)) {
      const waiting = packages.find((p) => p.approval === "PendingManualApproval");
      chosen = waiting ? waiting.version : packages.length ? packages[0].version : null;
      if (chosen !== null) loadSamples(chosen);
    }
    const focused = document.activeElement && document.activeElement.id === "decision-reason";
    $("packages").replaceChildren(...packages.map(row));
    if (!focused) detail();
  }

  Loupe.poll(refresh, 5000);
});
