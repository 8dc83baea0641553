// Loop: ledger counts by status and origin, dataset versions with parents, running executions, the timeline.
"use strict";

async function refresh() {
  const data = await api("GET", "/api/loop");
  const ledger = data.ledger;
  fillTable(
    "ledger",
    Object.entries(ledger.by_status).map(([status, n]) =>
      el(
        "tr",
        { "data-status": status },
        el("td", {}, status),
        el("td", { class: "count" }, n),
        el("td", { class: "muted" }, Object.entries(ledger.by_status_origin[status] || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "–"),
      ),
    ),
  );
  fillTable(
    "running",
    data.executions.length
      ? data.executions.map((e) => el("tr", {}, el("td", {}, e.kind), el("td", {}, e.name), el("td", {}, e.started)))
      : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "Nothing running."))],
  );
  fillTable(
    "datasets",
    data.datasets.map((d) => {
      const c = d.counts || {};
      return el(
        "tr",
        { "data-version": d.version },
        el("td", {}, `v${d.version}`),
        el("td", {}, d.parent === null || d.parent === undefined ? "–" : `v${d.parent}`),
        el("td", {}, fmt(d.created)),
        el("td", {}, fmt(c.images)),
        el("td", {}, fmt(c.boxes)),
        el("td", {}, `${fmt(c.train)} / ${fmt(c.val)} / ${fmt(c.test)}`),
        el("td", { class: "muted" }, Object.entries(c.by_origin || {}).map(([k, v]) => `${k}: ${v}`).join(", ")),
      );
    }),
  );
  fillTable(
    "timeline",
    data.timeline.map((t) =>
      el("tr", {}, el("td", {}, t.when), el("td", {}, t.what), el("td", {}, t.status ? el("span", { class: `badge ${t.status}` }, t.status) : "")),
    ),
  );
}

poll(refresh, 3000);
