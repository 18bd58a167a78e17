// The console's only script (the CSP allows no inline script): live figures over SSE, bar
// widths, the division picker, and the exercise colour while composing.
"use strict";

function applyWidths(root) {
  root.querySelectorAll("[data-width]").forEach(function (el) {
    el.style.width = el.getAttribute("data-width") + "%";
  });
}

function startLive() {
  var box = document.querySelector("[data-live]");
  if (!box || !window.EventSource) { return; }
  var source = new EventSource(box.getAttribute("data-live"));
  source.addEventListener("update", function (e) {
    box.innerHTML = e.data;
    applyWidths(box);
    box.setAttribute("data-updated", String(Date.now()));
  });
  // Refused (the session ended before the stream opened): the browser gives up on a refused
  // stream, so the page goes to the sign-in rather than showing figures that no longer move.
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) { window.location.reload(); }
  });
  // The session ended (signed out elsewhere, or idle): the sign-in page, not stale figures.
  source.addEventListener("signed-out", function () {
    source.close();
    window.location.reload();
  });
}

function pickDivisions() {
  var found = document.getElementById("found");
  var chosen = document.getElementById("chosen");
  if (!found || !chosen) { return; }
  found.addEventListener("click", function (e) {
    var button = e.target.closest("button.pick");
    if (!button) { return; }
    var code = button.getAttribute("data-code");
    if (chosen.querySelector('input[value="' + code + '"]')) { return; }
    var label = document.createElement("label");
    label.className = "chip";
    var box = document.createElement("input");
    box.type = "checkbox"; box.name = "codes"; box.value = code; box.checked = true;
    label.appendChild(box);
    label.appendChild(document.createTextNode(" " + button.getAttribute("data-name")));
    chosen.appendChild(label);
    var area = document.querySelector('input[name="area_desc"]');
    if (area && !area.value) { area.value = button.getAttribute("data-name"); }
    summarise();
  });
  chosen.addEventListener("change", function (e) {
    if (e.target.name === "codes" && !e.target.checked) { e.target.closest("label").remove(); }
    summarise();
  });
  // The counts under the picked divisions, fetched again by htmx (#area-summary).
  function summarise() {
    var summary = document.getElementById("area-summary");
    if (summary) { summary.dispatchEvent(new Event("chosen-changed")); }
  }
}

function exerciseWhileComposing() {
  var form = document.getElementById("compose");
  if (!form) { return; }
  function paint() {
    var exercise = form.querySelector('input[name="status"][value="Exercise"]').checked;
    document.body.classList.toggle("exercise", exercise);
    document.body.classList.toggle("live", !exercise);
  }
  // Levels that wait for a second officer say so; the others go out at once and ask for the
  // officer's confirmation (the server refuses them without it).
  function levelNote() {
    var row = document.getElementById("submit-row");
    if (!row) { return; }
    var waits = row.getAttribute("data-waits").split(",");
    var level = form.querySelector('select[name="level"]').value;
    var now = waits.indexOf(level) < 0;
    row.querySelector(".waits").hidden = now;
    row.querySelector(".now-confirm").hidden = !now;
    row.querySelector('input[name="confirm_now"]').required = now;
    row.querySelector("button").textContent = now ? "立即发布" : "提交审批（审批前不发送）";
  }
  form.addEventListener("change", function () { paint(); levelNote(); });
  paint();
  levelNote();
}

document.addEventListener("DOMContentLoaded", function () {
  applyWidths(document);
  startLive();
  pickDivisions();
  exerciseWhileComposing();
});
