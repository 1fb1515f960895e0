/* The conformance filters: the page's only script. Without it every row shows. */
(function () {
  "use strict";
  var form = document.getElementById("cf-filters");
  if (!form) return;
  form.hidden = false;
  var keys = ["export", "opset", "runtime"];
  var all = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var selects = all("select", form);
  var heads = all("#cf-matrix thead th[data-col]");
  var rows = all("#cf-matrix tbody tr").map(function (tr) { return {tr: tr, cells: all("td[data-col]", tr)}; });
  var failures = all("#cf-failures tbody tr");
  var count = document.getElementById("cf-count");
  function matches(outcome, want) {
    return !want || outcome === want || (want === "failed" && outcome !== "" && outcome !== "ok" && outcome !== "invalid");
  }
  function apply() {
    var f = {};
    selects.forEach(function (s) { f[s.name] = s.value; });
    var cols = {};
    heads.forEach(function (th) {
      var show = keys.every(function (k) { return !f[k] || th.dataset[k] === f[k]; });
      cols[th.dataset.col] = show;
      th.hidden = !show;
    });
    var shown = 0;
    rows.forEach(function (row) {
      var any = false;
      row.cells.forEach(function (td) {
        var visible = cols[td.dataset.col];
        td.hidden = !visible;
        if (visible && td.dataset.outcome && matches(td.dataset.outcome, f.outcome)) any = true;
      });
      row.tr.hidden = !(any && (!f.group || row.tr.dataset.group === f.group));
      if (!row.tr.hidden) shown++;
    });
    failures.forEach(function (tr) {
      var ok = ["group"].concat(keys).every(function (k) { return !f[k] || tr.dataset[k] === f[k]; });
      tr.hidden = !(ok && matches(tr.dataset.outcome, f.outcome));
    });
    count.textContent = shown + " of " + rows.length + " rows shown";
  }
  form.addEventListener("change", apply);
  apply();
})();
