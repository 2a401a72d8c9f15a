// crmphone's Open CTI softphone page for Salesforce Lightning: the Open CTI glue only.
//
// Salesforce loads this page (the Call Center's reqAdapterUrl) in the softphone panel. The phone
// panel and the bridge connection are crmphone's shared crmphone-phone.js and crmphone-bridge.js;
// this file connects them to sforce.opencti (loaded from the org's own domain): the panel opens
// on ring, the caller's record pops, the utility bar shows the persistent connection and the
// call, and click-to-dial dials with the record it came from. Call logging is not done here:
// crmphone logs every call server-side, so a page that opens late loses nothing.
(function () {
  "use strict";

  var OPENCTI_VERSION = "62.0";
  var phone = null;

  function opencti() { return window.sforce && window.sforce.opencti; }

  // Salesforce passes the org's Lightning origin in ?sfdcIframeOrigin=; Open CTI must come from it.
  function loadOpenCti(then) {
    if (opencti()) { then(); return; }
    var origin = new URLSearchParams(window.location.search).get("sfdcIframeOrigin") || "";
    if (!/^https:\/\/[a-z0-9.-]+\.(force|salesforce)\.com$/i.test(origin)) {
      then();
      phone.showError("Open this page from Salesforce (no sfdcIframeOrigin).");
      return;
    }
    var script = document.createElement("script");
    script.src = origin + "/support/api/" + OPENCTI_VERSION + "/lightning/opencti_min.js";
    script.onload = then;
    script.onerror = function () { then(); phone.showError("Open CTI could not be loaded."); };
    document.head.appendChild(script);
  }

  function cti(method, args) {
    var api = opencti();
    if (!api || typeof api[method] !== "function") { return; }
    var options = args || {};
    options.callback = function (response) {
      if (response && response.success === false) {
        console.warn("Open CTI " + method + " failed", response.errors);
      }
    };
    api[method](options);
  }

  function screenPop(message) {
    var api = opencti();
    if (!api) { return; }
    var types = api.SCREENPOP_TYPE || {};
    var records = message.records || [];
    if (message.outcome === "one" && records.length) {
      cti("screenPop", { type: types.SOBJECT || "sobject", params: { recordId: records[0].id } });
    } else if (message.outcome === "many") {
      cti("screenPop", {
        type: types.SEARCH || "search", params: { searchString: message.number || "" }
      });
    } else if (message.number) {
      cti("screenPop", {
        type: types.NEW_RECORD_MODAL || "newRecord",
        params: { entityName: "Contact", defaultFieldValues: { Phone: message.number } }
      });
    }
  }

  function onClickToDial(payload) {
    if (!payload || !payload.number) { return; }
    var record = null;
    if (payload.recordId && payload.objectType) {
      record = {
        kind: String(payload.objectType),
        id: String(payload.recordId),
        name: payload.recordName == null ? null : String(payload.recordName)
      };
    }
    cti("setSoftphonePanelVisibility", { visible: true });
    phone.dial(payload.number, record);
  }

  phone = window.CrmphonePhone.start({
    client: "salesforce",
    onRing: function () { cti("setSoftphonePanelVisibility", { visible: true }); },
    onPop: screenPop,
    onPersistent: function (up) {
      cti("setSoftphoneItemIcon", { key: up ? "call" : "end_call" });
      cti("setSoftphoneItemLabel", { label: up ? "Phone: connected" : "Phone" });
    },
    onCallState: function (state, call) {
      var who = call.name || call.number;
      var labels = { ringing: "Ringing: ", connected: "On call: ", "on hold": "On hold: " };
      cti("setSoftphoneItemLabel", { label: state === "ended" ? "Phone" : labels[state] + who });
    }
  });

  loadOpenCti(function () {
    var api = opencti();
    if (!api) { return; }
    cti("enableClickToDial");
    api.onClickToDial({ listener: onClickToDial });
    cti("setSoftphoneItemIcon", { key: "end_call" });
    cti("notifyInitializationComplete");
  });
})();
