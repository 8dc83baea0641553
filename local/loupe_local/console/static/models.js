// Models: the package group, champion vs challenger on the same test split, model cards, Approve / Reject
// (UpdateModelPackage, as in SageMaker Studio).
"use strict";

let chosen = null;

function num(value) {
  const n = Number(value);
  return value === undefined || value === null || value === "" || Number.isNaN(n) ? null : n;
}

function testMap(p) {
  return num(p.metadata.test_map50) ?? num(p.card && p.card.metrics && p.card.metrics.map50);
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

function showCard(p) {
  chosen = p.version;
  document.getElementById("card-version").textContent = `version ${p.version}`;
  const card = document.getElementById("card");
  card.classList.remove("muted");
  card.textContent = JSON.stringify(p.card || {}, null, 2);
  for (const tr of document.querySelectorAll("#packages tbody tr")) tr.classList.toggle("selected", tr.dataset.version === String(p.version));
}

async function refresh() {
  const data = await api("GET", "/api/models");
  document.getElementById("group").textContent = data.group;
  const champion = data.packages.find((p) => p.arn === data.champion);
  const rows = data.packages.map((p) => {
    const mine = testMap(p);
    const champ = num(p.metadata.champion_map50);
    const gain = mine !== null && champ !== null && p.metadata.champion_map50 !== undefined ? mine - champ : null;
    const actions = el(
      "td",
      {},
      el("button", { class: "primary", "data-action": "approve", disabled: p.approval === "Approved" ? "" : null, onclick: (e) => { e.stopPropagation(); act(p.version, "approve"); } }, "Approve"),
      " ",
      el("button", { class: "danger", "data-action": "reject", disabled: p.approval === "Rejected" ? "" : null, onclick: (e) => { e.stopPropagation(); act(p.version, "reject"); } }, "Reject"),
    );
    return el(
      "tr",
      { "data-version": p.version, class: chosen === p.version ? "selected" : "", onclick: () => showCard(p) },
      el("td", {}, p.version, p.arn === data.champion ? el("span", { class: "badge Approved" }, " champion") : ""),
      el("td", {}, el("span", { class: `badge ${p.approval}`, "data-approval": p.approval }, p.approval)),
      el("td", {}, p.created),
      el("td", {}, p.metadata.dataset_version ? `v${p.metadata.dataset_version}` : "–"),
      el("td", {}, fmt(mine, 4)),
      el("td", {}, fmt(champ, 4)),
      el("td", {}, gain === null ? "–" : `${gain >= 0 ? "+" : ""}${gain.toFixed(4)}`),
      actions,
    );
  });
  fillTable("packages", rows);
  const pending = data.packages.filter((p) => p.approval === "PendingManualApproval");
  const comparison = document.getElementById("comparison");
  if (!data.packages.length) {
    comparison.textContent = "No model package yet: the training pipeline registers one after a dataset version passes its gate.";
  } else if (champion && pending.length) {
    const c = pending[0];
    const a = testMap(c);
    const b = num(c.metadata.champion_map50) ?? testMap(champion);
    comparison.textContent = `Challenger ${c.version} vs champion ${champion.version} on the same test images: mAP50 ${fmt(a, 4)} vs ${fmt(b, 4)}` + (a !== null && b !== null ? ` (difference ${(a - b >= 0 ? "+" : "") + (a - b).toFixed(4)})` : "");
  } else if (champion) {
    comparison.textContent = `Champion: version ${champion.version} (mAP50 ${fmt(testMap(champion), 4)} on its test split). No challenger waits for approval.`;
  } else {
    comparison.textContent = `No champion yet: ${pending.length} package(s) wait for approval.`;
  }
  if (chosen !== null) {
    const p = data.packages.find((x) => x.version === chosen);
    if (p) showCard(p);
  }
}

poll(refresh, 3000);
