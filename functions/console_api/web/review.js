// Review: an image whose labelers disagreed (GET /review/next). Each labeler's boxes are shown; the reviewer starts
// from the consolidated suggestion or from one labeler's boxes, adjusts them, and resolves (POST /review/{itemId}).
"use strict";

Loupe.ready((me) => {
  const $ = (id) => document.getElementById(id);
  const state = { item: null, sending: false };
  const ed = Loupe.editor($("canvas"), { onChange: counted });
  const controls = ["label-select", "zoom-in", "zoom-out", "delete-box", "clear-boxes", "submit"];

  function counted(boxes) {
    $("box-count").dataset.boxes = String(boxes.length);
    $("box-count").textContent = state.item ? `${boxes.length} final box(es)` : "";
  }

  function enable(on) {
    for (const id of controls) $(id).disabled = !on;
  }

  function others(item) {
    if (!$("show-others").checked) return [];
    return item.answers.flatMap((boxes, i) => boxes.map((b) => ({ ...b, group: i % 3 })));
  }

  function open(item) {
    state.item = item;
    document.body.dataset.item = item.item_id;
    $("review-state").textContent = item.reason ? `Why: ${item.reason}` : "The labelers' answers differ.";
    const agreement = typeof item.agreement === "number" ? `${Math.round(item.agreement * 100)}%` : "—";
    const rows = [
      ["image", `${item.width}×${item.height}`],
      ["job", item.job_name],
      ["agreement", agreement],
      ["resolve by", new Date(item.lease_until).toLocaleString()],
    ];
    $("review-facts").replaceChildren(...rows.flatMap(([k, v]) => [Loupe.el("dt", {}, k), Loupe.el("dd", {}, v)]));
    $("answers").replaceChildren(
      Loupe.el(
        "li",
        { "data-answer": "suggestion" },
        `Consolidated suggestion: ${item.suggestion.length} box(es) `,
        Loupe.el("button", { type: "button", onclick: () => ed.setBoxes(item.suggestion) }, "Use"),
      ),
      ...item.answers.map((boxes, i) =>
        Loupe.el(
          "li",
          { "data-answer": String(i) },
          Loupe.el("span", { class: `key other-${i % 3}` }),
          `Labeler ${i + 1}: ${boxes.length} box(es) `,
          Loupe.el("button", { type: "button", "data-use": String(i), onclick: () => ed.setBoxes(boxes) }, "Use these"),
        ),
      ),
    );
    $("label-select").replaceChildren(...item.labels.map((l) => Loupe.el("option", { value: l }, l)));
    ed.setLabel(item.labels[0]);
    ed.load({ url: item.image_url, width: item.width, height: item.height }, item.suggestion, others(item));
    $("zoom-level").textContent = ed.zoom(1);
    enable(true);
  }

  function close(text) {
    state.item = null;
    delete document.body.dataset.item;
    ed.clear();
    counted([]);
    $("review-facts").replaceChildren();
    $("answers").replaceChildren();
    $("review-state").textContent = text;
    enable(false);
  }

  async function next() {
    if (state.item || state.sending) return;
    if (!(me.groups || []).includes("reviewers")) {
      close("Reviews are for the reviewers group.");
      return;
    }
    const out = await Loupe.api("GET", "/review/next");
    if (out.item) open(out.item);
    else close(out.message || "No image waits for a review now.");
  }

  async function submit() {
    const item = state.item;
    if (!item || state.sending) return;
    state.sending = true;
    enable(false);
    try {
      const out = await Loupe.api("POST", `/review/${encodeURIComponent(item.item_id)}`, { boxes: ed.boxes() });
      Loupe.show(`Resolved with ${out.boxes} box(es); this is the image's label now.`, "ok");
      close("Looking for the next image…");
    } catch (err) {
      Loupe.show(`Not recorded: ${err.message}`, "error");
      enable(true);
    } finally {
      state.sending = false;
    }
    await next().catch((err) => Loupe.show(err.message, "error"));
  }

  const zoom = (f) => ($("zoom-level").textContent = ed.zoom(f));
  $("submit").addEventListener("click", submit);
  $("delete-box").addEventListener("click", () => ed.remove());
  $("clear-boxes").addEventListener("click", () => ed.setBoxes([]));
  $("zoom-in").addEventListener("click", () => zoom(1.25));
  $("zoom-out").addEventListener("click", () => zoom(0.8));
  $("label-select").addEventListener("change", () => ed.setLabel($("label-select").value));
  $("show-others").addEventListener("change", () => {
    if (state.item) ed.load({ url: state.item.image_url, width: state.item.width, height: state.item.height }, ed.boxes(), others(state.item));
  });
  Loupe.editorKeys(ed, { zoom, submit });
  enable(false);
  Loupe.poll(next, 3000);
});
