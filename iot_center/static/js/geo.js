/* A map that needs no internet: no tile server, just the world's land outline (world-atlas,
   served by this server), a graticule, a scale and a coordinate readout, drawn with Leaflet. */
(function () {
  "use strict";
  window.IoT = window.IoT || {};

  function fmt(lat, lon) {
    return Math.abs(lat).toFixed(4) + "° " + (lat >= 0 ? "N" : "S") + ", " +
      Math.abs(lon).toFixed(4) + "° " + (lon >= 0 ? "E" : "W");
  }

  window.IoT.formatPosition = fmt;

  window.IoT.offlineMap = function (element, landUrl, options) {
    if (typeof L === "undefined") {
      element.textContent = "The map library is not available on this server.";
      return null;
    }
    var map = L.map(element, Object.assign({
      attributionControl: false,
      worldCopyJump: true,
      minZoom: 1,
      maxZoom: 12,
      zoomSnap: 0.5,
    }, options || {}));
    var graticule = [];
    for (var lat = -80; lat <= 80; lat += 10) graticule.push([[lat, -180], [lat, 180]]);
    for (var lon = -180; lon <= 180; lon += 10) graticule.push([[-85, lon], [85, lon]]);
    L.polyline(graticule, { color: "#93c5fd", weight: 0.6, interactive: false }).addTo(map);
    L.control.scale({ imperial: false }).addTo(map);

    var readout = L.control({ position: "bottomright" });
    readout.onAdd = function () {
      var div = L.DomUtil.create("div", "map-coords");
      div.setAttribute("aria-hidden", "true");
      map.on("mousemove", function (e) { div.textContent = fmt(e.latlng.lat, e.latlng.lng); });
      return div;
    };
    readout.addTo(map);

    if (typeof topojson !== "undefined" && landUrl) {
      fetch(landUrl).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }).then(function (world) {
        var land = topojson.feature(world, world.objects.land);
        var borders = topojson.mesh(world, world.objects.countries, function (a, b) { return a !== b; });
        L.geoJSON(borders, {
          interactive: false,
          style: { color: "#a8b5c7", weight: 0.7 },
        }).addTo(map).bringToBack();
        L.geoJSON(land, {
          interactive: false,
          style: { color: "#94a3b8", weight: 1, fillColor: "#f8fafc", fillOpacity: 1 },
        }).addTo(map).bringToBack();
        element.dataset.land = "loaded";
      }).catch(function () { element.dataset.land = "missing"; });
    }
    return map;
  };

  window.IoT.stateColor = function (state) {
    return state === "online" ? "#16a34a" : state === "offline" ? "#ea580c" : "#64748b";
  };
})();
