// Live updates for the irules web view.
//
// Each element with `data-refresh` is polled: the script fetches that URL with
// the fragment's entity tag in If-None-Match. The daemon returns 304 while
// nothing changed, or 200 with the new fragment, which replaces the element's
// content. The fragment is HTML that the daemon rendered with autoescaping, so
// alert data in it is text. Polling pauses while the tab is hidden or someone
// types in a field of the fragment, backs off after errors, and stops when the
// session has ended.
(function () {
  "use strict";

  var MAX_DELAY_MS = 60000;

  function keepOpenState(region, html) {
    var open = {};
    region.querySelectorAll("details[id]").forEach(function (item) {
      open[item.id] = item.open;
    });
    region.innerHTML = html;
    region.querySelectorAll("details[id]").forEach(function (item) {
      if (Object.prototype.hasOwnProperty.call(open, item.id)) {
        item.open = open[item.id];
      }
    });
  }

  function isTyping(region) {
    var active = document.activeElement;
    if (!active || !region.contains(active)) {
      return false;
    }
    return active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT";
  }

  function hasDraft(region) {
    return Array.prototype.some.call(region.querySelectorAll("input[type=text], textarea"), function (field) {
      return field.value !== "";
    });
  }

  function watch(region) {
    var url = region.getAttribute("data-refresh");
    var etag = region.getAttribute("data-etag") || "";
    var interval = 1000 * (Number(region.getAttribute("data-refresh-s")) || 5);
    var delay = interval;
    var status = document.getElementById("live-status");

    function say(text) {
      if (status) {
        status.textContent = text;
      }
    }

    function schedule() {
      window.setTimeout(poll, delay);
    }

    function failed(reason) {
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      say("Live updates paused: " + reason + "; trying again in " + Math.round(delay / 1000) + " s.");
      schedule();
    }

    function poll() {
      if (document.hidden || isTyping(region) || hasDraft(region)) {
        schedule();
        return;
      }
      var headers = etag ? { "If-None-Match": etag } : {};
      fetch(url, { headers: headers, credentials: "same-origin", redirect: "manual", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401 || response.type === "opaqueredirect") {
            say("Live updates stopped: the session ended. Reload the page to log in again.");
            return;
          }
          if (response.status === 304) {
            delay = interval;
            say("Up to date; updates every " + interval / 1000 + " s.");
            schedule();
            return;
          }
          if (response.status !== 200) {
            failed("the daemon answered " + response.status);
            return;
          }
          return response.text().then(function (html) {
            etag = response.headers.get("ETag") || "";
            keepOpenState(region, html);
            delay = interval;
            say("Updated at " + new Date().toLocaleTimeString() + ".");
            schedule();
          });
        })
        .catch(function () {
          failed("the daemon is not reachable");
        });
    }

    schedule();
  }

  document.querySelectorAll("[data-refresh]").forEach(watch);
})();
