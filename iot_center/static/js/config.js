/* Device configuration page: the token stays out of the HTML until a deliberate Reveal or Copy,
   which fetch it from /api/env/<id> with the signed-in session. */
(function () {
  "use strict";
  var root = document.getElementById("config-root");
  if (!root) return;
  var token = null;
  var fullJson = "";  // kept in memory, never in the DOM
  var shown = false;
  var mask = root.getAttribute("data-mask");
  var revealBtn = document.getElementById("reveal-token");
  var errorBox = document.getElementById("token-error");

  function fetchToken() {
    if (token !== null) return Promise.resolve(token);
    return fetch(root.getAttribute("data-env-url"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    }).then(function (r) {
      if (!r.ok) throw new Error("the server answered HTTP " + r.status);
      return r.json();
    }).then(function (doc) {
      token = doc.influx_token;
      fullJson = JSON.stringify(doc, null, 2);
      return token;
    });
  }

  function fail(e) {
    errorBox.textContent = "Could not fetch the token: " + e.message;
    errorBox.classList.remove("d-none");
  }

  function paint() {
    document.querySelectorAll("[data-token-slot]").forEach(function (el) {
      el.textContent = shown ? token : mask;
    });
    revealBtn.setAttribute("aria-pressed", shown ? "true" : "false");
    revealBtn.querySelector("span").textContent = shown ? "Hide" : "Reveal";
    revealBtn.querySelector("i").className = shown ? "bi bi-eye-slash" : "bi bi-eye";
    root.dataset.revealed = shown ? "true" : "false";
  }

  revealBtn.addEventListener("click", function () {
    if (shown) { shown = false; paint(); return; }
    fetchToken().then(function () { shown = true; paint(); }).catch(fail);
  });

  function copyText(text, button) {
    function done() {
      var old = button.innerHTML;
      button.textContent = "Copied";
      setTimeout(function () { button.innerHTML = old; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(done);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "position-absolute top-0 start-0 opacity-0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var what = button.getAttribute("data-copy");
      fetchToken().then(function (t) {
        var text;
        if (what === "token") text = t;
        else if (what === "agent-ini") {
          text = document.getElementById("agent-ini").textContent.split(mask).join(t);
        } else text = fullJson;
        return copyText(text, button);
      }).catch(fail);
    });
  });
})();
