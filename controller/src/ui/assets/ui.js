// Baton dashboard: refreshes the live part of a page (the element with
// id="live" and a data-refresh interval in ms) by fetching the same page and
// swapping that element's content. The focused control (by id) keeps focus,
// and nothing is swapped while the page is hidden or a field inside is edited.
(function () {
  "use strict";
  function schedule() {
    var live = document.getElementById("live");
    if (!live || !live.dataset.refresh) { return; }
    var every = Math.max(1000, parseInt(live.dataset.refresh, 10) || 3000);
    window.setTimeout(refresh, every);
  }
  function refresh() {
    var live = document.getElementById("live");
    var active = document.activeElement;
    var editing = active && live.contains(active) &&
      (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA");
    if (document.hidden || editing) { schedule(); return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        // The session ended (sign-out elsewhere, expiry, revoked token):
        // go where the server sent the request, the sign-in page.
        if (r.redirected) { window.location.assign(r.url); return null; }
        if (!r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var heading = doc.querySelector("main h1");
        if (fresh) {
          var focusId = active && live.contains(active) ? active.id : null;
          live.innerHTML = fresh.innerHTML;
          if (fresh.dataset.refresh) { live.dataset.refresh = fresh.dataset.refresh; }
          else { delete live.dataset.refresh; }
          var h1 = document.querySelector("main h1");
          if (heading && h1) { h1.innerHTML = heading.innerHTML; }
          if (focusId) {
            var again = document.getElementById(focusId);
            if (again) { again.focus(); }
          }
        }
        schedule();
      })
      .catch(function () { window.setTimeout(refresh, 5000); });
  }
  document.addEventListener("DOMContentLoaded", schedule);
})();
