/* Shared page behaviour: live clock, relative times, table filter. No inline scripts (CSP). */
(function () {
  "use strict";

  function ago(date) {
    var s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  window.IoT = window.IoT || {};
  window.IoT.ago = ago;

  function refreshRelative() {
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = ago(d);
        el.title = d.toLocaleString();
      }
    });
  }

  function tickClock() {
    var now = new Date();
    document.querySelectorAll("[data-clock]").forEach(function (el) {
      el.textContent = now.toLocaleTimeString();
    });
    document.querySelectorAll("[data-clock-date]").forEach(function (el) {
      el.textContent = now.toLocaleDateString(undefined, {
        weekday: "long", year: "numeric", month: "long", day: "numeric",
      }) + " · " + Intl.DateTimeFormat().resolvedOptions().timeZone;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshRelative();
    tickClock();
    setInterval(refreshRelative, 15000);
    if (document.querySelector("[data-clock]")) setInterval(tickClock, 1000);
  });
})();
