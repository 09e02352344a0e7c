/* Device dashboard: charts from /api/devices/<id>/measurements (already downsampled with
   aggregateWindow), latest values from /measurements/last, an offline map, auto-refresh. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;

  var RANGE_SECONDS = { "5m": 300, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
  var REFRESH_SECONDS = { "5m": 10, "1h": 30, "6h": 60, "24h": 60, "7d": 300, "30d": 300 };
  var DECIMALS = { Temperature: 1, Humidity: 1, Pressure: 1 };
  var offlineAfter = parseFloat(root.dataset.offlineAfter) * 1000;
  var range = root.dataset.range;
  var timer = null;
  var inFlight = null;
  var charts = {};
  var css = getComputedStyle(document.documentElement);

  function color(name, alpha) {
    var hex = css.getPropertyValue("--" + name).trim() || "#0e7490";
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function makeChart(canvas) {
    if (typeof Chart === "undefined") return null;
    var c = canvas.dataset.color;
    var unit = canvas.dataset.unit;
    return new Chart(canvas, {
      type: "line",
      data: { datasets: [{
        label: canvas.dataset.field + " (" + unit + ")",
        data: [],
        parsing: false,
        borderColor: color(c, 1),
        backgroundColor: color(c, 0.12),
        fill: "start",
        borderWidth: 2,
        tension: 0.25,
        pointRadius: 0,
        pointHoverRadius: 4,
      }] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        normalized: true,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: function (ctx) { return " " + ctx.parsed.y.toFixed(2) + " " + unit; } } },
        },
        scales: {
          x: {
            type: "time",
            time: { displayFormats: { second: "HH:mm:ss", minute: "HH:mm", hour: "HH:mm", day: "d MMM" }, tooltipFormat: "d MMM yyyy HH:mm" },
            grid: { display: false },
            ticks: { maxRotation: 0, autoSkipPadding: 18 },
          },
          y: { grid: { color: "rgba(100,116,139,.15)" }, ticks: { maxTicksLimit: 6 } },
        },
      },
    });
  }

  document.querySelectorAll("canvas[data-field]").forEach(function (canvas) {
    charts[canvas.dataset.field] = { canvas: canvas, chart: makeChart(canvas) };
  });

  // --- map ----------------------------------------------------------------------------
  var mapEl = document.getElementById("device-map");
  var map = IoT.offlineMap(mapEl, root.dataset.landUrl, { zoomControl: true });
  var marker = null;
  var centred = false;
  function showPosition(lat, lon, isDefault) {
    if (!map) return;
    var style = { radius: 9, color: "#fff", weight: 2, fillColor: isDefault ? "#64748b" : "#0e7490", fillOpacity: 0.95 };
    if (!marker) marker = L.circleMarker([lat, lon], style).addTo(map);
    else { marker.setLatLng([lat, lon]); marker.setStyle(style); }
    marker.bindTooltip(root.dataset.device);
    if (!centred) { map.setView([lat, lon], 4); centred = true; }
    document.getElementById("position-text").textContent =
      "(" + IoT.formatPosition(lat, lon) + (isDefault ? ", server default: no position reported" : "") + ")";
    mapEl.dataset.lat = lat;
    mapEl.dataset.lon = lon;
  }

  // --- data ---------------------------------------------------------------------------
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) throw new Error(body.message || ("HTTP " + r.status));
          return body;
        });
      });
  }

  function setState(state) { root.dataset.state = state; }

  function paintTiles(last) {
    var fields = last.fields || {};
    var newest = null;
    ["Temperature", "Humidity", "Pressure"].forEach(function (name) {
      var tile = document.querySelector('[data-tile="' + name + '"]');
      var f = fields[name];
      if (f) {
        tile.querySelector("[data-value]").textContent = Number(f.value).toFixed(DECIMALS[name]);
        var t = new Date(f.time);
        tile.querySelector("[data-time]").textContent = IoT.ago(t);
        tile.querySelector("[data-time]").title = t.toLocaleString();
        if (!newest || t > newest) newest = t;
      }
    });
    var badge = document.getElementById("device-state");
    var state = !newest ? "never" : (Date.now() - newest.getTime() <= offlineAfter ? "online" : "offline");
    badge.className = "badge state state-" + state;
    badge.textContent = state === "never" ? "no data yet" : state;
    root.dataset.deviceState = state;
    if (fields.Lat && fields.Lon) showPosition(fields.Lat.value, fields.Lon.value, false);
    else showPosition(parseFloat(root.dataset.defaultLat), parseFloat(root.dataset.defaultLon), true);
  }

  function paintCharts(series) {
    var fields = series.fields || {};
    var now = Date.now();
    var total = 0;
    Object.keys(charts).forEach(function (name) {
      var points = (fields[name] || []).map(function (p) { return { x: p[0], y: p[1] }; });
      var entry = charts[name];
      total += points.length;
      entry.canvas.dataset.points = String(points.length);
      if (!entry.chart) return;
      var ds = entry.chart.data.datasets[0];
      ds.data = points;
      ds.pointRadius = points.length < 60 ? 2.5 : 0;
      entry.chart.options.scales.x.min = now - RANGE_SECONDS[range] * 1000;
      entry.chart.options.scales.x.max = now;
      entry.chart.update("none");
    });
    document.getElementById("empty-state").classList.toggle("d-none", total > 0);
    return total;
  }

  function load() {
    var start = "-" + range;  // 5m, 1h, ... 30d: what the API takes
    var mine = {};
    inFlight = mine;
    setState("loading");
    var sep = root.dataset.seriesUrl.indexOf("?") === -1 ? "?" : "&";
    return Promise.all([
      getJSON(root.dataset.seriesUrl + sep + "start=" + encodeURIComponent(start)),
      getJSON(root.dataset.lastUrl),
    ]).then(function (res) {
      if (inFlight !== mine) return;  // a newer request (other range) won
      var total = paintCharts(res[0]);
      paintTiles(res[1]);
      var title = document.getElementById("empty-title");
      if (!Object.keys(res[1].fields || {}).length) title.textContent = title.dataset.never;
      document.getElementById("load-error").classList.add("d-none");
      setState(total > 0 ? "ready" : "empty");
      stamp();
    }).catch(function (e) {
      if (inFlight !== mine) return;
      var box = document.getElementById("load-error");
      box.textContent = "Could not load the measurements: " + e.message + ". Retrying automatically.";
      box.classList.remove("d-none");
      setState("error");
    });
  }

  var autoBox = document.getElementById("auto-refresh");
  function stamp() {
    var text = "Updated " + new Date().toLocaleTimeString();
    text += autoBox.checked ? " · refreshes every " + REFRESH_SECONDS[range] + " s while this page is open" : " · auto-refresh is off";
    document.getElementById("updated").textContent = text;
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    if (autoBox.checked) {
      timer = setInterval(function () { if (!document.hidden) load(); }, REFRESH_SECONDS[range] * 1000);
    }
  }

  autoBox.addEventListener("change", function () { schedule(); stamp(); });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && autoBox.checked) load();
  });

  document.querySelectorAll(".range-picker [data-range]").forEach(function (link) {
    link.addEventListener("click", function (ev) {
      ev.preventDefault();
      range = link.dataset.range;
      root.dataset.range = range;
      document.querySelectorAll(".range-picker [data-range]").forEach(function (other) {
        var on = other === link;
        other.classList.toggle("active", on);
        if (on) other.setAttribute("aria-current", "true"); else other.removeAttribute("aria-current");
      });
      document.querySelectorAll("[data-range-label]").forEach(function (el) {
        el.textContent = link.getAttribute("aria-label").replace(/^Last /, "");
      });
      history.replaceState(null, "", link.href);
      load();
      schedule();
    });
  });

  load();
  schedule();
})();
