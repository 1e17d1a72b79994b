/* leadflow beacon: page visits on the marketer's own site.

   CONSENT FIRST. Until the page gives the visitor's consent, this script
   stores nothing, queues nothing and sends nothing (calls made before are
   dropped, not kept for later). Give consent from your cookie banner:
       leadflow.consent(true)
   or set  window.leadflowConsent = true  before this script loads.
   leadflow.consent(false) withdraws it and deletes what was stored.

   Add to every page:
       <script src="{{ script_url }}" async></script>

   Who the visitor is comes only from a leadflow email: its tracked links add
   lf_t=<signed token> to the address. The script takes lf_t out of the
   address bar at once (a shared or bookmarked link must not carry it) and,
   with consent, keeps it in localStorage. Without that token nothing is ever
   sent: anonymous visitors are not tracked at all.

   With consent, each page load records page_visited {url, title, referrer}
   (tag a page with  window.leadflowPage = {section: "product-b"}  before
   loading). Downloads and reads:
       leadflow.track("asset_downloaded", {asset: "pricing-sheet"})
       leadflow.track("article_read", {article: "nurture-101"})
*/
(function () {
  "use strict";
  var ENDPOINT = {{ endpoint|tojson }};
  var PARAM = "lf_t", STORE = "leadflow.visitor";
  var consented = false, pageSent = false, fromAddress = null;

  // Read lf_t into memory (not storage) and drop it from the address, keeping
  // the other parameters exactly as they were written.
  try {
    var kept = [];
    location.search.replace(/^\?/, "").split("&").forEach(function (part) {
      if (!part) return;
      if (part.split("=")[0] === PARAM) fromAddress = decodeURIComponent(part.slice(PARAM.length + 1));
      else kept.push(part);
    });
    if (fromAddress !== null && window.history && history.replaceState) {
      history.replaceState(history.state, "",
        location.pathname + (kept.length ? "?" + kept.join("&") : "") + location.hash);
    }
  } catch (e) { /* an odd address: no token */ }

  function token() {
    if (fromAddress) return fromAddress;
    try { return window.localStorage.getItem(STORE); } catch (e) { return null; }
  }

  function send(kind, properties) {
    if (!consented) return false;
    var t = token();
    if (!t) return false;
    var body = JSON.stringify({t: t, kind: kind, url: location.href, title: document.title,
                               referrer: document.referrer || null, properties: properties || {}});
    // sendBeacon posts text/plain: a "simple" request (no CORS preflight)
    // that outlives the page if the visitor navigates away.
    if (navigator.sendBeacon && navigator.sendBeacon(ENDPOINT, body)) return true;
    try {
      fetch(ENDPOINT, {method: "POST", body: body, keepalive: true, mode: "no-cors", credentials: "omit",
                       headers: {"Content-Type": "text/plain"}});
    } catch (e) { return false; }
    return true;
  }

  function consent(given) {
    consented = given === true;
    try {
      if (!consented) { fromAddress = null; window.localStorage.removeItem(STORE); }
      else if (fromAddress) window.localStorage.setItem(STORE, fromAddress);
    } catch (e) { /* storage blocked: this page still counts */ }
    if (consented && !pageSent) {
      pageSent = true;
      var tags = window.leadflowPage;
      send("page_visited", tags && typeof tags === "object" ? tags : {});
    }
  }

  window.leadflow = {
    consent: consent,
    track: function (kind, properties) { return send(String(kind), properties); }
  };
  if (window.leadflowConsent === true) consent(true);
})();
