// DashFlow viewer: pages marked data-live fetch themselves again when the server says the
// WAL changed, and swap in their #live part. No other script runs on these pages.
(function () {
  "use strict";
  if (!document.body || !document.body.dataset.live || !window.EventSource) {
    return;
  }
  var source = new EventSource("/live");
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var next = fresh.getElementById("live");
        var current = document.getElementById("live");
        if (next && current) {
          current.replaceWith(document.importNode(next, true));
        }
        var refreshed = Number(document.body.dataset.refreshed || "0") + 1;
        document.body.dataset.refreshed = String(refreshed);
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }
  source.onmessage = refresh;
})();
