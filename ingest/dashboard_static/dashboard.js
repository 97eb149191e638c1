/* Kopilka shop dashboard: live updates of the customer panel, nothing else.
 * The shop's events arrive as Server-Sent Events from /dashboard/events (same origin, the
 * session cookie); an event of the customer on screen re-reads the panel (server-rendered,
 * escaped HTML) and marks the ledger rows that are new. An event reaches the stream before the
 * database has it (Kafka -> sink -> Postgres), so the panel is re-read until the event's ledger
 * row is there (after 0.3 s, then 1.5 times longer each time up to 3 s, for about a minute).
 * The panel's data-events-seen / data-refreshed attributes count what happened (for tests and
 * for a curious developer). The page works without this script. */
(function () {
  "use strict";
  var panel = document.getElementById("customer-panel");
  if (!panel || !window.EventSource || !window.fetch) return;
  if (!document.getElementById("customer")) return; // no customer on screen: nothing to follow

  var busy = false;
  var again = false;
  var waiting = {}; // event ids not yet in the ledger on screen
  var tries = 0;
  var timer = null;
  var seenEvents = 0;

  function shownIds() {
    var seen = {};
    panel.querySelectorAll("#ledger time[data-event]").forEach(function (el) {
      seen[el.getAttribute("data-event")] = true;
    });
    return seen;
  }

  function showLiveNote() {
    var note = panel.querySelector(".live-note");
    if (note) note.hidden = false;
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var seen = shownIds();
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "panel");
    fetch(url.toString(), { credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.text() : Promise.reject(resp.status); })
      .then(function (html) {
        panel.innerHTML = html; // our own page fragment, escaped on the server
        panel.querySelectorAll("#ledger time[data-event]").forEach(function (el) {
          if (!seen[el.getAttribute("data-event")]) el.closest("tr").classList.add("fresh");
        });
        showLiveNote();
        panel.setAttribute("data-refreshed", String(Date.now()));
        var now = shownIds();
        Object.keys(waiting).forEach(function (id) { if (now[id]) delete waiting[id]; });
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); return; }
        if (Object.keys(waiting).length && tries < 25) {
          var delay = Math.min(300 * Math.pow(1.5, tries), 3000);
          tries += 1;
          if (timer === null) {
            timer = window.setTimeout(function () { timer = null; refresh(); }, delay);
          }
        } else {
          waiting = {};
        }
      });
  }

  var source = new EventSource(panel.getAttribute("data-events"));
  source.addEventListener("open", showLiveNote);
  (panel.getAttribute("data-event-types") || "").split(" ").forEach(function (type) {
    if (!type) return;
    source.addEventListener(type, function (message) {
      var shown = document.getElementById("customer");
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      seenEvents += 1;
      panel.setAttribute("data-events-seen", String(seenEvents));
      if (shown && event.customer && event.customer.id === shown.getAttribute("data-customer-id")) {
        waiting[event.event_id] = true;
        tries = 0;
        refresh();
      }
    });
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
