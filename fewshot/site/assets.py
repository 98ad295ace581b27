"""The results page's inline style sheet and script (sortable columns and the ``#selftest`` mode).

Opened as ``index.html#selftest``, the script checks what the browser rendered and writes one line per check into
``<pre id="selftest">`` (``PASS name: detail`` or ``FAIL name: detail``, then ``selftest: N checks passed, M failed``):

- ``tables``: the page has as many result tables as its body's ``data-tables`` says;
- ``table <id>``: a table has ``data-rows`` body rows, ``data-records`` of them with a record;
- ``provenance <id>``: every record row opens a ``<details>`` (clicked) that names a commit;
- ``plots`` and ``plot <n>``: every chart drew ``data-marks`` data elements, with a non-empty box;
- ``sort <id>``: clicking each sortable header sorts its column ascending, a second click descending.
"""

CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1500px}"
    "h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}"
    "td:nth-child(-n+3),th:nth-child(-n+3),th:last-child{text-align:left}"
    "thead th{background:#f3f3f3;position:sticky;top:0}"
    "th.sortable{cursor:pointer;user-select:none}th.sortable:after{content:' \\2195';color:#aaa}"
    "th[aria-sort=ascending]:after{content:' \\2191';color:#222}"
    "th[aria-sort=descending]:after{content:' \\2193';color:#222}"
    "tr.paper td{color:#777;font-style:italic}td.ours{font-weight:600;white-space:nowrap}"
    "details.provenance{text-align:left;font-size:12px}details.provenance[open]{min-width:32em;max-width:48em}"
    "summary{cursor:pointer;color:#1f5fa8}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;"
    "margin:.4em 0}dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}"
    "pre{white-space:pre-wrap;font-size:11px;background:#f7f7f7;padding:6px;max-height:30em;overflow:auto}"
    ".plots svg,figure.curve svg{border:1px solid #eee;margin:4px;background:#fff}figure.curve{margin:.5em 0}"
    "p.warn{background:#fff4e0;border-left:4px solid #f0a020;padding:4px 8px}p.note,p.nocurve,p.folder{color:#666}"
    "p.checked{font-size:13px;color:#555}#selftest{border:2px solid #444}"
)

SCRIPT = r"""
(function () {
  "use strict";
  function key(row, index, type) {
    var cell = row.cells[index], v = cell ? cell.getAttribute("data-sort") : "";
    if (type === "num") { var n = parseFloat(v); return isNaN(n) ? null : n; }
    return v ? v : null;
  }
  function compare(x, y, type) { return type === "num" ? x - y : x.localeCompare(y); }
  function columnIndex(th) { return Array.prototype.indexOf.call(th.parentNode.children, th); }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], index = columnIndex(th);
    var type = th.getAttribute("data-type");
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {  // stable; rows without a value stay last in both directions
      var x = key(a, index, type), y = key(b, index, type);
      if (x === null || y === null) { return (x === null) - (y === null); }
      return dir * compare(x, y, type);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }
  document.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });

  function sorted(table, th, dir) {
    var index = columnIndex(th), type = th.getAttribute("data-type"), seenEmpty = false, last = null;
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var v = key(rows[i], index, type);
      if (v === null) { seenEmpty = true; continue; }
      if (seenEmpty) { return false; }
      if (last !== null && dir * compare(last, v, type) > 0) { return false; }
      last = v;
    }
    return true;
  }
  function selftest() {
    var lines = [], passed = 0, failed = 0;
    function check(name, fn) {
      var detail;
      try { detail = fn(); } catch (e) { detail = false; name += " (" + e + ")"; }
      var ok = detail !== false && !(typeof detail === "string" && detail.indexOf("FAIL") === 0);
      if (ok) { passed++; } else { failed++; }
      lines.push((ok ? "PASS " : "FAIL ") + name + ": " + (typeof detail === "string" ? detail : ok));
    }
    var tables = document.querySelectorAll("table.results"), plots = document.querySelectorAll("svg.plot");
    check("tables", function () {
      var want = +document.body.getAttribute("data-tables");
      return tables.length === want && want > 0 ? tables.length + " tables" : false;
    });
    tables.forEach(function (t) {
      check("table " + t.id, function () {
        var rows = t.tBodies[0].rows.length, recs = t.querySelectorAll("tbody tr.rec").length;
        var ok = rows === +t.getAttribute("data-rows") && recs === +t.getAttribute("data-records") && rows > 0 &&
          t.getBoundingClientRect().height > 0;
        return ok ? rows + " rows, " + recs + " with a record" : false;
      });
      check("provenance " + t.id, function () {
        var recs = t.querySelectorAll("tbody tr.rec"), n = 0;
        recs.forEach(function (r) {
          var d = r.querySelector("details.provenance"), c = d && d.querySelector("dd.commit");
          if (!d || !c || !c.textContent) { return; }
          d.querySelector("summary").click();
          if (d.open && c.getBoundingClientRect().height > 0) { n++; }
          d.open = false;
        });
        return n === recs.length ? n + " rows open their provenance" : false;
      });
      var headers = t.querySelectorAll("th.sortable");
      if (t.tBodies[0].rows.length < 2) { return; }
      check("sort " + t.id, function () {
        var original = Array.prototype.slice.call(t.tBodies[0].rows);
        for (var i = 0; i < headers.length; i++) {
          headers[i].click();
          if (!sorted(t, headers[i], 1)) { return "FAIL ascending " + headers[i].textContent; }
          headers[i].click();
          if (!sorted(t, headers[i], -1)) { return "FAIL descending " + headers[i].textContent; }
        }
        original.forEach(function (r) { t.tBodies[0].appendChild(r); });  // back to the page's order
        t.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
        return headers.length + " columns, both directions";
      });
    });
    check("plots", function () {
      var want = +document.body.getAttribute("data-plots");
      return plots.length === want && want > 0 ? plots.length + " plots" : false;
    });
    plots.forEach(function (p, i) {
      check("plot " + i, function () {
        var marks = p.querySelectorAll(".mark"), drawn = 0;
        marks.forEach(function (m) { var b = m.getBBox(); if (b.width + b.height > 0) { drawn++; } });
        var ok = marks.length === +p.getAttribute("data-marks") && drawn === marks.length && drawn > 0;
        return ok ? drawn + " marks drawn" : false;
      });
    });
    lines.push("selftest: " + passed + " checks passed, " + failed + " failed");
    var pre = document.createElement("pre");
    pre.id = "selftest";
    pre.textContent = lines.join("\n");
    document.body.insertBefore(pre, document.body.firstChild);
  }
  if (location.hash === "#selftest") { selftest(); }
})();
"""
