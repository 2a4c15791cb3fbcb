"""The browser side of the labelling widget: one ES module and one stylesheet, served by anywidget (no build step).

Protocol (JS -> Python, custom messages): ``{type: "answer", item_id, answer: {kind, label, tags, note, path?},
time_spent_s, view, client_seq, via?}`` (``via: "accept"`` for the accept key: refused when suggestions are off), ``{type: "undo"|"redo"|"ack_guideline"|"qualification_retry"|"poll"|"hello", view, client_seq}``,
``{type: "full_res", item_id}`` (1:1 / zoom), ``{type: "history", open}``, ``{type: "history_open", event_id}``,
``{type: "history_close"}`` (ui/history.py);
reviewer mode: ``{type: "review_accept"|"review_skip", item_id}``, ``{type: "review_correct", item_id,
answer: {kind, label, tags}, reason}``.
Python -> JS (synced traits, one message per step thanks to ``hold_sync``): ``item`` (the image to show and its
id), ``ack`` (``{view, client_seq, ok, error}``), ``progress``, ``guideline``, ``report_html``, ``prefetch``,
``quality`` (qualification result / failure with the guideline / error, and the accuracy notice), ``review``
(reviewer mode: the entry shown, its place and the queue length), ``taxonomy`` (the class tree for the tree
labeller, empty for flat classes; the answer then carries the leaf's ``path``; a tag tree, ``multilabel`` true,
composes the usual ``tags`` answer). ``ui_mode`` picks the screen.
The view sends at most one message at a time and ignores keys until that message is acknowledged.
"""

ESM = r"""
function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function render({ model, el }) {
  if (model.get("ui_mode") === "review") return renderReview({ model, el });
  return renderLabeller({ model, el });
}

// a JupyterLab-safe key handler: our keys never reach the notebook's command-mode shortcuts
function swallow(e) { e.preventDefault(); e.stopPropagation(); }

// keys pressed anywhere inside the widget never reach JupyterLab's shortcuts (m, x, c, v, d d, b, a,
// Shift+Enter, the arrows...): Lumino's key-binding matcher stops at an element carrying this attribute, and the
// keydown listener stops the event at the widget. Text fields inside still type normally (no preventDefault).
// calls onGone when the kernel the widget lives in restarts or dies (its comm is gone then); JupyterLab's widget
// manager exposes the kernel connection: its status goes through "restarting" / "autorestarting" / "dead"
function watchKernel(model, onGone) {
  try {
    const k = model.widget_manager && model.widget_manager.kernel;
    if (!k || !k.statusChanged) return () => {};
    const f = (_, status) => { if (status === "restarting" || status === "autorestarting" || status === "dead") onGone(); };
    k.statusChanged.connect(f);
    return () => { try { k.statusChanged.disconnect(f); } catch (e) { /* already gone */ } };
  } catch (e) { return () => {}; }
}

// The image stage: a box of fixed size (the buttons never move), the image scaled smoothly to fit (up or down),
// 1:1 (=), zoom (+ / - / mouse wheel, around the pointer) and pan (drag, or the arrows while zoomed), a
// checkerboard behind transparent images. Geometry is in the original image's pixels: the kernel sends a display
// copy, and the full resolution when 1:1 or a zoom needs more pixels than the copy has (needFull()).
function createStage(needFull) {
  const el = h("div", "alwb-stage");
  const img = h("img", "alwb-image");
  img.alt = "item to label";
  img.draggable = false;
  const zoomLabel = h("span", "alwb-zoom");
  el.append(img, zoomLabel);
  let W = 1, H = 1, srcW = 0, scale = 1, tx = 0, ty = 0, mode = "fit", asked = false;
  // the stage's size, kept up to date by a ResizeObserver: reading clientWidth while a new image is drawn would
  // force a layout of the whole JupyterLab page on every answer
  let box = [640, 480];
  function size() { return box; }
  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      if (!el.clientWidth) return;
      box = [el.clientWidth, el.clientHeight];
      if (mode === "fit") fit(); else { clamp(); apply(); }
    }).observe(el);
  }
  function fitScale() { const [sw, sh] = size(); return Math.min(sw / W, sh / H); }
  function clamp() {
    const [sw, sh] = size(), iw = W * scale, ih = H * scale;
    tx = iw <= sw ? (sw - iw) / 2 : Math.min(0, Math.max(sw - iw, tx));
    ty = ih <= sh ? (sh - ih) / 2 : Math.min(0, Math.max(sh - ih, ty));
  }
  function apply() {
    img.style.width = (W * scale) + "px"; img.style.height = (H * scale) + "px";
    img.style.left = tx + "px"; img.style.top = ty + "px";
    el.dataset.scale = scale.toFixed(4);
    el.dataset.mode = mode;
    zoomLabel.textContent = mode === "fit" ? "" : (mode === "1:1" ? "1:1" : Math.round(100 * scale) + "%");
    el.classList.toggle("alwb-zoomed", mode !== "fit");
    if (!asked && srcW && srcW < W && W * scale > srcW * 1.01) asked = needFull() !== false;
  }
  function fit() {
    mode = "fit"; scale = fitScale();
    const [sw, sh] = size();
    tx = (sw - W * scale) / 2; ty = (sh - H * scale) / 2;
    apply();
  }
  function zoomTo(ns, cx, cy, m) {
    const [sw, sh] = size();
    if (cx === undefined) { cx = sw / 2; cy = sh / 2; }
    ns = Math.max(Math.min(1, fitScale() / 2), Math.min(32, ns));
    tx = cx - (cx - tx) * ns / scale; ty = cy - (cy - ty) * ns / scale;
    scale = ns; mode = m || "zoom";
    clamp(); apply();
  }
  let drag = null;
  el.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = el.getBoundingClientRect();
    zoomTo(scale * (e.deltaY < 0 ? 1.25 : 0.8), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  el.addEventListener("mousedown", (e) => { if (mode !== "fit") { drag = [e.clientX, e.clientY]; e.preventDefault(); } });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    tx += e.clientX - drag[0]; ty += e.clientY - drag[1]; drag = [e.clientX, e.clientY];
    clamp(); apply();
  });
  window.addEventListener("mouseup", () => { drag = null; });
  img.addEventListener("load", () => { if (mode === "fit") fit(); });
  return {
    el, img,
    show(it) {   // a new image: fit it
      W = it.orig_w || it.w || 1; H = it.orig_h || it.h || 1; srcW = it.w || 0; asked = false;
      delete el.dataset.full;
      if (img.getAttribute("src") !== it.src) img.src = it.src;
      fit();
    },
    setFull(f) { srcW = f.w; img.src = f.src; el.dataset.full = "1"; },
    fit,
    zoomIn() { zoomTo(scale * 1.25); },
    zoomOut() { zoomTo(scale * 0.8); },
    oneToOne() { if (mode === "1:1") fit(); else zoomTo(1, undefined, undefined, "1:1"); },
    pan(dx, dy) { tx += dx; ty += dy; clamp(); apply(); },
    zoomed() { return mode !== "fit"; },
    // the stage's keys, the same on both screens: + / - zoom, = 1:1 (again: fit), the arrows pan while zoomed.
    // True when the key was the stage's (at fit the arrows are left to the screen: the reviewer's Right skips)
    key(k) {
      if (k === "+") { this.zoomIn(); return true; }
      if (k === "-") { this.zoomOut(); return true; }
      if (k === "=") { this.oneToOne(); return true; }
      if (mode !== "fit" && (k === "ArrowLeft" || k === "ArrowRight" || k === "ArrowUp" || k === "ArrowDown")) {
        const step = 80;
        this.pan(k === "ArrowLeft" ? step : k === "ArrowRight" ? -step : 0, k === "ArrowUp" ? step : k === "ArrowDown" ? -step : 0);
        return true;
      }
      return false;
    },
  };
}

function isolateKeys(root) {
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.addEventListener("keydown", (e) => e.stopPropagation());
}

function renderLabeller({ model, el }) {
  const view = Math.random().toString(36).slice(2, 10);
  let seq = 0;
  let inflight = null;
  let inflightTimer = null;
  let kernelGone = false;
  const DEAD_TEXT = "The kernel behind this widget stopped (restarted or died): nothing is recorded any more. "
    + "Run this cell again (Shift+Enter in the cell) for a new labeller; your answers so far are stored.";
  let shownAt = performance.now();
  let selected = new Set();
  let treeDraw = null;          // a tag tree shows the selection too: redrawn with the choices
  let currentId = null;
  let searchSel = 0;
  const keep = [];          // prefetched Image objects (keeps them decoded in the cache)

  const root = h("div", "alwb-root");
  root.tabIndex = 0;
  root.setAttribute("role", "application");
  root.setAttribute("aria-label", "image labeller");
  isolateKeys(root);

  // header: annotator, position, labelled total, model version, training indicator
  const header = h("div", "alwb-header");
  const annLabel = h("label", "alwb-annotator-label", "annotator ");
  const annInput = h("input", "alwb-annotator");
  annInput.type = "text"; annInput.size = 12; annInput.spellcheck = false;
  const annList = h("datalist", "alwb-annotators");
  annList.id = "alwb-annotators-" + view;
  annInput.setAttribute("list", annList.id);
  annLabel.append(annInput, annList);
  const position = h("span", "alwb-position");
  const labelled = h("span", "alwb-labelled");
  const modelInfo = h("span", "alwb-model");
  const training = h("span", "alwb-training", "retraining\u2026");
  header.append(annLabel, position, labelled, modelInfo, training);
  // the annotator's pace and the progress toward the label budget (computed in the kernel from the store)
  const statsRow = h("div", "alwb-stats-row");
  const budgetBar = h("span", "alwb-budget-bar");
  const budgetFill = h("span", "alwb-budget-fill");
  budgetBar.appendChild(budgetFill);
  const stats = h("span", "alwb-stats");
  statsRow.append(budgetBar, stats);
  // a name that is not one of the project's annotators is added only after a confirmation (a typo is not a person)
  const annConfirm = h("div", "alwb-annotator-confirm");
  const annConfirmText = h("span", "alwb-annotator-confirm-text");
  const annAdd = h("button", "alwb-annotator-add", "Add new annotator (Enter)");
  const annCancel = h("button", "alwb-annotator-cancel", "Cancel (Esc)");
  annConfirm.append(annConfirmText, annAdd, annCancel);
  // a kernel that died or restarted leaves this view without a Python side: it says so
  const dead = h("div", "alwb-dead");
  dead.setAttribute("role", "alert");

  const guide = h("details", "alwb-guideline");
  const guideSummary = h("summary", "alwb-guideline-summary");
  const guideBody = h("div", "alwb-guideline-body");
  guide.append(guideSummary, guideBody);
  const guideBanner = h("div", "alwb-guideline-banner");
  const guideBannerText = h("span", "alwb-guideline-banner-text");
  const guideAck = h("button", "alwb-guideline-ack", "I have read it (Enter)");
  guideBanner.append(guideBannerText, guideAck);

  const main = h("div", "alwb-main");
  const stage = createStage(() => send({ type: "full_res", item_id: currentId }));
  const img = stage.img;
  const imgCol = h("div", "alwb-imgcol");
  const details = h("div", "alwb-details");   // file name, original size, why it was chosen
  imgCol.append(stage.el, details);
  const side = h("div", "alwb-side");
  const predBox = h("div", "alwb-predictions");
  const search = h("input", "alwb-search");
  search.type = "search"; search.placeholder = "type to filter classes (/)"; search.spellcheck = false;
  const choicesBox = h("div", "alwb-choices");
  const submitBtn = h("button", "alwb-submit", "Submit tags (Enter)");
  side.append(predBox, search, choicesBox, submitBtn);
  main.append(imgCol, side);
  const tree = mountTree({ model, root, side, pick: (leaf, path) => answer({ kind: "label", label: leaf, path: path }),
    tags: { has: (n) => selected.has(n), set: (names, on) => {
      if (inflight !== null) return;
      names.forEach((n) => { if (on) selected.add(n); else selected.delete(n); });
      say("", "info"); drawChoices();
    } } });
  treeDraw = tree.draw;

  const actions = h("div", "alwb-actions");
  const acceptBtn = h("button", "alwb-accept", "Accept suggestion (a)");
  const skipBtn = h("button", "alwb-skip", "Skip (s)");
  const flagBtn = h("button", "alwb-flag", "Flag for review (f)");
  const undoBtn = h("button", "alwb-undo", "Undo (z)");
  actions.append(acceptBtn, skipBtn, flagBtn, undoBtn);
  const noteRow = h("div", "alwb-note-row");
  const noteInput = h("input", "alwb-note-input");
  noteInput.type = "text"; noteInput.placeholder = "optional note, Enter to flag, Esc to cancel";
  noteRow.appendChild(noteInput);
  // the answer history (h): the latest answers from the store; pick one (arrows + Enter, or a click) to change it
  const historyBox = h("div", "alwb-history");
  historyBox.style.display = "none";

  const message = h("div", "alwb-message");
  const notice = h("div", "alwb-notice");
  notice.setAttribute("role", "status");
  const qualBox = h("div", "alwb-qual");
  const qualResult = h("div", "alwb-qual-result");
  const qualError = h("div", "alwb-qual-error");
  const qualGuide = h("div", "alwb-qual-guideline");
  const qualRetry = h("button", "alwb-qual-retry", "I have read the guideline \u2014 retry (Enter)");
  qualBox.append(qualResult, qualError, qualGuide, qualRetry);
  const coverage = h("div", "alwb-coverage");
  const report = h("div", "alwb-report");
  const help = h("div", "alwb-help");
  // the ? overlay: every key of this screen (class keys as configured, the action keys), ? or Esc closes it
  const keysOverlay = h("div", "alwb-keys-overlay");
  keysOverlay.setAttribute("role", "dialog");
  keysOverlay.setAttribute("aria-label", "keys");
  keysOverlay.style.display = "none";

  // the banner comes first: Tab from the focused widget reaches "I have read it" at once
  root.append(dead, guideBanner, header, statsRow, annConfirm, notice, qualBox, guide, main, actions, noteRow, message, historyBox, coverage,
              report, help, keysOverlay);
  el.appendChild(root);

  function isMulti() { return model.get("mode") === "multi"; }
  function suggestionsOn() { return (model.get("progress") || {}).show_suggestions !== false; }
  function inTest() { return !!(model.get("item") || {}).qualification; }
  function qual() { return model.get("quality") || {}; }
  function canRetry() { const q = qual(); return !!(q.blocked || q.error); }
  function pct(x) { return Math.round(100 * x) + "%"; }
  // the same words as the round summary (render.model_line), so the two can be matched
  function modelLine(m) {
    let t = "model v" + m.version + " \u00b7 trained on " + m.n_labels + " labels";
    if (m.cv_accuracy === null || m.cv_accuracy === undefined) return t + " \u00b7 not cross-validated yet";
    return t + " \u00b7 cross-validated " + (m.cv_metric || "accuracy") + " " + pct(m.cv_accuracy);
  }
  function trustLine(m) {
    if (!m) return "model suggests (a accepts):";
    let t = "model v" + m.version;
    if (m.cv_accuracy === null || m.cv_accuracy === undefined) t += " (not cross-validated yet)";
    else if ((m.cv_metric || "accuracy") === "accuracy") t += ", " + pct(m.cv_accuracy) + " accurate in cross-validation";
    else t += ", " + m.cv_metric + " " + pct(m.cv_accuracy) + " in cross-validation";
    // how much that figure rests on: 100% over 20 labels is not 100% over 2,000
    if (m.cv_accuracy !== null && m.cv_accuracy !== undefined && m.n_labels) t += " on " + m.n_labels + " labels";
    // the same, measured on the labels chosen at random only (not biased low by the hard items uncertainty picks)
    if (m.random_accuracy !== null && m.random_accuracy !== undefined && m.n_random)
      t += " (" + pct(m.random_accuracy) + " on the " + m.n_random + " picked at random)";
    return t + " \u2014 suggests (a accepts):";
  }
  const SUGGESTIONS_OFF = "suggestions are turned off for this project (ui.show_suggestions: false): pick the class yourself";
  function choices() { return model.get("choices") || []; }

  function say(text, kind) {
    message.textContent = text || "";
    message.dataset.kind = kind || "info";
  }

  function setBusy(b) {
    root.dataset.busy = b ? "1" : "0";
    root.classList.toggle("alwb-busy", !!b);
  }

  function send(msg) {
    if (inflight !== null) { return false; }
    if (kernelGone) { say(DEAD_TEXT, "error"); return false; }
    seq += 1;
    inflight = seq;
    msg.view = view;
    msg.client_seq = seq;
    setBusy(true);
    clearTimeout(inflightTimer);
    inflightTimer = setTimeout(() => {
      if (inflight !== null) say("waiting for the kernel\u2026 if it was restarted or has died, run this cell again", "warn");
    }, 3000);
    model.send(msg);
    return true;
  }

  function needAck() { const g = model.get("guideline") || {}; return !!(g.version && !g.acknowledged); }
  function ackGuideline() { if (inflight === null && needAck()) send({ type: "ack_guideline", version: guideAck.dataset.version }); }

  function canAnswer() {
    const g = model.get("guideline") || {};
    if (!currentId) { say("nothing to label right now", "warn"); return false; }
    if (needAck()) {
      say((g.first_time ? "please read the guideline (version " + g.version + ") before your first answer"
                        : "the guideline changed to version " + g.version + ": read it first")
          + ", then press Enter or \u201cI have read it\u201d", "warn");
      return false;
    }
    return true;
  }

  function answer(a, via) {
    if (inflight !== null || !canAnswer()) return;
    const spent = (performance.now() - shownAt) / 1000;
    const msg = { type: "answer", item_id: currentId, answer: a, time_spent_s: spent };
    if (via) msg.via = via;
    send(msg);
  }

  function chooseLabel(name) { answer({ kind: "label", label: name }); }

  function submitTags() {
    if (inflight !== null) return;
    if (selected.size === 0) {
      say("no tag selected: choose at least one tag (its key or a click), or skip with s", "warn");
      return;
    }
    answer({ kind: "tags", tags: Array.from(selected).sort() });
  }

  function acceptSuggestion() {
    const it = model.get("item") || {};
    if (it.suggestions === false || !suggestionsOn()) { say(SUGGESTIONS_OFF, "warn"); return; }
    if (it.qualification) { say("no suggestions in the qualification test: pick the class yourself", "warn"); return; }
    const pred = it.prediction || [];
    if (!pred.length) { say("no model suggestion yet (the first model trains after the first batch)", "warn"); return; }
    if (isMulti()) {
      selected = new Set(pred.filter((p) => p[1] >= 0.5).map((p) => p[0]));
      if (selected.size === 0) selected.add(pred[0][0]);
      drawChoices();
      say("suggested tags selected: press Enter to submit", "info");
    } else {
      answer({ kind: "label", label: pred[0][0] }, "accept");
    }
  }

  function openNote() {
    if (!canAnswer() || inflight !== null) return;
    noteRow.classList.add("alwb-open");
    noteInput.value = (model.get("item") || {}).earlier_note || "";   // an undone flag's note comes back
    noteInput.focus();
  }
  function closeNote() { noteRow.classList.remove("alwb-open"); root.focus({ preventScroll: true }); }

  function filtered() {
    const q = search.value.trim().toLowerCase();
    const cs = choices();
    if (!q) return cs;
    return cs.filter((c) => c.name.toLowerCase().includes(q));
  }

  function drawChoices() {
    choicesBox.textContent = "";
    const multi = isMulti();
    const list = multi ? choices() : filtered();
    list.forEach((c, i) => {
      const b = h("button", multi ? "alwb-tag" : "alwb-choice");
      b.dataset.name = c.name;
      b.tabIndex = -1;
      if (c.key) { const k = h("kbd", "alwb-key", c.key); b.appendChild(k); }
      b.appendChild(h("span", "alwb-name", c.name));
      if (multi && selected.has(c.name)) b.classList.add("alwb-on");
      if (!multi && search.value && i === searchSel) b.classList.add("alwb-hit");
      b.addEventListener("mousedown", (e) => e.preventDefault());
      b.addEventListener("click", (e) => {
        e.preventDefault();
        root.focus({ preventScroll: true });
        if (multi) toggleTag(c.name); else chooseLabel(c.name);
      });
      choicesBox.appendChild(b);
    });
    submitBtn.style.display = multi ? "" : "none";
    submitBtn.disabled = multi && selected.size === 0;
    submitBtn.title = selected.size === 0 ? "choose at least one tag first (or skip with s)" : "";
    search.style.display = (!multi && choices().length > 10) ? "" : "none";
    if (multi && treeDraw) treeDraw();
  }

  function toggleTag(name) {
    if (inflight !== null) return;
    if (selected.has(name)) selected.delete(name); else selected.add(name);
    say("", "info");
    drawChoices();
  }

  function drawItem() {
    const it = model.get("item") || {};
    const newId = it.item_id || null;
    const fresh = newId !== currentId || it.shown_seq !== root.dataset.shownSeq;
    if (fresh) {
      selected = new Set(it.preselect || []);
      search.value = ""; searchSel = 0;
      noteRow.classList.remove("alwb-open");
      shownAt = performance.now();
    }
    currentId = newId;
    root.dataset.shownSeq = it.shown_seq;
    root.dataset.itemId = newId || "";
    root.dataset.test = it.qualification ? "1" : "0";
    root.dataset.changing = it.change ? String(it.change.event_id) : "";
    if (newId) {
      img.style.display = "";
      if (fresh || img.getAttribute("src") !== it.src && !stage.el.dataset.full) stage.show(it);
      if (it.change) {
        position.textContent = "changing your earlier answer \u201c" + it.change.text + "\u201d (" + clock(it.change.at)
          + "): pick the new answer \u00b7 Esc goes back";
      } else if (it.qualification) {
        position.textContent = "Qualification test: item " + it.position + " of " + it.batch_size
          + " \u2014 answers are scored against known answers, no suggestions"
          + (it.redo ? " (undone, answer again)" : "");
      } else {
        position.textContent = "round " + it.round + " \u00b7 item " + it.position + " of " + it.batch_size
          + (it.redo ? " (undone, answer again)" : "");
      }
      position.dataset.round = it.round;
      if (it.earlier_note) position.textContent += " \u00b7 your earlier note: \u201c" + it.earlier_note + "\u201d (f to flag again)";
      const d = it.details || {};
      details.textContent = d.text || "";
      details.dataset.name = d.name || "";
      details.dataset.size = d.width ? d.width + "x" + d.height : "";
    } else {
      details.textContent = "";
      details.dataset.name = ""; details.dataset.size = "";
      img.style.display = "none";
      img.removeAttribute("src");
      position.textContent = it.status || "nothing to label";
    }
    predBox.textContent = "";
    const off = it.suggestions === false || !suggestionsOn();
    const pred = off ? [] : (it.prediction || []);
    predBox.dataset.suggestions = off ? "off" : "on";
    if (off) {
      predBox.appendChild(h("div", "alwb-pred-title alwb-pred-off", "suggestions are turned off for this project"));
    } else if (it.qualification) {
      predBox.appendChild(h("div", "alwb-pred-title alwb-pred-off", "qualification test: no suggestions"));
    } else if (pred.length) {
      predBox.appendChild(h("div", "alwb-pred-title", trustLine(it.model)));
      pred.forEach((p) => {
        const row = h("div", "alwb-pred");
        row.dataset.name = p[0];
        row.appendChild(h("span", "alwb-pred-name", p[0]));
        const bar = h("span", "alwb-pred-bar");
        const fill = h("span", "alwb-pred-fill"); fill.style.width = Math.round(100 * p[1]) + "%";
        bar.appendChild(fill);
        row.appendChild(bar);
        row.appendChild(h("span", "alwb-pred-p", Math.round(100 * p[1]) + "%"));
        predBox.appendChild(row);
      });
    } else {
      predBox.appendChild(h("div", "alwb-pred-title", "no model yet: suggestions appear after the first retrain"));
    }
    acceptBtn.disabled = !pred.length;
    acceptBtn.style.display = (off || it.qualification) ? "none" : "";
    drawChoices();
    drawLayout();
    drawHelp();
  }

  function drawProgress() {
    const p = model.get("progress") || {};
    labelled.textContent = (p.labelled || 0) + " labels in the store";
    labelled.title = p.pool_size ? "of " + p.pool_size + " images that can be labelled (held-out images excluded)" : "";
    labelled.dataset.labels = p.labelled || 0;
    const m = p.model;
    modelInfo.textContent = m ? modelLine(m) : "no model yet";
    modelInfo.dataset.version = m ? m.version : "";
    modelInfo.dataset.trainedOn = m ? m.n_labels : "";
    const st = p.stats || {};
    stats.textContent = st.text || "";
    stats.dataset.n = st.n || 0;
    const b = st.budget;
    budgetBar.style.display = b ? "" : "none";
    budgetFill.style.width = b ? Math.round(100 * b.fraction) + "%" : "0";
    budgetBar.title = b ? b.labelled + " of " + b.budget + " labels (label_budget in alwb.yaml)" : "";
    if (!currentId && p.round) position.dataset.round = p.round;
    if (predBox.dataset.suggestions !== (suggestionsOn() ? "on" : "off")) drawItem();
    drawHelp();
    training.style.display = p.training ? "" : "none";
    root.dataset.training = p.training ? "1" : "0";
    coverage.textContent = "";
    const cov = p.coverage || {};
    const names = Object.keys(cov);
    const max = Math.max(1, ...names.map((n) => cov[n]));
    names.forEach((n) => {
      const row = h("div", "alwb-cov-row");
      row.dataset.name = n;
      row.appendChild(h("span", "alwb-cov-name", n));
      const bar = h("span", "alwb-cov-bar");
      const fill = h("span", "alwb-cov-fill"); fill.style.width = Math.round(100 * cov[n] / max) + "%";
      bar.appendChild(fill);
      row.appendChild(bar);
      row.appendChild(h("span", "alwb-cov-n", cov[n]));
      coverage.appendChild(row);
    });
    if (p.training && !pollTimer) {
      pollTimer = setInterval(() => { model.send({ type: "poll", view: view }); }, 700);
    } else if (!p.training && pollTimer) {
      clearInterval(pollTimer); pollTimer = null;
    }
  }
  let pollTimer = null;

  function drawGuideline() {
    const g = model.get("guideline") || {};
    guideSummary.textContent = "Labelling guideline" + (g.version ? " (version " + g.version + ")" : "");
    guideBody.innerHTML = g.html || "<em>no guideline text in this project</em>";
    const needAck = !!(g.version && !g.acknowledged);
    guideBanner.style.display = needAck ? "" : "none";
    guideBannerText.textContent = needAck
      ? (g.previous ? "The guideline changed from version " + g.previous + " to " + g.version + ": read it before the next answer. "
                    : "Welcome, " + (model.get("annotator") || "") + ": please read the guideline (version " + g.version
                      + ") below before your first answer. ")
      : "";
    root.dataset.guidelineAck = needAck ? "needed" : "done";
    guideAck.dataset.version = g.version || "";
    if (needAck) guide.open = true;
    // a first-time annotator (nothing acknowledged yet) sees the guideline open once
    if (g.html && g.previous === null && !guideShownOnce) { guide.open = true; guideShownOnce = true; }
  }
  let guideShownOnce = false;

  function drawReport() { report.innerHTML = model.get("report_html") || ""; }

  // the qualification test's result (after its last answer), a failure with the guideline and the retry, an
  // error that kept a test from starting, and the accuracy notice: all computed by the session
  function drawQuality() {
    const q = qual();
    notice.textContent = q.notice ? "\u26a0 " + q.notice : "";
    notice.style.display = q.notice ? "" : "none";
    const res = q.result;
    qualResult.textContent = res ? res.text : "";
    qualResult.dataset.passed = res ? (res.passed ? "1" : "0") : "";
    qualResult.style.display = res ? "" : "none";
    qualError.textContent = q.error || "";
    qualError.style.display = q.error ? "" : "none";
    qualGuide.innerHTML = q.blocked ? (q.guideline_html || "<em>no guideline text in this project</em>") : "";
    qualGuide.style.display = q.blocked ? "" : "none";
    qualRetry.textContent = q.blocked ? "I have read the guideline \u2014 retry (Enter)" : "Try again (Enter)";
    qualRetry.style.display = canRetry() ? "" : "none";
    qualBox.style.display = (res || q.error) ? "" : "none";
    qualBox.dataset.state = q.blocked ? "failed" : (q.error ? "error" : (res ? (res.passed ? "passed" : "failed") : ""));
    root.dataset.qualification = qualBox.dataset.state;
    drawLayout();
    drawHelp();
  }

  // while a failed test (or an error) stops the labelling, only the result, the guideline and the retry show
  function drawLayout() {
    const q = qual();
    const stopped = canRetry() && !currentId;
    main.style.display = stopped ? "none" : "";
    actions.style.display = stopped ? "none" : "";
    guide.style.display = q.blocked ? "none" : "";   // the failure panel shows the guideline itself
  }

  function retryQualification() {
    if (inflight !== null || !canRetry()) return;
    send({ type: "qualification_retry" });
  }

  function drawPrefetch() {
    keep.length = 0;
    (model.get("prefetch") || []).forEach((src) => {
      const im = new Image();
      im.src = src;
      if (im.decode) im.decode().catch(() => {});
      keep.push(im);
    });
  }

  function clock(t) { const d = new Date(1000 * t); return d.toLocaleTimeString([], { hour12: false }); }
  let histSel = 0;
  function historyOpen() { return !!(model.get("history") || {}).open; }
  function entries() { return (model.get("history") || {}).entries || []; }
  function toggleHistory(open) { if (inflight === null) send({ type: "history", open: open }); }
  function openEntry(i) {
    const e = entries()[i];
    if (!e || inflight !== null || !canAnswer()) return;
    send({ type: "history_open", event_id: e.event_id });
  }
  function drawHistory() {
    const hs = model.get("history") || {};
    historyBox.textContent = "";
    historyBox.style.display = hs.open ? "" : "none";
    root.dataset.history = hs.open ? "open" : "closed";
    if (!hs.open) return;
    const list = hs.entries || [];
    histSel = Math.max(0, Math.min(histSel, list.length - 1));
    historyBox.appendChild(h("div", "alwb-history-title", list.length
      ? "Your latest answers (\u2190 \u2192 choose, Enter changes it, h or Esc closes)"
      : "No answers yet (h closes)"));
    const strip = h("div", "alwb-history-strip");
    list.forEach((e, i) => {
      const card = h("button", "alwb-history-entry");
      card.tabIndex = -1;
      card.dataset.eventId = e.event_id;
      if (i === histSel) card.classList.add("alwb-sel");
      if (e.changing) card.classList.add("alwb-changing");
      if (e.thumb) { const t = h("img", "alwb-history-thumb"); t.src = e.thumb; t.alt = ""; card.appendChild(t); }
      card.appendChild(h("span", "alwb-history-text", e.text));
      card.appendChild(h("span", "alwb-history-meta", e.annotator + " \u00b7 " + clock(e.at)));
      card.title = e.name;
      card.addEventListener("mousedown", (ev) => ev.preventDefault());
      card.addEventListener("click", (ev) => { ev.preventDefault(); root.focus({ preventScroll: true }); histSel = i; openEntry(i); });
      strip.appendChild(card);
    });
    historyBox.appendChild(strip);
  }

  function keysOpen() { return keysOverlay.style.display !== "none"; }
  function toggleKeys(open) {
    if (open) drawKeys();
    keysOverlay.style.display = open ? "" : "none";
    root.dataset.keys = open ? "open" : "closed";
  }
  function drawKeys() {
    keysOverlay.textContent = "";
    keysOverlay.appendChild(h("div", "alwb-keys-title", "Keys (press ? or Esc to close)"));
    const table = h("table", "alwb-keys-table");
    function row(k, what, cls) {
      const tr = h("tr", cls || "");
      const td = h("td"); td.appendChild(h("kbd", "alwb-key", k)); tr.appendChild(td);
      tr.appendChild(h("td", "", what));
      tr.dataset.key = k;
      table.appendChild(tr);
    }
    const multi = isMulti();
    choices().forEach((c) => { if (c.key) row(c.key, (multi ? "toggle tag " : "class ") + c.name, "alwb-keys-class"); });
    const acts = model.get("action_keys") || {};
    Object.keys(acts).forEach((k) => {
      if (k === "a" && !suggestionsOn()) return;
      if (k === "/" && (multi || choices().length <= 10)) return;
      row(k, acts[k], "alwb-keys-action");
    });
    if (multi) row("Enter", "submit the selected tags", "alwb-keys-action");
    row("Enter", "acknowledge the guideline (when asked) / retry the qualification test", "alwb-keys-action");
    row("Backspace", "undo the last answer", "alwb-keys-action");
    row("\u2190 \u2191 \u2192 \u2193", "move the zoomed image; choose an answer in the open history", "alwb-keys-action");
    row("wheel", "zoom around the pointer (drag moves the zoomed image)", "alwb-keys-action");
    row("Tab", "reach the buttons (\u201cI have read it\u201d, the note field)", "alwb-keys-action");
    row("Esc", "close this list, cancel a note or a filter", "alwb-keys-action");
    keysOverlay.appendChild(table);
    keysOverlay.appendChild(h("div", "alwb-keys-foot", "Class keys can be changed in alwb.yaml: ui: {keys: {cat: c, dog: d}}"));
  }

  function drawHelp() {
    const multi = isMulti();
    if (canRetry()) { help.textContent = "keys: Enter or r " + (qual().blocked ? "retries the qualification test (after you read the guideline)" : "tries again"); return; }
    if (inTest()) {
      help.textContent = (multi ? "keys: tag keys toggle, Enter submits" : "keys: 1-9/0 pick a class")
        + " \u00b7 s skip \u00b7 f flag \u00b7 z/Backspace undo \u00b7 qualification test: no suggestions";
      return;
    }
    help.textContent = (multi
      ? "keys: tag keys toggle, Enter submits"
      : (choices().length > 10 ? "keys: class keys on the buttons, / filter then Enter" : "keys: class keys on the buttons"))
      + (suggestionsOn() ? " \u00b7 a accept suggestion" : "") + " \u00b7 s skip \u00b7 f flag \u00b7 z/Backspace undo \u00b7 ? all keys";
  }

  model.on("change:ack", () => {
    const a = model.get("ack") || {};
    if (a.view !== view || a.client_seq !== inflight) return;
    inflight = null;
    clearTimeout(inflightTimer);
    setBusy(false);
    if (a.ok) say(a.info || "", "info"); else say(a.error || "refused", "error");
  });
  model.on("change:item", drawItem);
  model.on("change:history", drawHistory);
  model.on("change:full_res", () => {
    const f = model.get("full_res") || {};
    if (f.item_id && f.item_id === currentId && f.shown_seq === root.dataset.shownSeq) stage.setFull(f);
  });
  model.on("change:progress", drawProgress);
  model.on("change:guideline", drawGuideline);
  model.on("change:report_html", drawReport);
  model.on("change:prefetch", drawPrefetch);
  model.on("change:quality", drawQuality);
  model.on("change:choices", () => { drawChoices(); drawHelp(); if (keysOpen()) drawKeys(); });
  model.on("change:mode", () => { drawChoices(); drawHelp(); });
  model.on("change:annotator", () => { if (document.activeElement !== annInput) annInput.value = model.get("annotator"); });

  function drawAnnotators() {
    annList.textContent = "";
    (model.get("annotators") || []).forEach((n) => { const o = h("option"); o.value = n; annList.appendChild(o); });
  }
  function setAnnotator(v) {
    annConfirm.classList.remove("alwb-open");
    if (v !== model.get("annotator")) { model.set("annotator", v); model.save_changes(); }
    annInput.value = v;
    root.focus({ preventScroll: true });
  }
  function cancelAnnotator() {
    annConfirm.classList.remove("alwb-open");
    annInput.value = model.get("annotator") || "";
    root.focus({ preventScroll: true });
  }
  // a known annotator is switched to at once; a new name asks first (Enter adds, Esc keeps the current one)
  function commitAnnotator(focusConfirm) {
    const v = annInput.value.trim();
    if (!v || v === model.get("annotator")) { cancelAnnotator(); return; }
    const known = model.get("annotators") || [];
    if (known.includes(v)) { setAnnotator(v); return; }
    annConfirm.dataset.name = v;
    annConfirmText.textContent = "\u201c" + v + "\u201d is not one of this project's annotators"
      + (known.length ? " (" + known.join(", ") + ")" : "") + ". Add a new annotator? ";
    annConfirm.classList.add("alwb-open");
    if (focusConfirm) annAdd.focus({ preventScroll: true });
  }
  annInput.value = model.get("annotator") || "";
  annInput.addEventListener("change", () => { if (!annConfirm.classList.contains("alwb-open")) commitAnnotator(false); });
  annInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { swallow(e); commitAnnotator(true); }
    else if (e.key === "Escape") { swallow(e); cancelAnnotator(); }
  });
  for (const [b, fn] of [[annAdd, () => setAnnotator(annConfirm.dataset.name)], [annCancel, cancelAnnotator]]) {
    b.addEventListener("mousedown", (e) => e.preventDefault());
    b.addEventListener("click", (e) => { e.preventDefault(); fn(); });
    b.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { swallow(e); fn(); }
      else if (e.key === "Escape") { swallow(e); cancelAnnotator(); }
    });
  }
  drawAnnotators();
  model.on("change:annotators", drawAnnotators);

  // the kernel behind the widget died or restarted: nothing is recorded any more; say so and how to get a new one
  function kernelDied() {
    if (kernelGone) return;
    kernelGone = true;
    dead.textContent = DEAD_TEXT;
    dead.style.display = "";
    root.dataset.dead = "1";
    inflight = null;
    clearTimeout(inflightTimer);
    setBusy(false);
    say(DEAD_TEXT, "error");
  }
  dead.style.display = "none";
  const unwatchKernel = watchKernel(model, kernelDied);

  noteInput.addEventListener("keydown", (e) => {
    e.stopPropagation();
    if (e.key === "Enter") {
      e.preventDefault();
      const note = noteInput.value.trim();
      closeNote();
      answer({ kind: "flag", note: note });
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeNote();
    }
  });

  search.addEventListener("input", () => { searchSel = 0; drawChoices(); });
  search.addEventListener("keydown", (e) => {
    e.stopPropagation();
    const list = filtered();
    if (e.key === "Enter") {
      e.preventDefault();
      if (list.length) { const name = list[Math.min(searchSel, list.length - 1)].name; search.value = ""; root.focus({ preventScroll: true }); chooseLabel(name); }
      else say("no class matches \u201c" + search.value + "\u201d", "warn");
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      searchSel = Math.max(0, Math.min(list.length - 1, searchSel + (e.key === "ArrowDown" ? 1 : -1)));
      drawChoices();
    } else if (e.key === "Escape") {
      e.preventDefault(); search.value = ""; drawChoices(); root.focus({ preventScroll: true });
    }
  });

  function btn(b, fn) {
    b.tabIndex = -1;
    b.addEventListener("mousedown", (e) => e.preventDefault());
    b.addEventListener("click", (e) => { e.preventDefault(); root.focus({ preventScroll: true }); fn(); });
  }
  btn(acceptBtn, acceptSuggestion);
  btn(skipBtn, () => answer({ kind: "skip" }));
  btn(flagBtn, openNote);
  btn(undoBtn, () => { if (inflight === null) send({ type: "undo" }); });
  btn(submitBtn, submitTags);
  btn(guideAck, ackGuideline);
  guideAck.tabIndex = 0;   // reachable with Tab from the focused widget; Enter / Space on it acknowledge
  guideAck.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { swallow(e); ackGuideline(); root.focus({ preventScroll: true }); }
    else if (!(e.ctrlKey || e.metaKey || e.altKey) && e.key !== "Tab") e.stopPropagation();
  });
  btn(qualRetry, retryQualification);
  qualRetry.tabIndex = 0;   // reachable with Tab too; Enter / Space on it retry
  qualRetry.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { swallow(e); retryQualification(); root.focus({ preventScroll: true }); }
    else if (!(e.ctrlKey || e.metaKey || e.altKey) && e.key !== "Tab") e.stopPropagation();
  });

  root.addEventListener("mousedown", (e) => {
    const t = e.target;
    if (t === annInput || t === noteInput || t === search || t === qualRetry || (t.classList && t.classList.contains("alwb-tree-search")) || (t.closest && t.closest(".alwb-guideline-body, .alwb-qual-guideline, summary"))) return;
    setTimeout(() => root.focus({ preventScroll: true }), 0);
  });

  root.addEventListener("keydown", (e) => {
    if (e.target !== root) return;                  // inputs handle their own keys
    if (e.ctrlKey || e.metaKey || e.altKey) return;   // leave JupyterLab's shortcuts alone
    const k = e.key;
    let handled = true;
    if (k === "?" || (k === "Escape" && keysOpen())) {
      toggleKeys(k === "?" && !keysOpen());
    } else if (inflight !== null) {
      // swallow our own keys while an answer is in flight; nothing is queued
      handled = /^[0-9a-z]$/i.test(k) || k === "Enter" || k === "Backspace" || k === " ";
    } else if ((k === "Enter" || k === "r") && canRetry()) {
      retryQualification();
    } else if (k === "Enter" && needAck()) {
      ackGuideline();
    } else if (!needAck() && tree.key(e)) {
      // the taxonomy tree took it (a level key, Backspace up a level, / search)
    } else if (k === "h") {
      toggleHistory(!historyOpen());
    } else if (k === "Escape" && (model.get("item") || {}).change) {
      send({ type: "history_close" });
    } else if (k === "Escape" && historyOpen()) {
      toggleHistory(false);
    } else if (historyOpen() && (k === "ArrowLeft" || k === "ArrowRight" || k === "ArrowUp" || k === "ArrowDown")) {
      histSel = Math.max(0, Math.min(entries().length - 1, histSel + (k === "ArrowRight" || k === "ArrowDown" ? 1 : -1)));
      drawHistory();
    } else if (k === "Enter" && historyOpen() && entries().length && !(model.get("item") || {}).change) {
      openEntry(histSel);
    } else if (stage.key(k)) {
      // zoom, 1:1, pan
    } else if (k === "y") {
      send({ type: "redo" });
    } else if (k === "i") {
      details.classList.toggle("alwb-hidden");
    } else if (k === "Enter") {
      if (isMulti()) submitTags();
    } else if (k === "s") {
      answer({ kind: "skip" });
    } else if (k === "f") {
      openNote();
    } else if (k === "z" || k === "Backspace") {
      send({ type: "undo" });
    } else if (k === "a") {
      acceptSuggestion();
    } else if (k === "/" && !isMulti() && choices().length > 10) {
      search.focus();
    } else if (k === " ") {
      // space would scroll the notebook; do nothing
    } else {
      const c = choices().find((c) => c.key === k);
      if (c) { if (isMulti()) toggleTag(c.name); else chooseLabel(c.name); }
      else handled = false;
    }
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  });

  drawGuideline(); drawProgress(); drawItem(); drawReport(); drawQuality(); drawHelp(); drawPrefetch();
  setBusy(false);
  root.focus({ preventScroll: true });
  requestAnimationFrame(() => root.focus({ preventScroll: true }));
  model.send({ type: "hello", view: view });
  return () => { clearInterval(pollTimer); clearTimeout(inflightTimer); unwatchKernel(); };
}

// ---------------------------------------------------------------------------------------------------- reviewer
// The review queue, one entry at a time. Enter / a accept; a class key starts a correction (a tag key toggles),
// its reason box takes focus, Enter there saves (the core refuses an empty reason), Escape cancels; n / Right
// arrow skips. Keys typed in the reason box stay there; the widget's own keys never reach JupyterLab.
function renderReview({ model, el }) {
  const view = Math.random().toString(36).slice(2, 10);
  let seq = 0;
  let inflight = null;
  let inflightTimer = null;
  let currentId = null;
  let selected = new Set();     // the correction being composed
  const keep = [];

  const root = h("div", "alwb-root alwb-review-root");
  root.tabIndex = 0;
  isolateKeys(root);
  root.setAttribute("role", "application");
  root.setAttribute("aria-label", "review queue");

  const header = h("div", "alwb-header");
  const title = h("span", "alwb-review-title");
  const position = h("span", "alwb-position alwb-review-position");
  const modelInfo = h("span", "alwb-model");
  header.append(title, position, modelInfo);

  const guide = h("details", "alwb-guideline");
  const guideSummary = h("summary", "alwb-guideline-summary");
  const guideBody = h("div", "alwb-guideline-body");
  guide.append(guideSummary, guideBody);

  const main = h("div", "alwb-main");
  // the labeller's image stage: fixed size, fit, 1:1 (=), zoom (+ / - / wheel), pan (drag, or the arrows while
  // zoomed), a checkerboard behind transparency; the full resolution is fetched from the kernel when needed
  const stage = createStage(() => send({ type: "full_res", item_id: currentId }));
  const img = stage.img;
  img.alt = "item to review";
  const side = h("div", "alwb-side");
  const reasonsBox = h("div", "alwb-review-reasons");
  const answersBox = h("div", "alwb-review-answers");
  const consensusBox = h("div", "alwb-review-consensus");
  const predBox = h("div", "alwb-predictions alwb-review-suggestion");
  const choicesTitle = h("div", "alwb-review-choices-title");
  const choicesBox = h("div", "alwb-choices");
  side.append(reasonsBox, answersBox, consensusBox, predBox, choicesTitle, choicesBox);
  main.append(stage.el, side);
  const empty = h("div", "alwb-review-empty");

  const actions = h("div", "alwb-actions");
  const acceptBtn = h("button", "alwb-review-accept", "Accept (Enter / a)");
  const skipBtn = h("button", "alwb-review-skip", "Next without deciding (n / \u2192)");
  actions.append(acceptBtn, skipBtn);
  const reasonRow = h("div", "alwb-reason-row");
  const reasonLabel = h("span", "alwb-reason-label");
  const reasonInput = h("input", "alwb-reason-input");
  reasonInput.type = "text"; reasonInput.spellcheck = true;
  reasonInput.placeholder = "reason for the correction (required) \u2014 Enter saves, Esc cancels";
  const saveBtn = h("button", "alwb-reason-save", "Save correction (Enter)");
  reasonRow.append(reasonLabel, reasonInput, saveBtn);

  const message = h("div", "alwb-message");
  const help = h("div", "alwb-help");
  root.append(header, guide, empty, main, actions, reasonRow, message, help);
  el.appendChild(root);

  function isMulti() { return model.get("mode") === "multi"; }
  function choices() { return model.get("choices") || []; }
  function rev() { return model.get("review") || {}; }
  function correcting() { return selected.size > 0; }
  function pct(x) { return Math.round(100 * x) + "%"; }

  function say(text, kind) { message.textContent = text || ""; message.dataset.kind = kind || "info"; }
  function setBusy(b) { root.dataset.busy = b ? "1" : "0"; root.classList.toggle("alwb-busy", !!b); }
  function send(msg) {
    if (inflight !== null) return false;
    seq += 1;
    inflight = seq;
    msg.view = view;
    msg.client_seq = seq;
    setBusy(true);
    clearTimeout(inflightTimer);
    inflightTimer = setTimeout(() => {
      if (inflight !== null) say("waiting for the kernel\u2026 if it was restarted or has died, run this cell again", "warn");
    }, 3000);
    model.send(msg);
    return true;
  }

  function selectionText() { return Array.from(selected).sort().join(" + "); }

  function openReason(focus) {
    reasonRow.classList.add("alwb-open");
    reasonLabel.textContent = "correct to " + selectionText() + ":";
    if (focus) reasonInput.focus();
  }
  function cancelCorrection(text) {
    selected = new Set();
    reasonInput.value = "";
    reasonRow.classList.remove("alwb-open");
    drawChoices();
    root.focus({ preventScroll: true });
    if (text) say(text, "info");
  }

  function pick(name) {
    if (inflight !== null) return;
    if (!currentId) { say("nothing to review right now", "warn"); return; }
    if (isMulti()) {
      if (selected.has(name)) selected.delete(name); else selected.add(name);
      drawChoices();
      if (selected.size) { openReason(false); say("tags for the correction: " + selectionText() + " \u2014 Enter writes the reason", "info"); }
      else cancelCorrection("correction cancelled");
    } else {
      selected = new Set([name]);
      drawChoices();
      openReason(true);
      say("", "info");
    }
  }

  function accept() {
    if (inflight !== null) return;
    if (!currentId) { say("nothing to accept: the review queue is empty", "warn"); return; }
    if (correcting()) { say("a correction is open: Enter in the reason box saves it, Esc cancels it", "warn"); return; }
    send({ type: "review_accept", item_id: currentId });
  }

  function skip() {
    if (inflight !== null) return;
    if (correcting()) cancelCorrection();
    send({ type: "review_skip", item_id: currentId });
  }

  function submitCorrection() {
    if (inflight !== null) return;
    if (!currentId) { say("nothing to review right now", "warn"); return; }
    if (!correcting()) { say("pick the right " + (isMulti() ? "tags" : "class") + " first (its key)", "warn"); return; }
    const answer = isMulti() ? { kind: "tags", tags: Array.from(selected).sort() }
                             : { kind: "label", label: Array.from(selected)[0] };
    send({ type: "review_correct", item_id: currentId, answer: answer, reason: reasonInput.value });
  }

  function drawChoices() {
    choicesBox.textContent = "";
    const multi = isMulti();
    choices().forEach((c) => {
      const b = h("button", multi ? "alwb-tag" : "alwb-choice");
      b.dataset.name = c.name;
      b.tabIndex = -1;
      if (c.key) b.appendChild(h("kbd", "alwb-key", c.key));
      b.appendChild(h("span", "alwb-name", c.name));
      if (selected.has(c.name)) b.classList.add(multi ? "alwb-on" : "alwb-hit");
      b.addEventListener("mousedown", (e) => e.preventDefault());
      b.addEventListener("click", (e) => { e.preventDefault(); if (!multi) root.focus({ preventScroll: true }); pick(c.name); });
      choicesBox.appendChild(b);
    });
    choicesTitle.textContent = multi ? "or correct it: toggle the right tags (their keys), then Enter for the reason"
                                     : "or correct it: pick the right class (its key), then give a reason";
  }

  function drawGuideline() {
    const g = model.get("guideline") || {};
    guideSummary.textContent = "Labelling guideline" + (g.version ? " (version " + g.version + ")" : "");
    guideBody.innerHTML = g.html || "<em>no guideline text in this project</em>";
  }

  function drawProgress() {
    const p = model.get("progress") || {};
    const m = p.model;
    modelInfo.textContent = m ? "model v" + m.version + " \u00b7 trained on " + m.n_labels + " labels" : "no model yet";
  }

  function drawReview() {
    const r = rev();
    const e = r.entry || null;
    const newId = e ? e.item_id : null;
    const fresh = r.shown_seq !== root.dataset.shownSeq;
    if (fresh) {
      const hadFocus = root.contains(document.activeElement);
      selected = new Set();
      reasonInput.value = "";
      reasonRow.classList.remove("alwb-open");
      if (hadFocus) root.focus({ preventScroll: true });
    }
    currentId = newId;
    root.dataset.shownSeq = r.shown_seq || "";
    root.dataset.itemId = newId || "";
    root.dataset.queueLength = r.queue_length || 0;
    root.dataset.position = r.position || 0;
    title.textContent = "Review \u00b7 reviewer " + (r.reviewer || "");
    reasonsBox.textContent = ""; answersBox.textContent = ""; consensusBox.textContent = ""; predBox.textContent = "";
    if (!e) {
      position.textContent = "review queue empty";
      empty.textContent = r.empty || "The review queue is empty.";
      empty.style.display = "";
      main.style.display = "none";
      actions.style.display = "none";
      img.removeAttribute("src");
      drawChoices();
      return;
    }
    empty.style.display = "none";
    main.style.display = "";
    actions.style.display = "";
    position.textContent = "item " + r.position + " of " + r.queue_length + " in the review queue";
    if (fresh || (img.getAttribute("src") !== e.src && !stage.el.dataset.full)) stage.show(e);
    reasonsBox.appendChild(h("span", "alwb-review-label", "queued: "));
    (e.reasons || []).forEach((why, i) => {
      const chip = h("span", "alwb-review-reason", (e.reasons_text || [])[i] || why);
      chip.dataset.reason = why;
      reasonsBox.appendChild(chip);
    });
    answersBox.appendChild(h("div", "alwb-review-label", "answers:"));
    (e.answers || []).forEach((a) => {
      const row = h("div", "alwb-review-answer");
      row.dataset.annotator = a.annotator;
      row.dataset.kind = a.kind;
      row.appendChild(h("strong", "alwb-review-who", a.annotator));
      row.appendChild(h("span", "alwb-review-what", " " + a.text));
      answersBox.appendChild(row);
    });
    consensusBox.textContent = e.tie ? "consensus: none (a tie between the answers)"
      : (e.consensus_text ? "consensus: " + e.consensus_text : "consensus: none (no label among the answers)");
    consensusBox.dataset.tie = e.tie ? "1" : "0";
    if (e.suggestions === false) {
      predBox.appendChild(h("div", "alwb-pred-title alwb-pred-off", "suggestions are turned off for this project"));
    } else if ((e.suggestion || []).length) {
      predBox.appendChild(h("div", "alwb-pred-title", "the model suggests:"));
      e.suggestion.forEach((p) => {
        const row = h("div", "alwb-pred");
        row.dataset.name = p[0];
        row.appendChild(h("span", "alwb-pred-name", p[0]));
        const bar = h("span", "alwb-pred-bar");
        const fill = h("span", "alwb-pred-fill"); fill.style.width = pct(p[1]);
        bar.appendChild(fill);
        row.appendChild(bar);
        row.appendChild(h("span", "alwb-pred-p", pct(p[1])));
        predBox.appendChild(row);
      });
    } else {
      predBox.appendChild(h("div", "alwb-pred-title", "no model suggestion yet"));
    }
    drawChoices();
  }

  function drawHelp() {
    help.textContent = "keys: Enter/a accept \u00b7 " + (isMulti() ? "tag keys toggle a correction, Enter then the reason"
      : "1-9/0 correct to that class, then the reason") + " (Enter saves, Esc cancels) \u00b7 n/\u2192 next without deciding"
      + " \u00b7 +/-/wheel zoom, = 1:1, arrows pan while zoomed";
  }

  function drawPrefetch() {
    keep.length = 0;
    (model.get("prefetch") || []).forEach((src) => {
      const im = new Image();
      im.src = src;
      if (im.decode) im.decode().catch(() => {});
      keep.push(im);
    });
  }

  model.on("change:ack", () => {
    const a = model.get("ack") || {};
    if (a.view !== view || a.client_seq !== inflight) return;
    inflight = null;
    clearTimeout(inflightTimer);
    setBusy(false);
    if (a.ok) say(a.info || "", "info"); else say(a.error || "refused", "error");
  });
  model.on("change:review", drawReview);
  model.on("change:full_res", () => {
    const f = model.get("full_res") || {};
    if (f.item_id && f.item_id === currentId && f.shown_seq === root.dataset.shownSeq) stage.setFull(f);
  });
  model.on("change:progress", drawProgress);
  model.on("change:guideline", drawGuideline);
  model.on("change:prefetch", drawPrefetch);
  model.on("change:choices", () => { drawChoices(); drawHelp(); });

  reasonInput.addEventListener("keydown", (e) => {
    e.stopPropagation();                    // typing a reason never triggers the widget's or JupyterLab's keys
    if (e.key === "Enter") { e.preventDefault(); submitCorrection(); }
    else if (e.key === "Escape") { e.preventDefault(); cancelCorrection("correction cancelled"); }
  });

  function btn(b, fn) {
    b.tabIndex = -1;
    b.addEventListener("mousedown", (e) => e.preventDefault());
    b.addEventListener("click", (e) => { e.preventDefault(); root.focus({ preventScroll: true }); fn(); });
  }
  btn(acceptBtn, accept);
  btn(skipBtn, skip);
  saveBtn.tabIndex = -1;
  saveBtn.addEventListener("mousedown", (e) => e.preventDefault());
  saveBtn.addEventListener("click", (e) => { e.preventDefault(); submitCorrection(); });

  root.addEventListener("mousedown", (e) => {
    const t = e.target;
    if (t === reasonInput || (t.closest && t.closest(".alwb-guideline-body, summary"))) return;
    setTimeout(() => { if (document.activeElement !== reasonInput) root.focus({ preventScroll: true }); }, 0);
  });

  root.addEventListener("keydown", (e) => {
    if (e.target !== root) return;                  // the reason box handles its own keys
    if (e.ctrlKey || e.metaKey || e.altKey) return;   // leave JupyterLab's shortcuts alone
    const k = e.key;
    let handled = true;
    if (inflight !== null) {
      handled = /^[0-9a-z]$/i.test(k) || k === "Enter" || k === "Backspace" || k === " " || k === "ArrowRight" || k === "Escape";
    } else if (k === "Enter") {
      if (correcting()) openReason(true); else accept();
    } else if (k === "a") {
      accept();
    } else if (stage.key(k)) {
      // zoom, 1:1, pan while zoomed (the Right arrow skips again once back to fit: = or -)
    } else if (k === "n" || k === "ArrowRight") {
      skip();
    } else if (k === "Escape") {
      if (correcting()) cancelCorrection("correction cancelled"); else handled = false;
    } else if (k === " ") {
      // space would scroll the notebook; do nothing
    } else {
      const c = choices().find((c) => c.key === k);
      if (c) pick(c.name); else handled = false;
    }
    if (handled) swallow(e);
  });

  drawGuideline(); drawProgress(); drawReview(); drawHelp(); drawPrefetch();
  setBusy(false);
  root.focus({ preventScroll: true });
  requestAnimationFrame(() => root.focus({ preventScroll: true }));
  model.send({ type: "hello", view: view });
  return () => { clearTimeout(inflightTimer); };
}

export default { render };
"""

CSS = r"""
.alwb-root { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; color: var(--jp-ui-font-color1, #222);
  border: 2px solid var(--jp-border-color2, #ddd); border-radius: 6px; padding: 8px 10px; outline: none; max-width: 980px; }
.alwb-root:focus { border-color: var(--jp-brand-color1, #1976d2); }
.alwb-root.alwb-busy { opacity: 0.93; }
.alwb-header { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
.alwb-annotator { font: inherit; padding: 1px 4px; }
.alwb-position { font-weight: 600; }
.alwb-training { color: var(--jp-warn-color0, #b26a00); font-weight: 600; animation: alwb-pulse 1.2s ease-in-out infinite; }
@keyframes alwb-pulse { 50% { opacity: 0.45; } }
.alwb-guideline { margin: 4px 0; }
.alwb-guideline-summary { cursor: pointer; font-weight: 600; }
.alwb-guideline-body { padding: 4px 10px; max-height: 220px; overflow: auto; background: var(--jp-layout-color2, #f6f6f6); }
.alwb-guideline-banner { background: var(--jp-warn-color3, #fff3cd); color: var(--jp-ui-font-color1, #222); border: 1px solid var(--jp-warn-color1, #e0b84c); padding: 6px 8px; border-radius: 4px; margin: 4px 0; }
.alwb-guideline-ack:focus, .alwb-annotator-add:focus, .alwb-annotator-cancel:focus { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.alwb-annotator-confirm { display: none; gap: 6px; align-items: center; margin: 4px 0; padding: 5px 8px; border-radius: 4px;
  border: 1px solid var(--jp-warn-color1, #e0b84c); background: var(--jp-warn-color3, #fff3cd); color: var(--jp-ui-font-color1, #222); }
.alwb-annotator-confirm.alwb-open { display: flex; flex-wrap: wrap; }
.alwb-annotator-confirm button { font: inherit; cursor: pointer; padding: 2px 8px; }
.alwb-root { position: relative; }
.alwb-keys-overlay { position: absolute; z-index: 10; top: 40px; left: 50%; transform: translateX(-50%); min-width: 360px;
  max-height: 80%; overflow: auto; padding: 10px 14px; border-radius: 6px; box-shadow: 0 4px 18px rgba(0,0,0,0.35);
  background: var(--jp-layout-color0, #fff); color: var(--jp-ui-font-color1, #222); border: 1px solid var(--jp-border-color1, #bbb); }
.alwb-keys-title { font-weight: 600; margin-bottom: 6px; }
.alwb-keys-table td { padding: 1px 8px 1px 0; vertical-align: top; }
.alwb-keys-foot { margin-top: 6px; color: var(--jp-ui-font-color2, #666); font-size: 11px; }
.alwb-stats-row { display: flex; gap: 8px; align-items: center; color: var(--jp-ui-font-color2, #555); margin-bottom: 4px; }
.alwb-budget-bar { width: 140px; height: 8px; border-radius: 4px; overflow: hidden; background: var(--jp-layout-color3, #e4e4e4); }
.alwb-budget-fill { display: block; height: 100%; background: var(--jp-success-color1, #7cb77c); }
.alwb-imgcol { flex: 0 0 auto; display: flex; flex-direction: column; gap: 4px; }
.alwb-details { color: var(--jp-ui-font-color2, #555); font-size: 12px; max-width: 640px; overflow-wrap: anywhere; }
.alwb-message[data-kind="info"] { color: var(--jp-ui-font-color1, #222); }
.alwb-hidden { display: none !important; }
.alwb-stage { position: relative; overflow: hidden; width: min(640px, 60vw); height: 480px; border-radius: 4px;
  border: 1px solid var(--jp-border-color2, #ddd);
  background-color: var(--jp-layout-color2, #eee);
  background-image: conic-gradient(var(--jp-layout-color3, #ccc) 25%, transparent 0 50%, var(--jp-layout-color3, #ccc) 0 75%, transparent 0);
  background-size: 16px 16px; }
.alwb-stage > .alwb-image { position: absolute; max-width: none; max-height: none; image-rendering: auto; }
.alwb-stage.alwb-zoomed { cursor: grab; }
.alwb-zoom { position: absolute; right: 6px; bottom: 4px; padding: 0 5px; border-radius: 3px; font-size: 11px;
  background: var(--jp-layout-color0, #fff); color: var(--jp-ui-font-color1, #222); opacity: 0.85; }
.alwb-zoom:empty { display: none; }
.alwb-history { margin-top: 6px; border-top: 1px solid var(--jp-border-color2, #ddd); padding-top: 4px; }
.alwb-history-title { color: var(--jp-ui-font-color2, #555); margin-bottom: 3px; }
.alwb-history-strip { display: flex; gap: 6px; overflow-x: auto; padding-bottom: 3px; }
.alwb-history-entry { font: inherit; color: inherit; display: flex; flex-direction: column; align-items: center; gap: 2px;
  flex: 0 0 auto; width: 84px; padding: 3px; cursor: pointer; border: 2px solid var(--jp-border-color2, #ddd); border-radius: 4px;
  background: var(--jp-layout-color1, #fff); }
.alwb-history-entry.alwb-sel { border-color: var(--jp-brand-color1, #1976d2); }
.alwb-history-entry.alwb-changing { background: var(--jp-layout-color2, #eee); }
.alwb-history-thumb { width: 56px; height: 56px; object-fit: contain; }
.alwb-history-text { font-weight: 600; max-width: 80px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.alwb-history-meta { font-size: 10px; color: var(--jp-ui-font-color2, #666); }
@media (forced-colors: active) { .alwb-root, .alwb-stage, .alwb-history-entry, .alwb-choice, .alwb-tag { border: 1px solid CanvasText; }
  .alwb-tag.alwb-on, .alwb-history-entry.alwb-sel { outline: 2px solid Highlight; } }
.alwb-dead { background: var(--jp-error-color3, #fdecea); border: 1px solid var(--jp-error-color1, #e57373); color: var(--jp-ui-font-color1, #222); padding: 6px 8px; border-radius: 4px; margin: 4px 0;
  font-weight: 600; }
.alwb-main { display: flex; gap: 16px; align-items: flex-start; }
.alwb-image { display: block; max-width: min(640px, 60vw); max-height: 480px; object-fit: contain; }
.alwb-image.alwb-pixelated { image-rendering: pixelated; image-rendering: crisp-edges; }
.alwb-side { flex: 1 1 260px; min-width: 220px; }
.alwb-predictions { margin-bottom: 8px; }
.alwb-pred-title { color: var(--jp-ui-font-color2, #666); margin-bottom: 2px; }
.alwb-model { color: var(--jp-ui-font-color2, #555); }
.alwb-report-now { color: var(--jp-ui-font-color2, #666); margin-bottom: 4px; }
.alwb-pred { display: grid; grid-template-columns: 90px 1fr 42px; gap: 6px; align-items: center; }
.alwb-pred-bar, .alwb-cov-bar { background: var(--jp-layout-color3, #e4e4e4); height: 9px; border-radius: 4px; overflow: hidden; display: block; }
.alwb-pred-fill { background: var(--jp-brand-color2, #6a9fd8); height: 100%; display: block; }
.alwb-cov-fill { background: var(--jp-success-color1, #7cb77c); height: 100%; display: block; }
.alwb-search { width: 100%; box-sizing: border-box; margin-bottom: 6px; font: inherit; }
.alwb-choices { display: flex; flex-wrap: wrap; gap: 5px; margin-bottom: 6px; }
.alwb-choice, .alwb-tag { font: inherit; cursor: pointer; border: 1px solid var(--jp-border-color1, #bbb); border-radius: 14px;
  background: var(--jp-layout-color1, #fff); padding: 3px 10px; color: inherit; }
.alwb-choice:hover, .alwb-tag:hover { background: var(--jp-layout-color2, #eee); }
.alwb-choice.alwb-hit { border-color: var(--jp-brand-color1, #1976d2); }
.alwb-tag.alwb-on { background: var(--jp-brand-color1, #1976d2); color: var(--jp-ui-inverse-font-color1, #fff); border-color: var(--jp-brand-color1, #1976d2); }
.alwb-key { font-family: var(--jp-code-font-family, monospace); font-size: 11px; border: 1px solid currentColor; border-radius: 3px;
  padding: 0 3px; margin-right: 5px; opacity: 0.75; }
.alwb-actions { display: flex; gap: 6px; margin-top: 8px; flex-wrap: wrap; }
.alwb-actions button, .alwb-submit, .alwb-guideline-ack, .alwb-reason-save, .alwb-annotator-add, .alwb-annotator-cancel {
  font: inherit; cursor: pointer; padding: 3px 9px; color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; }
.alwb-actions button:hover, .alwb-submit:hover, .alwb-guideline-ack:hover { background: var(--jp-layout-color2, #eee); }
.alwb-actions button:disabled { opacity: 0.55; cursor: default; }
.alwb-note-row { display: none; margin-top: 6px; }
.alwb-note-row.alwb-open { display: block; }
.alwb-note-input { width: 100%; box-sizing: border-box; font: inherit; }
.alwb-message { min-height: 18px; margin-top: 6px; }
.alwb-message[data-kind="warn"] { color: var(--jp-warn-color0, #9a6700); }
.alwb-message[data-kind="error"] { color: var(--jp-error-color0, #c62828); font-weight: 600; }
.alwb-coverage { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 2px 14px; margin-top: 6px; }
.alwb-cov-row { display: grid; grid-template-columns: 80px 1fr 30px; gap: 6px; align-items: center; }
.alwb-cov-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.alwb-report { margin-top: 8px; }
.alwb-report table { border-collapse: collapse; }
.alwb-report-title { margin-bottom: 4px; }
.alwb-report-table th, .alwb-report-table td { padding: 1px 6px; text-align: center; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.alwb-report-table th { text-align: left; font-weight: 600; }
.alwb-help { color: var(--jp-ui-font-color2, #777); font-size: 11px; margin-top: 6px; }
.alwb-notice { background: var(--jp-error-color3, #fdecea); border: 1px solid var(--jp-error-color1, #e57373); color: var(--jp-ui-font-color1, #222); padding: 5px 8px; border-radius: 4px; margin: 4px 0; }
.alwb-qual { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; padding: 6px 8px; margin: 4px 0; }
.alwb-qual[data-state="failed"] { border-color: var(--jp-error-color1, #e57373); background: var(--jp-error-color3, #fdecea); }
.alwb-qual[data-state="passed"] { border-color: var(--jp-success-color1, #7cb77c); background: var(--jp-success-color3, #f3faf3); }
.alwb-qual-result { font-weight: 600; }
.alwb-qual-error { color: var(--jp-error-color0, #c62828); font-weight: 600; }
.alwb-qual-guideline { margin: 6px 0; padding: 4px 10px; max-height: 220px; overflow: auto; background: var(--jp-layout-color2, #f6f6f6); }
.alwb-qual-retry { font: inherit; cursor: pointer; padding: 3px 9px; }
.alwb-qual-retry:focus { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.alwb-review-title { font-weight: 600; }
.alwb-review-reasons, .alwb-review-answers, .alwb-review-consensus { margin-bottom: 6px; }
.alwb-review-label { color: var(--jp-ui-font-color2, #666); margin-right: 4px; }
.alwb-review-reason { display: inline-block; border-radius: 10px; padding: 0 8px; margin-right: 4px; background: var(--jp-warn-color3, #fff3cd); border: 1px solid var(--jp-warn-color1, #e0b84c); }
.alwb-review-reason[data-reason="disagreement"] { background: var(--jp-error-color3, #fdecea); border-color: var(--jp-error-color1, #e57373); }
.alwb-review-answer[data-kind="flag"] .alwb-review-what { color: var(--jp-warn-color0, #9a6700); }
.alwb-review-empty { padding: 12px 4px; font-weight: 600; }
.alwb-reason-row { display: none; margin-top: 6px; gap: 6px; align-items: center; }
.alwb-reason-row.alwb-open { display: flex; }
.alwb-reason-label { font-weight: 600; white-space: nowrap; }
.alwb-reason-input { flex: 1 1 auto; font: inherit; }
.alwb-reason-save { font: inherit; cursor: pointer; padding: 3px 9px; }
"""

# ------------------------------------------------------------------------------------------------ taxonomy tree
# The tree labeller (issue 11), mounted by renderLabeller when the ``taxonomy`` trait is set (a project with a
# taxonomy). Breadcrumbs show the current path; 1-9/0 pick among the children of the current node (a group descends
# one level, a leaf answers with its full path); Backspace goes up one level (at the top it is the usual undo);
# ``/`` focuses a search over every leaf (matches show their full path), arrows move, Enter picks, Escape leaves.
# The path is reset whenever a new item is shown. Python's ``taxonomy`` trait: {roots, children, paths, leaves, keys};
# the item's ``tree_hint`` (Session.predict_tree: the model's top-down path and node probabilities) marks the
# predicted child at each level and shows each child's probability.
# A tag tree (``multilabel`` in the trait: every node is a tag) composes a tag set instead: 1-9/0 toggle the tag at
# this level (on: its ancestors come on too, and a group opens; off: its descendants go off), ``/`` searches every
# tag and Enter in the search toggles the hit; Enter on the widget submits the set (the usual multi-label submit).
TREE_ESM = r"""
function mountTree({ model, root, side, pick, tags }) {
  const box = h("div", "alwb-tree");
  const crumbs = h("div", "alwb-tree-crumbs");
  const search = h("input", "alwb-tree-search");
  search.type = "search"; search.placeholder = "/ search all classes"; search.spellcheck = false;
  const hits = h("div", "alwb-tree-hits");
  const kids = h("div", "alwb-tree-children");
  const help = h("div", "alwb-tree-help");
  box.append(crumbs, search, hits, kids, help);
  side.appendChild(box);
  let path = [];
  let hit = 0;
  let lastItem = null;
  function tax() { return model.get("taxonomy") || {}; }
  function active() { return !!(tax().leaves || []).length; }
  function keys() { return tax().keys || []; }
  function here() { const t = tax(); return path.length ? (t.children || {})[path[path.length - 1]] || [] : (t.roots || []); }
  function isLeaf(n) { return !((tax().children || {})[n]); }
  function fullPath(n) { return (tax().paths || {})[n] || [n]; }
  function multi() { return !!tax().multilabel; }
  function allNodes() { return tax().nodes || []; }   // tree order (object keys would put "0"-"9" first)
  function matches() {
    const q = search.value.trim().toLowerCase();
    if (!q) return [];
    const pool = multi() ? allNodes() : (tax().leaves || []);
    return pool.filter((l) => fullPath(l).some((p) => p.toLowerCase().includes(q)));
  }
  function toggle(n) {   // a tag tree: on brings the ancestors, off takes the descendants
    const on = !tags.has(n);
    if (on) tags.set(fullPath(n), true);
    else tags.set(allNodes().filter((m) => fullPath(m).indexOf(n) >= 0), false);
    if (on && !isLeaf(n)) path = fullPath(n).slice();
    draw();
  }
  function choose(n) {
    if (multi()) { toggle(n); return; }
    if (isLeaf(n)) { pick(n, fullPath(n)); return; }
    path = fullPath(n).slice();
    draw();
  }
  function up() { if (!path.length) return false; path.pop(); draw(); return true; }
  function draw() {
    root.classList.toggle("alwb-has-tree", active());
    box.style.display = active() ? "" : "none";
    if (!active()) return;
    crumbs.textContent = "";
    const top = h("span", "alwb-crumb", "all"); top.dataset.depth = "0";
    top.addEventListener("mousedown", (e) => e.preventDefault());
    top.addEventListener("click", () => { path = []; draw(); root.focus({ preventScroll: true }); });
    crumbs.appendChild(top);
    path.forEach((n, i) => {
      crumbs.appendChild(h("span", "alwb-crumb-sep", " \u203a "));
      const c = h("span", "alwb-crumb", n); c.dataset.depth = String(i + 1);
      c.addEventListener("mousedown", (e) => e.preventDefault());
      c.addEventListener("click", () => { path = path.slice(0, i + 1); draw(); root.focus({ preventScroll: true }); });
      crumbs.appendChild(c);
    });
    crumbs.dataset.path = path.join(" > ");
    kids.textContent = "";
    const hint = (model.get("item") || {}).tree_hint || null;   // the model's top-down path and node probabilities
    here().forEach((n, i) => {
      const b = h("button", "alwb-tree-child" + (isLeaf(n) ? " alwb-tree-leaf" : " alwb-tree-group"));
      b.dataset.name = n; b.tabIndex = -1;
      const k = keys()[i];
      if (k) b.appendChild(h("kbd", "alwb-key", k));
      b.appendChild(h("span", "alwb-name", n + (isLeaf(n) ? "" : " \u203a")));
      if (hint && hint.p && hint.p[n] !== undefined) b.appendChild(h("span", "alwb-tree-p", " " + Math.round(100 * hint.p[n]) + "%"));
      if (hint && (hint.path || []).indexOf(n) >= 0) b.classList.add("alwb-tree-predicted");
      if (multi() && tags.has(n)) b.classList.add("alwb-on");
      b.addEventListener("mousedown", (e) => e.preventDefault());
      b.addEventListener("click", (e) => { e.preventDefault(); root.focus({ preventScroll: true }); choose(n); });
      kids.appendChild(b);
    });
    hits.textContent = "";
    const m = matches();
    hit = Math.max(0, Math.min(hit, m.length - 1));
    m.forEach((l, i) => {
      const r = h("div", "alwb-tree-hit" + (i === hit ? " alwb-hit" : ""), fullPath(l).join(" > "));
      r.dataset.name = l;
      r.addEventListener("mousedown", (e) => e.preventDefault());
      r.addEventListener("click", () => { search.value = ""; root.focus({ preventScroll: true }); if (multi()) toggle(l); else pick(l, fullPath(l)); });
      hits.appendChild(r);
    });
    if (search.value.trim() && !m.length) hits.appendChild(h("div", "alwb-tree-nohit", (multi() ? "no tag" : "no class") + " matches \u201c" + search.value.trim() + "\u201d"));
    search.placeholder = multi() ? "/ search all tags" : "/ search all classes";
    crumbs.dataset.tags = multi() ? allNodes().filter((n) => tags.has(n)).join(",") : "";
    help.textContent = multi()
      ? "tag tree: 1-9/0 toggle a tag at this level (a parent comes on with it, a group opens) \u00b7 Backspace up a level \u00b7 / search all tags \u00b7 Enter submits the tags"
      : "tree: 1-9/0 choose at this level \u00b7 Backspace up a level \u00b7 / search all classes, Enter picks";
  }
  // a key on the widget (not in an input): true when the tree handled it
  function key(e) {
    if (!active()) return false;
    const k = e.key;
    if (k === "/") { search.focus(); return true; }
    if (k === "Backspace") return up();
    if (k === "Escape" && path.length) { path = []; draw(); return true; }
    const i = keys().indexOf(k);
    if (i >= 0) { const n = here()[i]; if (n !== undefined) { choose(n); return true; } }
    return false;
  }
  search.addEventListener("input", () => { hit = 0; draw(); });
  search.addEventListener("keydown", (e) => {
    e.stopPropagation();
    const m = matches();
    if (e.key === "Enter") {
      e.preventDefault();
      if (m.length) { const l = m[hit]; search.value = ""; draw(); root.focus({ preventScroll: true }); if (multi()) toggle(l); else pick(l, fullPath(l)); }
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault(); hit += e.key === "ArrowDown" ? 1 : -1; draw();
    } else if (e.key === "Escape") {
      e.preventDefault(); search.value = ""; draw(); root.focus({ preventScroll: true });
    }
  });
  model.on("change:item", () => {
    const it = model.get("item") || {};
    const at = (it.item_id || "") + "#" + (it.shown_seq || "");
    if (at !== lastItem) { lastItem = at; path = []; search.value = ""; }
    draw();
  });
  model.on("change:taxonomy", draw);
  lastItem = ((model.get("item") || {}).item_id || "") + "#" + ((model.get("item") || {}).shown_seq || "");
  draw();
  return { key, active, draw };
}
"""

TREE_CSS = r"""
.alwb-has-tree .alwb-choices, .alwb-has-tree .alwb-search { display: none !important; }
.alwb-tree { margin-bottom: 6px; }
.alwb-tree-crumbs { margin-bottom: 4px; font-weight: 600; }
.alwb-crumb { cursor: pointer; }
.alwb-crumb:last-child { color: var(--jp-brand-color1, #1976d2); }
.alwb-tree-search { width: 100%; box-sizing: border-box; margin-bottom: 4px; font: inherit; }
.alwb-tree-hits { margin-bottom: 4px; }
.alwb-tree-hit { padding: 1px 6px; cursor: pointer; border-radius: 3px; }
.alwb-tree-hit.alwb-hit { background: var(--jp-brand-color3, #dbe9f8); }
.alwb-tree-children { display: flex; flex-wrap: wrap; gap: 5px; }
.alwb-tree-child { font: inherit; cursor: pointer; border: 1px solid var(--jp-border-color1, #bbb); border-radius: 14px;
  background: var(--jp-layout-color1, #fff); padding: 3px 10px; color: inherit; }
.alwb-tree-group { font-weight: 600; }
.alwb-tree-child.alwb-on { background: var(--jp-brand-color1, #1976d2); color: var(--jp-ui-inverse-font-color1, #fff);
  border-color: var(--jp-brand-color1, #1976d2); }
.alwb-tree-predicted { border-color: #6a9fd8; box-shadow: inset 0 0 0 1px #6a9fd8; }
.alwb-tree-p { color: var(--jp-ui-font-color2, #666); font-weight: normal; }
.alwb-report-levels td.alwb-level-cov { text-align: left; font-size: 11px; color: var(--jp-ui-font-color2, #666); }
.alwb-tree-help { color: var(--jp-ui-font-color2, #777); font-size: 11px; margin-top: 4px; }
"""

ESM = ESM + TREE_ESM
CSS = CSS + TREE_CSS
