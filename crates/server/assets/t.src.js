// Tally's browser tracker, readable source. `t.js` beside it is this file minified by hand
// (keep both in step); `GET /t.js` serves t.js. Limit: 2 KB gzipped (a test checks it).
//
// <script defer src="https://tally.example/t.js" data-key="tw_…"></script>
// tally('signup', {plan: 'pro'})            custom events (calls before the script loads are queued
//                                            by: window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)})
(function (w, d, n) {
  var s = d.currentScript, k = s.getAttribute('data-key');
  var api = s.getAttribute('data-api') || new URL(s.src).origin + '/t/e';
  var l = w.location, q = (w.tally && w.tally.q) || [];
  // Do-Not-Track and Global Privacy Control: nothing is sent, ever.
  if (n.doNotTrack == '1' || w.doNotTrack == '1' || n.globalPrivacyControl) {
    w.tally = function () {};
    return;
  }
  var last = null, ref = d.referrer || null;
  function send(name, props) {
    var body = JSON.stringify({ k: k, n: name, u: l.href, r: ref, t: d.title, p: props || {} });
    // sendBeacon is delivered even when the page is being hidden or unloaded.
    if (!(n.sendBeacon && n.sendBeacon(api, new Blob([body], { type: 'text/plain' })))) {
      fetch(api, { method: 'POST', body: body, keepalive: true, credentials: 'omit' });
    }
  }
  function page() {
    var here = l.pathname + l.search;
    if (here === last) return;
    if (last !== null) ref = l.origin + last;     // an SPA navigation: the previous page refers
    last = here;
    send('pageview');
  }
  w.tally = send;
  var push = history.pushState;
  history.pushState = function () { push.apply(this, arguments); page(); };
  var replace = history.replaceState;
  history.replaceState = function () { replace.apply(this, arguments); page(); };
  w.addEventListener('popstate', page);
  // Outbound links.
  d.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a');
    if (a && a.host && a.host !== l.host) send('outbound_link', { url: a.href });
  }, true);
  page();
  q.forEach(function (args) { send.apply(null, args); });
})(window, document, navigator);
