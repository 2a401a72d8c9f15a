// crmphone-phone.js: the phone panel every CRM page shows, on top of crmphone-bridge.js.
//
// The page's HTML has the panel's elements (ids: connection, persistent, microphone, call,
// call-state, caller-name, caller-number, answer, hangup, dial-form, dial-number, token-form,
// token, error). This script fills them from the bridge's events and sends the agent's commands;
// the CRM-specific page adds only its own glue through hooks:
//
//   var phone = CrmphonePhone.start({
//     client: "zendesk", url: "ws://…/ws", token: "…",     // url and token optional
//     onRing: function (call) {},            // a call rings: {conversation_id, name, number}
//     onPop: function (message) {},          // screen-pop instruction (records, outcome)
//     onPersistent: function (up) {},        // the persistent connection went up or down
//     onCallState: function (state, call) {} // "ringing", "connected", "on hold", "ended"
//   });
//   phone.dial(number, record);              // click-to-dial with the record it came from
//
// Everything shown is set as text (textContent), never as HTML: names come from callers and CRMs.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  function start(options) {
    var nothing = function () {};
    var onRing = options.onRing || nothing;
    var onPop = options.onPop || nothing;
    var onPersistent = options.onPersistent || nothing;
    var onCallState = options.onCallState || nothing;
    var current = null;
    var persistentUp = null;

    function showError(text) { $("error").textContent = text || ""; }

    function setStatus(id, state, text) {
      $(id).dataset.state = state;
      $(id).textContent = text;
    }

    function showPersistent(up) {
      if (up === persistentUp) { return; }
      persistentUp = up;
      setStatus("persistent", up ? "on" : "off",
        up ? "Persistent connection active" : "Persistent connection off");
      onPersistent(up);
    }

    function showCall(state, data) {
      if (state === "ringing" || !current) {
        current = {
          conversation_id: data.conversation_id,
          name: data.caller_name || "",
          number: data.customer_number || ""
        };
      }
      $("call").hidden = state === "ended";
      $("call-state").textContent = state;
      $("caller-name").textContent = current.name;
      $("caller-number").textContent = current.number;
      $("answer").disabled = state !== "ringing";
      $("hangup").disabled = state === "ended";
      var call = current;
      if (state === "ended") { current = null; }
      if (state === "ringing") { onRing(call); }
      onCallState(state, call);
    }

    function onEvent(name, data) {
      switch (name) {
        case "call.alerting": showCall("ringing", data); break;
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
          setStatus("microphone", data.live ? "on" : "off",
            data.live ? "Microphone live" : "Microphone off");
          break;
        default: break;
      }
    }

    var bridge = window.CrmphoneBridge.connect({
      client: options.client,
      url: options.url,
      token: options.token,
      onEvent: onEvent,
      onPop: onPop,
      onError: showError,
      onTokenNeeded: function (reason) {
        showError(reason);
        $("token-form").hidden = false;
      },
      onStatus: function (online) {
        setStatus("connection", online ? "online" : "offline",
          online ? "crmphone connected" : "crmphone not connected");
        if (online) { showError(""); }
      }
    });

    $("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = $("token").value;
      $("token").value = "";
      $("token-form").hidden = true;
      bridge.setToken(value);
    });
    $("answer").addEventListener("click", function () {
      if (current) { bridge.send({ command: "answer", conversation_id: current.conversation_id }); }
    });
    $("hangup").addEventListener("click", function () {
      if (current) { bridge.send({ command: "hangup", conversation_id: current.conversation_id }); }
    });
    $("dial-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var number = $("dial-number").value.trim();
      if (number) { bridge.send({ command: "dial", number: number }); }
    });

    return {
      dial: function (number, record) {
        var command = { command: "dial", number: String(number) };
        if (record) { command.record = record; }
        return bridge.send(command);
      },
      showError: showError
    };
  }

  window.CrmphonePhone = { start: start };
})();
