/* The conformance filters: the page's only script. Without it every row shows. */
(function () {
  "use strict";
  var form = document.getElementById("cf-filters");
  if (!form) return;
  form.hidden = false;
  var keys = ["export", "opset", "runtime"];
  function matches(outcome, want) {
    return !want || outcome === want || (want === "failed" && outcome !== "" && outcome !== "ok" && outcome !== "invalid");
  }
  function apply() {
    var f = {};
    form.querySelectorAll("select").forEach(function (s) { f[s.name] = s.value; });
    var cols = {};
    document.querySelectorAll("#cf-matrix thead th[data-col]").forEach(function (th) {
      var show = keys.every(function (k) { return !f[k] || th.dataset[k] === f[k]; });
      cols[th.dataset.col] = show;
      th.hidden = !show;
    });
    var shown = 0, rows = document.querySelectorAll("#cf-matrix tbody tr");
    rows.forEach(function (tr) {
      var any = false;
      tr.querySelectorAll("td[data-col]").forEach(function (td) {
        var visible = cols[td.dataset.col];
        td.hidden = !visible;
        if (visible && td.dataset.outcome && matches(td.dataset.outcome, f.outcome)) any = true;
      });
      tr.hidden = !(any && (!f.group || tr.dataset.group === f.group));
      if (!tr.hidden) shown++;
    });
    document.querySelectorAll("#cf-failures tbody tr").forEach(function (tr) {
      var ok = ["group"].concat(keys).every(function (k) { return !f[k] || tr.dataset[k] === f[k]; });
      tr.hidden = !(ok && matches(tr.dataset.outcome, f.outcome));
    });
    document.getElementById("cf-count").textContent = shown + " of " + rows.length + " rows shown";
  }
  form.addEventListener("change", apply);
  apply();
})();
