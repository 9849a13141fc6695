(function () {
  "use strict";
  function cellKey(row, col) {
    var cell = row.children[col];
    return cell ? cell.getAttribute("data-sort") : "";
  }
  function sortTable(th) {
    var table = th.closest("table"), tbody = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-type") === "number";
    var current = th.getAttribute("aria-sort");
    var dir;
    if (current === "ascending") dir = "descending";
    else if (current === "descending") dir = "ascending";
    else dir = th.getAttribute("data-first") || "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    // A run's row carries the full-width row under it (samples over training, details): they move together.
    var rows = Array.prototype.filter.call(tbody.rows, function (r) { return r.classList.contains("entry"); });
    rows.forEach(function (r, i) {
      r._pos = i;
      var next = r.nextElementSibling;
      r._more = next && next.classList.contains("more") ? next : null;
    });
    rows.sort(function (a, b) {
      var x = cellKey(a, col), y = cellKey(b, col);
      var xe = x === null || x === "", ye = y === null || y === "";
      if (xe || ye) return xe === ye ? a._pos - b._pos : (xe ? 1 : -1);  // missing values last either way
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return c !== 0 ? sign * c : a._pos - b._pos;
    });
    rows.forEach(function (r) { tbody.appendChild(r); if (r._more) tbody.appendChild(r._more); });
  }
  document.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () { sortTable(th); });
    th.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortTable(th); }
    });
  });
  var dsSel = document.getElementById("filter-dataset");
  var famSel = document.getElementById("filter-family");
  var pubBox = document.getElementById("filter-published");
  function applyFilters() {
    var ds = dsSel.value, fam = famSel.value, pub = pubBox.checked;
    document.querySelectorAll("section.dataset").forEach(function (s) {
      s.hidden = ds !== "" && s.getAttribute("data-dataset") !== ds;
    });
    document.querySelectorAll("tr.entry").forEach(function (r) {
      var okFam = fam === "" || r.getAttribute("data-family") === fam;
      var okPub = pub || !r.classList.contains("published");
      r.hidden = !(okFam && okPub);
      var next = r.nextElementSibling;
      if (next && next.classList.contains("more")) next.hidden = r.hidden;
    });
    document.querySelectorAll("g.pt").forEach(function (g) {
      g.style.display = fam === "" || g.getAttribute("data-family") === fam ? "" : "none";
    });
  }
  [dsSel, famSel, pubBox].forEach(function (el) { el.addEventListener("change", applyFilters); });
  var box = document.getElementById("lightbox"), big = box.querySelector("img");
  document.querySelectorAll("img.grid, img.step-grid").forEach(function (img) {
    img.addEventListener("click", function () { big.src = img.src; big.alt = img.alt; box.hidden = false; });
  });
  box.addEventListener("click", function () { box.hidden = true; });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") box.hidden = true; });
})();
