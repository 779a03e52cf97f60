// shimmfa central: the one page script. It starts asciinema-player on a
// recording's page; htmx (vendored) does the live refresh from attributes.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("player");
  if (el && window.AsciinemaPlayer) {
    window.AsciinemaPlayer.create(el.dataset.cast, el, {
      fit: "width", autoPlay: true, idleTimeLimit: 2, terminalFontSize: "15px"
    });
  }
});
