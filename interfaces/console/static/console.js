// The console's only script of its own (no inline script: the Content-Security-Policy forbids it).
(function () {
  "use strict";

  // An open thread follows its server-sent events and fetches its messages when they change.
  function follow(element) {
    var source = new EventSource(element.getAttribute("data-live"));
    source.addEventListener("changed", function () {
      htmx.trigger(element, "refresh");
    });
  }

  // Meta's media URLs expire: a placeholder instead of a broken image or video.
  document.addEventListener("error", function (event) {
    var media = event.target;
    if (!(media instanceof HTMLImageElement || media instanceof HTMLVideoElement)) {
      return;
    }
    var placeholder = document.createElement("span");
    placeholder.className = "placeholder";
    placeholder.textContent = (media.getAttribute("alt") || "media") + " (expired or unavailable)";
    media.replaceWith(placeholder);
  }, true);

  // The version slider shows the number it is on before the form is sent.
  document.addEventListener("input", function (event) {
    var slider = event.target;
    if (slider.id === "version" && slider.form) {
      var shown = slider.form.querySelector("output");
      if (shown) { shown.textContent = slider.value; }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
