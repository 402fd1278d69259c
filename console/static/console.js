// Progressive enhancement only: every page works without it.
(function () {
  "use strict";
  // The routes table refreshes its figures from the JSON API every two seconds.
  var table = document.querySelector("[data-refresh]");
  if (table) {
    var shown = function (field, value) {
      if (value === null || value === undefined) return "—";
      if (field === "mean_ms" || field === "p99_ms") return Math.round(value) + " ms";
      return String(value);
    };
    var refresh = function () {
      fetch(table.getAttribute("data-refresh"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (r.status === 401) { location.reload(); } return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) return;
          data.routes.forEach(function (row) {
            var tr = table.querySelector('tr[data-route="' + CSS.escape(row.id) + '"]');
            if (!tr) return;
            ["per_second", "total", "delivered", "failed", "in_flight", "queue_depth", "mean_ms", "p99_ms", "last_error"].forEach(function (f) {
              var td = tr.querySelector('[data-field="' + f + '"]');
              if (td) td.textContent = f === "last_error" ? (row[f] || "") : shown(f, row[f]);
            });
            var dead = tr.querySelector('[data-field="dead"] a');
            if (dead) dead.textContent = String(row.dead);
          });
        })
        .catch(function () { /* the hub restarts: try again next time */ });
    };
    setInterval(refresh, 2000);
  }
  // Dead letters: select all.
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll('#dead-letters input[name="ids"]').forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
