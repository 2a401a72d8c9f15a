// crmphone's Zendesk app (top bar): the ZAF glue only.
//
// The phone panel and the bridge connection are crmphone's shared crmphone-phone.js and
// crmphone-bridge.js; this file connects them to the Zendesk app framework: the app's settings
// name the bridge (bridge_url, optionally bridge_token), the popover opens when a call rings, and
// a screen pop routes the agent to the caller (or to the call's ticket). Zendesk's own Talk
// Partner Edition display requests, sent by crmphone server-side, pop even when this app is
// closed; this app adds the phone itself.
(function () {
  "use strict";

  var client = window.ZAFClient.init();

  function route(kind, id) {
    client.invoke("routeTo", kind, id);
  }

  function onPop(message) {
    var records = message.records || [];
    if (message.outcome !== "one" || !records.length) { return; }  // nothing unambiguous
    var record = records[0];
    if (record.kind === "ticket") { route("ticket", record.id); }
    else if (record.kind === "user") { route("user", record.id); }
  }

  client.metadata().then(function (metadata) {
    var settings = (metadata && metadata.settings) || {};
    window.CrmphonePhone.start({
      client: "zendesk",
      url: settings.bridge_url || undefined,
      token: settings.bridge_token || undefined,
      onRing: function () { client.invoke("popover", "show"); },
      onPop: onPop
    });
  });
})();
