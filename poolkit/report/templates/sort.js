/* Sortable tables: a table with class "sortable" sorts its body by the column whose heading is
   clicked (again: the other way). Numbers sort as numbers (a cell's data-sort wins over its text),
   a dash or an empty cell sorts last. Without script the tables stay in the files' order. */
(function () {
  "use strict";
  function key(cell) {
    if (!cell) return "";
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    return raw.trim();
  }
  function number(text) {
    var m = /^[+\u2212-]?[0-9][0-9,]*(\.[0-9]+)?(e[+-]?[0-9]+)?/i.exec(text.replace("\u2212", "-"));
    return m ? parseFloat(m[0].replace(/,/g, "")) : null;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        var down = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var keys = rows.map(function (tr) { return key(tr.cells[col]); });
        var numeric = keys.every(function (k) { return k === "" || k === "\u2014" || number(k) !== null; });
        var order = rows.map(function (tr, i) { return i; });
        order.sort(function (a, b) {
          var x = keys[a], y = keys[b];
          var xe = x === "" || x === "\u2014", ye = y === "" || y === "\u2014";
          if (xe || ye) return xe === ye ? a - b : xe ? 1 : -1;
          var c = numeric ? number(x) - number(y) : x.localeCompare(y);
          return (down ? -c : c) || a - b;
        });
        order.forEach(function (i) { body.appendChild(rows[i]); });
      });
    });
  });
})();
