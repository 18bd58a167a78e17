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

// Drawing an area on the compose page's map: clicks become "lat,lon" in the polygon and circle
// fields (the server reads only those fields, so typed coordinates work the same). The map is
// the server's equirectangular projection; its numbers are on the <svg> to invert it.
function drawArea() {
  var map = document.getElementById("draw-map");
  if (!map) { return; }
  var form = map.closest("form");
  var polygonField = form.querySelector('input[name="polygon"]');
  var circleField = form.querySelector('input[name="circle"]');
  var shownPolygon = document.getElementById("drawn-polygon");
  var shownCircle = document.getElementById("drawn-circle");
  var number = function (name) { return parseFloat(map.getAttribute("data-" + name)); };
  var lat0 = number("lat0"), lon0 = number("lon0"), kx = number("kx");
  var scale = number("scale"), margin = number("margin");
  var centre = null;

  function toLatLon(x, y) {
    return [lat0 - (y - margin) / scale, lon0 + (x - margin) / (kx * scale)];
  }
  function toXY(lat, lon) {
    return [margin + (lon - lon0) * kx * scale, margin + (lat0 - lat) * scale];
  }
  function points(text) {
    return text.trim().split(/\s+/).filter(Boolean).map(function (token) {
      return token.split(",").map(parseFloat);
    });
  }
  // Redraw from the fields, so that typed coordinates show too.
  function show() {
    shownPolygon.setAttribute("points", points(polygonField.value).map(function (p) {
      return toXY(p[0], p[1]).join(",");
    }).join(" "));
    var parts = circleField.value.trim().split(/\s+/);
    var c = parts.length === 2 ? points(parts[0])[0] : null;
    var r = parts.length === 2 ? parseFloat(parts[1]) : 0;
    if (c && c.length === 2 && r > 0) {
      var xy = toXY(c[0], c[1]);
      shownCircle.setAttribute("cx", xy[0]);
      shownCircle.setAttribute("cy", xy[1]);
      shownCircle.setAttribute("r", r / 111.0 * scale);
    } else {
      shownCircle.setAttribute("r", 0);
    }
  }
  function km(a, b) {  // haversine, good enough to size a circle by a click
    var rad = Math.PI / 180, dLat = (b[0] - a[0]) * rad, dLon = (b[1] - a[1]) * rad;
    var h = Math.pow(Math.sin(dLat / 2), 2) +
      Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.pow(Math.sin(dLon / 2), 2);
    return 2 * 6371 * Math.asin(Math.sqrt(h));
  }
  map.addEventListener("click", function (event) {
    var at = map.createSVGPoint();
    at.x = event.clientX;
    at.y = event.clientY;
    var p = at.matrixTransform(map.getScreenCTM().inverse());
    var ll = toLatLon(p.x, p.y).map(function (v) { return v.toFixed(4); });
    var mode = form.querySelector('input[name="draw_mode"]:checked').value;
    if (mode === "polygon") {
      polygonField.value = (polygonField.value.trim() + " " + ll.join(",")).trim();
    } else if (centre === null) {
      centre = ll;
      circleField.value = "";
    } else {
      var radius = km(centre.map(parseFloat), ll.map(parseFloat));
      circleField.value = centre.join(",") + " " + Math.max(radius, 0.1).toFixed(1);
      centre = null;
    }
    show();
  });
  document.getElementById("draw-clear").addEventListener("click", function () {
    polygonField.value = "";
    circleField.value = "";
    centre = null;
    show();
  });
  polygonField.addEventListener("input", show);
  circleField.addEventListener("input", show);
  show();
}

document.addEventListener("DOMContentLoaded", function () {
  applyWidths(document);
  startLive();
  pickDivisions();
  exerciseWhileComposing();
  drawArea();
});
