/* Fleet map: the last known position of every device, coloured by its online state. */
(function () {
  "use strict";
  var el = document.getElementById("fleet-map");
  if (!el) return;
  var devices = JSON.parse(document.getElementById("fleet-data").textContent || "[]");
  var map = IoT.offlineMap(el, el.getAttribute("data-land-url"));
  if (!map) return;
  var lat0 = parseFloat(el.getAttribute("data-default-lat"));
  var lon0 = parseFloat(el.getAttribute("data-default-lon"));
  var bounds = [];
  devices.forEach(function (d) {
    var color = IoT.stateColor(d.state);
    var marker = L.circleMarker([d.lat, d.lon], {
      radius: 9, color: "#fff", weight: 2, fillColor: color, fillOpacity: 0.95,
    }).addTo(map);
    var popup = document.createElement("div");
    var link = document.createElement("a");
    link.href = d.url;
    link.textContent = d.id;
    link.className = "fw-semibold";
    popup.appendChild(link);
    var info = document.createElement("div");
    info.className = "small";
    info.textContent = (d.state === "never" ? "no data" : d.state) +
      (d.lastSeen ? " · last seen " + IoT.ago(new Date(d.lastSeen)) : "") + " · " +
      IoT.formatPosition(d.lat, d.lon);
    popup.appendChild(info);
    marker.bindPopup(popup);
    marker.bindTooltip(d.id);
    bounds.push([d.lat, d.lon]);
  });
  if (bounds.length === 1) map.setView(bounds[0], 5);
  else if (bounds.length > 1) map.fitBounds(bounds, { padding: [40, 40], maxZoom: 8 });
  else map.setView([lat0, lon0], 4);
  el.dataset.markers = String(bounds.length);
})();
