// crmphone-bridge.js: how a CRM page talks to the local crmphone bridge (protocol
// crmphone.bridge.v1). Shared by the Salesforce Open CTI page, the Zendesk app and the dashboard.
//
//   var bridge = CrmphoneBridge.connect({
//     url: "ws://127.0.0.1:8765/ws",     // default: the /ws of the origin that served the page
//     client: "salesforce",               // names the page in the bridge's logs
//     onEvent: function (name, data) {}, // call.*, phone.*, presence.* events
//     onPop: function (message) {},      // screen-pop instructions
//     onStatus: function (online) {},    // connected or not
//     onError: function (text) {},       // a refused command, a lost connection
//     onTokenNeeded: function (reason) {}, // no token, or the bridge refused it
//     token: "…"                          // optional: a token from the page's own settings
//   });
//   bridge.send({ command: "dial", number: "+15550100001" });
//   bridge.setToken("…");                 // a token the agent pasted
//
// The token arrives once in the page's URL fragment (#token=…: fragments never reach a server or
// a log), is kept in this browser's storage for this page's origin, and is removed from the address.
(function () {
  "use strict";

  var PROTOCOL = "crmphone.bridge.v1";
  var TOKEN_KEY = "crmphone.bridge.token";
  var RECONNECT_MAX_MS = 15000;
  var UNAUTHENTICATED = 4401;

  function storage(action, value) {
    try {
      if (action === "get") { return window.localStorage.getItem(TOKEN_KEY); }
      if (action === "set") { window.localStorage.setItem(TOKEN_KEY, value); }
      if (action === "remove") { window.localStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* storage is off: the agent pastes the token each time */ }
    return null;
  }

  function takeToken() {
    var fragment = new URLSearchParams(window.location.hash.slice(1));
    var fromUrl = fragment.get("token");
    if (!fromUrl) { return storage("get"); }
    storage("set", fromUrl);
    fragment.delete("token");
    var rest = fragment.toString();
    window.history.replaceState(null, "", window.location.pathname + window.location.search +
      (rest ? "#" + rest : ""));
    return fromUrl;
  }

  function connect(options) {
    var nothing = function () {};
    var onEvent = options.onEvent || nothing;
    var onPop = options.onPop || nothing;
    var onMessage = options.onMessage || nothing;
    var onStatus = options.onStatus || nothing;
    var onError = options.onError || nothing;
    var onTokenNeeded = options.onTokenNeeded || nothing;
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = options.url || scheme + "//" + window.location.host + "/ws";
    var token = takeToken() || options.token || null;
    var socket = null;
    var nextId = 1;
    var delay = 500;

    function open() {
      if (!token) { onTokenNeeded("Paste the bridge token shown by crmphone."); return; }
      socket = new WebSocket(url);
      socket.onopen = function () {
        socket.send(JSON.stringify({
          type: "hello", token: token, client: options.client || "page", protocol: PROTOCOL
        }));
      };
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "welcome") {
          delay = 500;
          onStatus(true);
        } else if (message.type === "event") {
          onEvent(message.event, message.data || {});
        } else if (message.type === "pop") {
          onPop(message);
        } else if (message.type === "result") {
          if (!message.ok && message.error) { onError(message.error.message); }
        } else {
          onMessage(message);
        }
      };
      socket.onclose = function (event) {
        onStatus(false);
        if (event.code === UNAUTHENTICATED) {
          storage("remove");
          token = null;
          onTokenNeeded("The bridge refused the token: paste the current one.");
          return;
        }
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      };
    }

    open();
    return {
      send: function (command) {
        if (!socket || socket.readyState !== WebSocket.OPEN) {
          onError("Not connected to crmphone.");
          return false;
        }
        command.type = "command";
        command.id = nextId++;
        socket.send(JSON.stringify(command));
        return true;
      },
      setToken: function (value) {
        token = String(value || "").trim();
        storage("set", token);
        open();
      }
    };
  }

  window.CrmphoneBridge = { connect: connect, PROTOCOL: PROTOCOL };
})();
