// Labeling: the next task for this person (GET /labeling/tasks/next). A `label` task is an image to box in the box
// editor, submitted (POST /labeling/tasks/{id} {boxes}) or declined; a `verify` task (the run's verification step)
// shows another labeler's boxes read-only, to accept or reject with a reason ({verdict, reason}). A failed submit
// keeps everything on screen.
"use strict";

Loupe.ready((me) => {
  const $ = (id) => document.getElementById(id);
  const state = { task: null, sending: false };
  const options = { onChange: counted, readOnly: false };
  const ed = Loupe.editor($("canvas"), options);
  const controls = [
    "label-select", "zoom-in", "zoom-out", "delete-box", "clear-boxes", "decline-reason", "decline", "submit",
    "reject-reason", "reject-text", "reject", "accept",
  ];
  const verifying = () => state.task !== null && state.task.kind === "verify";
  // the reject reason's "in my own words" choice
  const otherChosen = () => Boolean($("reject-reason").selectedOptions[0]?.hasAttribute("data-other"));

  function counted(boxes) {
    const n = boxes.length;
    $("box-count").dataset.boxes = String(n);
    let text = "";
    if (verifying()) text = `${n} box(es) to check${n === 0 ? " — none means: the labeler saw no defect" : ""}`;
    else if (state.task) text = `${n} box(es)${n === 0 ? " — submitting none means: no defect in this image" : ""}`;
    $("box-count").textContent = text;
  }

  function enable(on) {
    for (const id of controls) $(id).disabled = !on;
  }

  // the toolbar of the task's kind: drawing tools for `label`, the verdict for `verify`
  function mode(kind) {
    for (const node of document.querySelectorAll("[data-for]")) node.hidden = node.dataset.for !== kind;
    $("reject-text").hidden = kind !== "verify" || !otherChosen();
    options.readOnly = kind === "verify";
    $("canvas").classList.toggle("read-only", options.readOnly);
  }

  function facts(task) {
    const rows = [
      ["task", task.kind === "verify" ? "verify boxes" : "draw boxes"],
      ["image", `${task.width}×${task.height}`],
      ["job", task.job_name],
      ["answer by", new Date(task.lease_until).toLocaleString()],
    ];
    $("task-facts").replaceChildren(...rows.flatMap(([k, v]) => [Loupe.el("dt", {}, k), Loupe.el("dd", {}, v)]));
  }

  function open(task) {
    state.task = task;
    document.body.dataset.assignment = task.assignment_id;
    document.body.dataset.kind = task.kind;
    facts(task);
    const image = { url: task.image_url, width: task.width, height: task.height };
    if (task.kind === "verify") {
      $("task-title").textContent = "Are these boxes right?";
      $("task-state").textContent = "Check every box: accept, or reject with a reason.";
      $("prefill-note").textContent = "A box must sit tightly around each defect, and every defect must have one.";
      $("reject-reason").replaceChildren(
        Loupe.el("option", { value: "", disabled: true, selected: true }, "reject because…"),
        ...task.reasons.map((r) => Loupe.el("option", { value: r }, r)),
        Loupe.el("option", { value: "other", "data-other": true }, "other (say why)"),
      );
      $("reject-reason").selectedIndex = 0;
      $("reject-text").value = "";
      mode("verify");
      ed.load(image, task.boxes);
    } else {
      $("task-title").textContent = "Draw a box around every defect";
      $("task-state").textContent = "An image waits for your boxes.";
      $("label-select").replaceChildren(...task.labels.map((l) => Loupe.el("option", { value: l }, l)));
      ed.setLabel(task.labels[0]);
      const prefill = (task.prefill || []).map((b) => ({ ...b, prefilled: true }));
      $("prefill-note").textContent = prefill.length
        ? `Pre-filled with ${prefill.length} box(es) the device or the deployed model found: correct them, then submit.`
        : "";
      mode("label");
      ed.load(image, prefill);
    }
    $("zoom-level").textContent = ed.zoom(1);
    enable(true);
  }

  function close(text) {
    state.task = null;
    delete document.body.dataset.assignment;
    delete document.body.dataset.kind;
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
      close("Looking for the next task…");
    } catch (err) {
      // nothing is lost: the boxes (or the chosen reason) stay on screen for another try
      Loupe.show(`Not recorded: ${err.message}`, "error");
      enable(true);
    } finally {
      state.sending = false;
    }
    await next().catch((err) => Loupe.show(err.message, "error"));
  }

  const answerPath = () => `/labeling/tasks/${encodeURIComponent(state.task.assignment_id)}`;

  function submit() {
    if (!state.task || verifying()) return;
    return send(answerPath(), { boxes: ed.boxes() }, (out) => `Answer recorded (${out.boxes} box(es)).`);
  }

  function accept() {
    if (!verifying()) return;
    return send(answerPath(), { verdict: "accept" }, () => "Accepted: the boxes go into the dataset.");
  }

  function reject() {
    if (!verifying()) return;
    const select = $("reject-reason");
    const other = otherChosen();
    const reason = (other ? $("reject-text").value : select.value).trim();
    if (!reason) {
      Loupe.show("A reject needs a reason: pick one, or choose “other” and say why.", "error");
      (other ? $("reject-text") : select).focus();
      return;
    }
    return send(answerPath(), { verdict: "reject", reason }, () => "Rejected: the image goes back to be labeled again.");
  }

  function decline() {
    if (!state.task) return;
    const reason = $("decline-reason").value;
    const path = `${answerPath()}/decline`;
    return send(path, reason.trim() ? { reason: reason.trim() } : {}, () => "Declined: the task goes to another person.");
  }

  const zoom = (f) => ($("zoom-level").textContent = ed.zoom(f));
  $("submit").addEventListener("click", submit);
  $("accept").addEventListener("click", accept);
  $("reject").addEventListener("click", reject);
  $("reject-reason").addEventListener("change", () => {
    $("reject-text").hidden = !otherChosen();
    if (otherChosen()) $("reject-text").focus();
  });
  $("decline").addEventListener("click", decline);
  $("delete-box").addEventListener("click", () => ed.remove());
  $("clear-boxes").addEventListener("click", () => ed.setBoxes([]));
  $("zoom-in").addEventListener("click", () => zoom(1.25));
  $("zoom-out").addEventListener("click", () => zoom(0.8));
  $("label-select").addEventListener("change", () => ed.setLabel($("label-select").value));
  Loupe.editorKeys(ed, { zoom, submit });
  // a verify task's keys: a accepts, r rejects with the chosen reason (not while typing one)
  document.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (!verifying() || tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "a") accept();
    else if (event.key === "r") reject();
    else return;
    event.preventDefault();
  });
  mode("label");
  enable(false);
  Loupe.poll(next, 3000);
});
