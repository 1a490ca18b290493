// DashFlow viewer: pages marked data-live fetch themselves again when the server says the
// WAL changed, and swap in their #live part. No other script runs on these pages.
//
// The server compares against the WAL as it finds it when the stream opens, which can be
// after this page was rendered (a resume that ends while the page loads): so the page also
// fetches itself once each time the stream opens. Only refreshes the server asked for count
// in data-refreshed.
(function () {
  "use strict";
  if (!document.body || !document.body.dataset.live || !window.EventSource) {
    return;
  }
  var source = new EventSource("/live");
  var busy = false;
  var again = false;
  var againCounted = false;
  function refresh(counted) {
    if (busy) {
      again = true;
      againCounted = againCounted || counted;
      return;
    }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var next = fresh.getElementById("live");
        var current = document.getElementById("live");
        // Unchanged parts stay, with whatever the reader was doing in them.
        if (next && current && next.outerHTML !== current.outerHTML) {
          current.replaceWith(document.importNode(next, true));
        }
        if (counted) {
          var refreshed = Number(document.body.dataset.refreshed || "0") + 1;
          document.body.dataset.refreshed = String(refreshed);
        }
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        busy = false;
        if (again) {
          var count = againCounted;
          again = false;
          againCounted = false;
          refresh(count);
        }
      });
  }
  source.onopen = function () { refresh(false); };
  source.onmessage = function () { refresh(true); };
})();
