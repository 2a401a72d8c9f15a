// crmphone's Open CTI softphone page for Salesforce Lightning.
//
// Salesforce loads this page (the Call Center's reqAdapterUrl) in the softphone panel. It talks
// to two things:
//   * sforce.opencti (Open CTI, loaded from the org's own domain): screen pops, the panel's
//     visibility, the utility bar's icon and label, click-to-dial;
//   * the local crmphone bridge over a WebSocket (protocol crmphone.bridge.v1): call, phone and
//     pop events in; answer, hang up and dial commands out.
// Call logging is not done here: crmphone logs every call server-side, so a page that opens late
// loses nothing. Everything shown comes from data and is set as text, never as HTML.
(function () {
  "use strict";

  var PROTOCOL = "crmphone.bridge.v1";
  var OPENCTI_VERSION = "62.0";
  var TOKEN_KEY = "crmphone.bridge.token";
  var RECONNECT_MAX_MS = 15000;

  var $ = function (id) { return document.getElementById(id); };
  var socket = null;
  var nextId = 1;
  var pending = {};
  var currentCall = null;
  var reconnectDelay = 500;
  var token = takeToken();

  // -------------------------------------------------------------- the bridge token
  // The token comes once in the URL fragment (#token=…: fragments never reach a server or a log),
  // is kept in this browser's storage for this page only, and is removed from the address.
  function takeToken() {
    var fragment = new URLSearchParams(window.location.hash.slice(1));
    var fromUrl = fragment.get("token");
    if (fromUrl) {
      try { window.localStorage.setItem(TOKEN_KEY, fromUrl); } catch (e) { /* storage off */ }
      fragment.delete("token");
      var rest = fragment.toString();
      window.history.replaceState(null, "", window.location.pathname + window.location.search +
        (rest ? "#" + rest : ""));
      return fromUrl;
    }
    try { return window.localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function askForToken(reason) {
    showError(reason);
    $("token-form").hidden = false;
  }

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    try { window.localStorage.setItem(TOKEN_KEY, token); } catch (e) { /* storage off */ }
    $("token-form").hidden = true;
    connect();
  });

  // -------------------------------------------------------------- Open CTI
  function opencti() { return window.sforce && window.sforce.opencti; }

  // Salesforce passes the org's Lightning origin in ?sfdcIframeOrigin=; Open CTI must come from it.
  function loadOpenCti(then) {
    if (opencti()) { then(); return; }
    var origin = new URLSearchParams(window.location.search).get("sfdcIframeOrigin") || "";
    if (!/^https:\/\/[a-z0-9.-]+\.(force|salesforce)\.com$/i.test(origin)) {
      showError("Open this page from Salesforce (no sfdcIframeOrigin).");
      then();
      return;
    }
    var script = document.createElement("script");
    script.src = origin + "/support/api/" + OPENCTI_VERSION + "/lightning/opencti_min.js";
    script.onload = then;
    script.onerror = function () { showError("Open CTI could not be loaded."); then(); };
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

  function initialiseOpenCti() {
    var api = opencti();
    if (!api) { return; }
    cti("enableClickToDial");
    api.onClickToDial({ listener: onClickToDial });
    showPersistent(false);
    cti("notifyInitializationComplete");
  }

  function onClickToDial(payload) {
    if (!payload || !payload.number) { return; }
    var command = { command: "dial", number: String(payload.number) };
    if (payload.recordId && payload.objectType) {
      command.record = {
        kind: String(payload.objectType),
        id: String(payload.recordId),
        name: payload.recordName == null ? null : String(payload.recordName)
      };
    }
    cti("setSoftphonePanelVisibility", { visible: true });
    send(command);
  }

  function screenPop(message) {
    var api = opencti();
    if (!api) { return; }
    var types = api.SCREENPOP_TYPE || {};
    var records = message.records || [];
    if (message.outcome === "one" && records.length) {
      cti("screenPop", { type: types.SOBJECT || "sobject", params: { recordId: records[0].id } });
    } else if (message.outcome === "many") {
      cti("screenPop", { type: types.SEARCH || "search", params: { searchString: message.number || "" } });
    } else if (message.number) {
      cti("screenPop", {
        type: types.NEW_RECORD_MODAL || "newRecord",
        params: { entityName: "Contact", defaultFieldValues: { Phone: message.number } }
      });
    }
  }

  // -------------------------------------------------------------- the page
  function showError(text) { $("error").textContent = text || ""; }

  function setStatus(id, state, text) {
    var element = $(id);
    element.dataset.state = state;
    element.textContent = text;
  }

  function showPersistent(up) {
    setStatus("persistent", up ? "on" : "off",
      up ? "Persistent connection active" : "Persistent connection off");
    cti("setSoftphoneItemIcon", { key: up ? "call" : "end_call" });
    cti("setSoftphoneItemLabel", { label: up ? "Phone: connected" : "Phone" });
  }

  var caller = { name: "", number: "" };

  function showCall(state, data) {
    if (state === "ringing") {
      caller = { name: data.caller_name || "", number: data.customer_number || "" };
    }
    currentCall = state === "ended" ? null : data.conversation_id;
    $("call").hidden = state === "ended";
    $("call-state").textContent = state;
    // Names are data from the CRM and the platform: text only, never markup.
    $("caller-name").textContent = caller.name;
    $("caller-number").textContent = caller.number;
    $("answer").disabled = state !== "ringing";
    $("hangup").disabled = state === "ended";
    var label = state === "ringing" ? "Ringing: " : state === "connected" ? "On call: " : "Phone";
    cti("setSoftphoneItemLabel", {
      label: state === "ended" ? "Phone" : label + (caller.name || caller.number)
    });
  }

  function onEvent(name, data) {
    switch (name) {
      case "call.alerting":
        cti("setSoftphonePanelVisibility", { visible: true });
        showCall("ringing", data);
        break;
      case "call.connected": showCall("connected", data); break;
      case "call.held": showCall("on hold", data); break;
      case "call.resumed": showCall("connected", data); break;
      case "call.ended": showCall("ended", data); break;
      case "phone.persistent_connection_up": showPersistent(true); break;
      case "phone.persistent_connection_down": showPersistent(false); break;
      case "phone.connection_state":
        showPersistent(data.state === "PERSISTED" || data.state === "ACTIVE_CALL");
        break;
      case "phone.microphone_live":
        setStatus("microphone", data.live ? "on" : "off", data.live ? "Microphone live" : "Microphone off");
        break;
      default: break;
    }
  }

  $("answer").addEventListener("click", function () {
    if (currentCall) { send({ command: "answer", conversation_id: currentCall }); }
  });
  $("hangup").addEventListener("click", function () {
    if (currentCall) { send({ command: "hangup", conversation_id: currentCall }); }
  });
  $("dial-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var number = $("dial-number").value.trim();
    if (number) { send({ command: "dial", number: number }); }
  });

  // -------------------------------------------------------------- the bridge
  function send(command) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      showError("Not connected to crmphone.");
      return;
    }
    command.type = "command";
    command.id = nextId++;
    pending[command.id] = command.command;
    socket.send(JSON.stringify(command));
  }

  function onMessage(raw) {
    var message;
    try { message = JSON.parse(raw); } catch (e) { return; }
    if (message.type === "welcome") {
      reconnectDelay = 500;
      setStatus("connection", "online", "crmphone connected");
      showError("");
    } else if (message.type === "event") {
      onEvent(message.event, message.data || {});
    } else if (message.type === "pop") {
      screenPop(message);
    } else if (message.type === "result") {
      delete pending[message.id];
      if (!message.ok && message.error) { showError(message.error.message); }
    }
  }

  function connect() {
    if (!token) { askForToken("Paste the bridge token shown by crmphone."); return; }
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + window.location.host + "/ws");
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "hello", token: token, client: "salesforce", protocol: PROTOCOL }));
    };
    socket.onmessage = function (event) { onMessage(event.data); };
    socket.onclose = function (event) {
      setStatus("connection", "offline", "crmphone not connected");
      if (event.code === 4401) {
        try { window.localStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off */ }
        token = null;
        askForToken("The bridge refused the token: paste the current one.");
        return;
      }
      window.setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    };
  }

  loadOpenCti(function () {
    initialiseOpenCti();
    connect();
  });
})();
