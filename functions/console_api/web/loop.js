// Loop: the ledger's images by status, running executions, alarms, labeling runs, dataset versions, the timeline.
"use strict";

const { text, fill } = Loupe;

function row(attrs, ...cells) {
  return Loupe.el("tr", attrs, ...cells.map((c) => (c instanceof Node ? Loupe.el("td", {}, c) : Loupe.el("td", {}, text(c)))));
}

function badge(status) {
  return status ? Loupe.el("span", { class: `badge ${status}` }, status) : "";
}

async function refresh() {
  const data = await Loupe.api("GET", "/loop");
  fill("ledger", Object.entries(data.ledger).map(([status, n]) => row({ "data-status": status, "data-count": n }, status, n)), "The ledger is empty.");
  fill("running", data.executions.map((e) => row({ "data-kind": e.kind }, e.kind, e.name, e.started)), "Nothing running.");
  fill("alarms", data.alarms.map((a) => row({ "data-alarm": a.name, "data-state": a.state, title: a.reason }, a.description || a.name, badge(a.state), a.since)), "No alarm.");
  fill(
    "labeling-runs",
    data.labeling_runs.map((r) =>
      row({ "data-job": r.name, "data-status": r.status || "" }, r.created, r.name, r.purpose, r.service, badge(r.status), r.total ? `${r.done} / ${r.total}` : ""),
    ),
    "No labeling run yet.",
  );
  fill(
    "datasets",
    data.datasets.map((d) => {
      const c = d.counts || {};
      return row(
        { "data-version": d.version },
        `v${d.version}`,
        d.parent === null || d.parent === undefined ? "" : `v${d.parent}`,
        d.created,
        c.images,
        c.boxes,
        `${text(c.train)} / ${text(c.val)} / ${text(c.test)}`,
        Object.entries(c.by_origin || {}).map(([k, v]) => `${k}: ${v}`).join(", "),
      );
    }),
    "No dataset version yet.",
  );
  fill("timeline", data.timeline.map((t) => row({}, t.when, t.what, badge(t.status))), "Nothing happened yet.");
}

Loupe.ready(() => Loupe.poll(refresh, 10000));
