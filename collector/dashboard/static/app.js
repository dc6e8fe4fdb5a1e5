// Live updates for the guestdiag dashboard: listen to /events and, when a
// change concerns what this page shows, fetch the page's main part again
// (same URL with ?fragment=main) and swap it in, without reloading.
"use strict";
(function () {
  var body = document.body;
  var main = document.getElementById("main");
  var badge = document.getElementById("live");
  if (!body.dataset.live || !main || !window.EventSource || !window.fetch) {
    return;
  }
  var host = body.dataset.host || "";
  var vm = body.dataset.vm || "";
  // A fleet page of thousands of VMs is big: refresh it at most every few
  // seconds however many changes arrive. One VM's page is small.
  var gap = vm ? 500 : 3000;
  var timer = null, busy = false, again = false, last = 0;

  function status(text) {
    if (badge) { badge.textContent = text; }
  }

  // typing reports whether the reader is filling in a form on the page,
  // which a swap would wipe out.
  function typing() {
    var inputs = main.querySelectorAll("input[type=text]");
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].value !== "" || inputs[i] === document.activeElement) { return true; }
    }
    return false;
  }

  function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    if (typing()) {
      status("paused while you type");
      timer = setTimeout(refresh, 1000);
      return;
    }
    busy = true;
    last = Date.now();
    var u = new URL(window.location.href);
    u.searchParams.set("fragment", "main");
    fetch(u, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (!res.ok || res.headers.get("X-Fragment") !== "main") {
          throw new Error("HTTP " + res.status);
        }
        return res.text();
      })
      .then(function (html) {
        // Keep open <details> open across the swap.
        var open = [];
        main.querySelectorAll("details[id][open]").forEach(function (d) { open.push(d.id); });
        main.innerHTML = html;
        open.forEach(function (id) {
          var d = document.getElementById(id);
          if (d) { d.open = true; }
        });
        status("updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { status("update failed; reload the page"); })
      .finally(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (timer === null) {
      timer = setTimeout(refresh, Math.max(100, last + gap - Date.now()));
    }
  }

  // Some pages (placement) show figures that change without a change
  // event, such as host samples: refresh them every few seconds too.
  var every = parseInt(body.dataset.every || "0", 10);
  if (every > 0) {
    setInterval(schedule, every * 1000);
  }

  var q = new URLSearchParams();
  if (host) { q.set("host", host); }
  if (vm) { q.set("vm", vm); }
  var es = new EventSource("/events" + (q.toString() ? "?" + q.toString() : ""));
  es.addEventListener("change", function (ev) {
    var c;
    try { c = JSON.parse(ev.data); } catch (e) { return; }
    if ((host && c.host !== host) || (vm && c.vm !== vm)) { return; }
    schedule();
  });
  es.onopen = function () { status("live"); };
  es.onerror = function () { status("reconnecting…"); };
})();
