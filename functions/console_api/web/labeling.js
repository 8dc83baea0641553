// Labeling: the next image that needs this person's boxes (GET /labeling/tasks/next), drawn on in the box editor,
// submitted (POST /labeling/tasks/{id}) or declined. A failed submit keeps every box on screen.
"use strict";

Loupe.ready((me) => {
  const $ = (id) => document.getElementById(id);
  const state = { task: null, sending: false };
  const ed = Loupe.editor($("canvas"), { onChange: counted });
  const controls = ["label-select", "zoom-in", "zoom-out", "delete-box", "clear-boxes", "decline-reason", "decline", "submit"];

  function counted(boxes) {
    const n = boxes.length;
    $("box-count").dataset.boxes = String(n);
    $("box-count").textContent = state.task
      ? `${n} box(es)${n === 0 ? " — submitting none means: no defect in this image" : ""}`
      : "";
  }

  function enable(on) {
    for (const id of controls) $(id).disabled = !on;
  }

  function facts(task) {
    const rows = [
      ["image", `${task.width}×${task.height}`],
      ["job", task.job_name],
      ["answer by", new Date(task.lease_until).toLocaleString()],
    ];
    $("task-facts").replaceChildren(...rows.flatMap(([k, v]) => [Loupe.el("dt", {}, k), Loupe.el("dd", {}, v)]));
  }

  function open(task) {
    state.task = task;
    document.body.dataset.assignment = task.assignment_id;
    $("task-state").textContent = "An image waits for your boxes.";
    facts(task);
    $("label-select").replaceChildren(...task.labels.map((l) => Loupe.el("option", { value: l }, l)));
    ed.setLabel(task.labels[0]);
    const prefill = (task.prefill || []).map((b) => ({ ...b, prefilled: true }));
    $("prefill-note").textContent = prefill.length
      ? `Pre-filled with ${prefill.length} box(es) the device or the deployed model found: correct them, then submit.`
      : "";
    ed.load({ url: task.image_url, width: task.width, height: task.height }, prefill);
    $("zoom-level").textContent = ed.zoom(1);
    enable(true);
  }

  function close(text) {
    state.task = null;
    delete document.body.dataset.assignment;
    ed.clear();
    counted([]);
    $("task-facts").replaceChildren();
    $("prefill-note").textContent = "";
    $("task-state").textContent = text;
    enable(false);
  }

  async function next() {
    if (state.task || state.sending) return;
    if (!(me.groups || []).includes("labelers")) {
      close("Labeling is for the labelers group; ask an administrator to add you (loupe labelers add --group labelers).");
      return;
    }
    const out = await Loupe.api("GET", "/labeling/tasks/next");
    if (out.task) open(out.task);
    else close(out.message || "No image needs your answer now.");
  }

  async function send(path, body, done) {
    const task = state.task;
    if (!task || state.sending) return;
    state.sending = true;
    enable(false);
    try {
      const out = await Loupe.api("POST", path, body);
      Loupe.show(done(out), "ok");
      $("decline-reason").value = "";
      close("Looking for the next image…");
    } catch (err) {
      // nothing is lost: the boxes stay on screen for another try
      Loupe.show(`Not recorded: ${err.message}`, "error");
      enable(true);
    } finally {
      state.sending = false;
    }
    await next().catch((err) => Loupe.show(err.message, "error"));
  }

  function submit() {
    if (!state.task) return;
    const path = `/labeling/tasks/${encodeURIComponent(state.task.assignment_id)}`;
    return send(path, { boxes: ed.boxes() }, (out) => `Answer recorded (${out.boxes} box(es)).`);
  }

  function decline() {
    if (!state.task) return;
    const reason = $("decline-reason").value;
    const path = `/labeling/tasks/${encodeURIComponent(state.task.assignment_id)}/decline`;
    return send(path, reason.trim() ? { reason: reason.trim() } : {}, () => "Declined: the image goes to another labeler.");
  }

  const zoom = (f) => ($("zoom-level").textContent = ed.zoom(f));
  $("submit").addEventListener("click", submit);
  $("decline").addEventListener("click", decline);
  $("delete-box").addEventListener("click", () => ed.remove());
  $("clear-boxes").addEventListener("click", () => ed.setBoxes([]));
  $("zoom-in").addEventListener("click", () => zoom(1.25));
  $("zoom-out").addEventListener("click", () => zoom(0.8));
  $("label-select").addEventListener("change", () => ed.setLabel($("label-select").value));
  Loupe.editorKeys(ed, { zoom, submit });
  enable(false);
  Loupe.poll(next, 3000);
});
