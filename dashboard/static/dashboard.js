// BytePort dashboard: the small behaviours htmx does not cover. No inline
// script anywhere (the CSP forbids it); every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var MAX_LINES = 5000;

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  function filterOf(pane) {
    var tools = document.querySelector('[data-log="' + pane.id + '"]');
    if (!tools) return null;
    var p = tools.querySelector(".js-filter-p");
    var s = tools.querySelector(".js-filter-s");
    return { p: p ? p.value : "", s: s ? s.value : "" };
  }

  function applyFilter(pane, lines) {
    var f = filterOf(pane);
    if (!f) return;
    for (var i = 0; i < lines.length; i++) {
      var l = lines[i];
      var show = (!f.p || l.getAttribute("data-p") === f.p) && (!f.s || l.getAttribute("data-s") === f.s);
      l.hidden = !show;
    }
  }

  function trim(pane) {
    var extra = pane.children.length - MAX_LINES;
    for (var i = 0; i < extra; i++) pane.removeChild(pane.firstElementChild);
  }

  function setup(pane) {
    var state = { follow: true, paused: false, held: [] };
    pane.scrollTop = pane.scrollHeight;
    // Auto-scroll only while the reader is at the bottom: scrolling up stops it.
    pane.addEventListener("scroll", function () { state.follow = atBottom(pane); });
    pane.addEventListener("htmx:sseBeforeMessage", function (e) {
      if (state.paused) {
        state.held.push(e.detail.data);
        e.preventDefault();
      }
    });
    pane.addEventListener("htmx:sseMessage", function () {
      applyFilter(pane, pane.children);
      trim(pane);
      if (state.follow) pane.scrollTop = pane.scrollHeight;
    });
    var tools = document.querySelector('[data-log="' + pane.id + '"]');
    if (!tools) return;
    var selects = tools.querySelectorAll("select");
    for (var i = 0; i < selects.length; i++) {
      selects[i].addEventListener("change", function () { applyFilter(pane, pane.children); });
    }
    applyFilter(pane, pane.children);
    var pause = tools.querySelector(".js-pause");
    if (pause) {
      pause.addEventListener("click", function () {
        state.paused = !state.paused;
        pause.textContent = state.paused ? "Resume (" + 0 + " held)" : "Pause";
        if (!state.paused && state.held.length) {
          // The held fragments came from our own server, escaped there.
          pane.insertAdjacentHTML("beforeend", state.held.join(""));
          state.held = [];
          applyFilter(pane, pane.children);
          trim(pane);
          if (state.follow) pane.scrollTop = pane.scrollHeight;
        }
      });
      pane.addEventListener("htmx:sseBeforeMessage", function () {
        if (state.paused) pause.textContent = "Resume (" + state.held.length + " held)";
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var panes = document.querySelectorAll(".lines[data-follow]");
    for (var i = 0; i < panes.length; i++) setup(panes[i]);
  });
})();
