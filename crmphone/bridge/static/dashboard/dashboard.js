// dashboard.js: the bridge's standalone dashboard, on top of crmphone-bridge.js.
//
// It keeps a small model of what the bridge has said (the agents roster and each agent's phone
// and presence, the live calls with their screen pops, the CRM records just written) and redraws
// the page from it after every message. The bridge replays its current state right after the
// welcome in the same messages it sends live, so the page only processes messages in order.
//
// Everything from the bridge is set with textContent or as a data-* attribute, never as HTML:
// names come from callers and CRMs. The page sends no commands; the token form is its only input.
(function () {
  "use strict";

  var MAX_RECORDS = 20;
  // Pops may arrive before their call's first event; the bound keeps a long demo's memory flat.
  var MAX_POPS = 200;
  // Ended calls remembered so that a late event for one does not bring it back.
  var MAX_ENDED = 200;
  var STAGE_RANK = { alerting: 1, connected: 2, ended: 3, wrapped_up: 4 };
  var CALL_EVENTS = new Set(["call.alerting", "call.connected", "call.held", "call.resumed",
    "call.transferred", "call.ended", "call.wrapup"]);
  var AGENT_EVENTS = new Set(["phone.connection_state", "phone.persistent_connection_up",
    "phone.persistent_connection_down", "phone.microphone_live", "presence.changed",
    "presence.routing_status"]);
  var CALL_STATE_TEXT = {
    ringing: "Ringing", connected: "Connected", held: "On hold", transferred: "Transferred"
  };
  var PERSISTENT_TEXT = {
    on: "Persistent connection active",
    establishing: "Persistent connection being set up",
    failed: "Persistent connection failed",
    off: "No persistent connection",
    unknown: "Persistent connection: not reported yet"
  };
  var MICROPHONE_TEXT = {
    live: "Microphone live", off: "Microphone off", unknown: "Microphone: not reported yet"
  };
  var PRESENCE_TONE = {
    ON_QUEUE: "good", AVAILABLE: "good", IDLE: "good",
    BUSY: "busy", MEETING: "busy", INTERACTING: "busy", COMMUNICATING: "busy",
    AWAY: "away", BREAK: "away", MEAL: "away", TRAINING: "away", NOT_RESPONDING: "bad",
    OFFLINE: "off", OFF_QUEUE: "off"
  };
  var SVG = "http://www.w3.org/2000/svg";
  var ICONS = {
    // A plug: two prongs, its body, the cable (the connection kept open between calls).
    persistent: ["M9 3v5", "M15 3v5", "M6 8h12v3a6 6 0 0 1-12 0z", "M12 17v4"],
    microphone: ["M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z",
      "M6 11a6 6 0 0 0 12 0", "M12 17v4", "M9 21h6"],
    microphoneOff: ["M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z",
      "M6 11a6 6 0 0 0 12 0", "M12 17v4", "M9 21h6", "M4 4l16 16"]
  };

  var model = {
    rosterIds: [],          // the last roster's order
    agents: new Map(),      // agent id → agent
    calls: new Map(),       // conversation id + agent id → live call
    ended: new Set(),       // conversation id + agent id of calls that ended, oldest first
    pops: new Map(),        // conversation id → the last pop message for it
    records: new Map(),     // adapter + conversation id → written record row
    recordsSeen: 0,
    sequence: 0             // orders agents not in the roster, and record rows
  };

  var $ = function (id) { return document.getElementById(id); };

  function text(value) {
    return typeof value === "string" ? value : (typeof value === "number" ? String(value) : "");
  }

  function next() { model.sequence += 1; return model.sequence; }

  // ------------------------------------------------------------------ the model

  function agent(id) {
    var known = model.agents.get(id);
    if (!known) {
      known = {
        id: id, name: null, inRoster: false, left: false, seen: next(), persistent: "unknown",
        microphone: "unknown", presence: null, routing: null
      };
      model.agents.set(id, known);
    }
    return known;
  }

  function setRoster(list) {
    var ids = [];
    var fresh = new Set();
    (Array.isArray(list) ? list : []).forEach(function (entry) {
      var id = entry && text(entry.id);
      if (!id || fresh.has(id)) { return; }
      fresh.add(id);
      ids.push(id);
      var known = agent(id);
      known.name = text(entry.name) || null;
      known.inRoster = true;
      known.left = false;
    });
    // The roster replaces the last one: an agent it leaves out goes, or goes when its live call
    // ends. Agents known only from events (never in a roster) keep their row, named by their id.
    model.agents.forEach(function (known, id) {
      if (fresh.has(id) || !known.inRoster) { return; }
      known.inRoster = false;
      known.left = true;
      if (!callsOf(id).length) { model.agents.delete(id); }
    });
    model.rosterIds = ids;
  }

  function callKey(conversationId, agentId) { return conversationId + "\u0000" + agentId; }

  function callsOf(agentId) {
    var found = [];
    model.calls.forEach(function (call) { if (call.agentId === agentId) { found.push(call); } });
    return found.sort(function (a, b) { return b.order - a.order; });
  }

  // Platforms give numbers as URIs (tel:+1555…, sip:…@host): people read the number.
  function phoneNumber(value) {
    return text(value).replace(/^(tel|sips?):/i, "") || null;
  }

  function timeOf(value) {
    var parsed = Date.parse(text(value));
    return isNaN(parsed) ? Date.now() : parsed;
  }

  function onCall(name, data) {
    var conversationId = text(data.conversation_id);
    var agentId = text(data.agent_id);
    if (!conversationId) { return; }
    var key = callKey(conversationId, agentId);
    if (name === "call.ended" || name === "call.wrapup") {
      model.calls.delete(key);
      model.ended.delete(key);
      model.ended.add(key);
      while (model.ended.size > MAX_ENDED) { model.ended.delete(model.ended.values().next().value); }
      var stillLive = false;
      model.calls.forEach(function (call) {
        if (call.conversationId === conversationId) { stillLive = true; }
      });
      if (!stillLive) { model.pops.delete(conversationId); }
      var owner = model.agents.get(agentId);
      if (owner && owner.left && !callsOf(agentId).length) {
        model.agents.delete(agentId);
      }
      return;
    }
    // Only a new offer brings back a call that ended for this agent (a transfer back to them).
    if (model.ended.has(key)) {
      if (name !== "call.alerting") { return; }
      model.ended.delete(key);
    }
    var call = model.calls.get(key);
    if (!call) {
      // A call first seen after it rang (the page came up mid-call) still gets its row.
      call = {
        key: key, conversationId: conversationId, agentId: agentId, state: "ringing",
        order: next(), direction: null, number: null, callerName: null, queueName: null,
        since: timeOf(data.connected_at || data.at)
      };
      model.calls.set(key, call);
    }
    if (agentId) { agent(agentId); }
    switch (name) {
      case "call.alerting":
        call.state = "ringing";
        call.since = timeOf(data.at);
        call.direction = text(data.direction) || null;
        call.number = phoneNumber(data.customer_number);
        call.callerName = text(data.caller_name) || null;
        call.queueName = text(data.queue_name) || null;
        break;
      case "call.connected":
        call.state = "connected";
        call.since = timeOf(data.connected_at || data.at);
        break;
      case "call.held": call.state = "held"; break;
      case "call.resumed": call.state = "connected"; break;
      case "call.transferred": call.state = "transferred"; break;
      default: break;
    }
  }

  function persistentFrom(state) {
    switch (state) {
      case "PERSISTED": case "ACTIVE_CALL": return "on";
      case "ESTABLISHING": return "establishing";
      case "FAILED": return "failed";
      default: return "off";
    }
  }

  function onEvent(name, data) {
    if (!data || typeof data !== "object") { return; }
    if (name.indexOf("call.") === 0) {
      if (CALL_EVENTS.has(name)) { onCall(name, data); }
      return;
    }
    var agentId = text(data.agent_id);
    if (!agentId || !AGENT_EVENTS.has(name)) { return; }
    var who = agent(agentId);
    switch (name) {
      case "phone.connection_state": who.persistent = persistentFrom(text(data.state)); break;
      case "phone.persistent_connection_up": who.persistent = "on"; break;
      case "phone.persistent_connection_down": who.persistent = "off"; break;
      case "phone.microphone_live": who.microphone = data.live === true ? "live" : "off"; break;
      case "presence.changed": who.presence = text(data.system_presence) || null; break;
      case "presence.routing_status": who.routing = text(data.status) || null; break;
      default: break;
    }
  }

  function onPop(message) {
    var conversationId = text(message.call);
    if (!conversationId) { return; }
    model.pops.delete(conversationId);
    model.pops.set(conversationId, {
      outcome: text(message.outcome),
      records: Array.isArray(message.records) ? message.records : [],
      number: phoneNumber(message.number)
    });
    while (model.pops.size > MAX_POPS) { model.pops.delete(model.pops.keys().next().value); }
  }

  function onLogged(message) {
    var adapter = text(message.adapter);
    var conversationId = text(message.call);
    if (!adapter || !conversationId) { return; }
    var key = adapter + "\u0000" + conversationId;
    var row = model.records.get(key);
    if (!row) {
      row = { key: key, adapter: adapter, conversationId: conversationId, order: next(),
        stage: null, record: null, number: null, callerName: null, agentId: null, at: null };
      model.records.set(key, row);
      model.recordsSeen += 1;
    }
    var stage = text(message.stage);
    // Writes may complete out of order (retries): a row never goes back to an earlier stage.
    if (!row.stage || (STAGE_RANK[stage] || 0) >= (STAGE_RANK[row.stage] || 0)) {
      row.stage = stage;
      row.at = timeOf(message.at);
    }
    var record = message.record;
    if (record && typeof record === "object" && text(record.id)) { row.record = record; }
    row.number = phoneNumber(message.number) || row.number;
    row.callerName = text(message.caller_name) || row.callerName;
    row.agentId = text(message.agent_id) || row.agentId;
    var rows = Array.from(model.records.values()).sort(function (a, b) { return b.order - a.order; });
    rows.slice(MAX_RECORDS).forEach(function (old) { model.records.delete(old.key); });
  }

  function onMessage(message) {
    if (!message || typeof message !== "object") { return; }
    if (message.type === "agents") { setRoster(message.agents); }
    else if (message.type === "logged") { onLogged(message); }
    else { return; }  // a message type this page does not know: ignored
    changed();
  }

  // ------------------------------------------------------------------ drawing helpers

  function make(tag, className, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content !== undefined) { node.textContent = content; }
    return node;
  }

  function icon(name) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    ICONS[name].forEach(function (d) {
      var path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    });
    return svg;
  }

  function words(constant) {
    var spaced = text(constant).toLowerCase().replace(/_/g, " ");
    return spaced.charAt(0).toUpperCase() + spaced.slice(1);
  }

  function duration(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return hours ? hours + ":" + pad(minutes) + ":" + pad(seconds) : minutes + ":" + pad(seconds);
  }

  function clock(ms) {
    var at = new Date(ms);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds());
  }

  function initials(name) {
    var parts = text(name).trim().split(/\s+/).filter(Boolean);
    var letters = parts.slice(0, 2).map(function (part) { return Array.from(part)[0]; });
    return (letters.join("") || "?").toUpperCase();
  }

  // Keeps one element per key in `list`, in the order of `items`: existing elements are updated
  // in place (a ringing pulse keeps its rhythm), new ones made, vanished ones removed.
  function reconcile(list, items, build, update) {
    var existing = new Map();
    Array.prototype.forEach.call(list.children, function (child) {
      existing.set(child.dataset.key, child);
    });
    items.forEach(function (item, index) {
      var node = existing.get(item.key);
      if (node) { existing.delete(item.key); } else { node = build(item); node.dataset.key = item.key; }
      update(node, item);
      if (list.children[index] !== node) { list.insertBefore(node, list.children[index] || null); }
    });
    existing.forEach(function (node) { node.remove(); });
  }

  function agentName(id) {
    var known = model.agents.get(id);
    return (known && known.name) || id || "Unassigned";
  }

  function callerOf(call) {
    var pop = model.pops.get(call.conversationId);
    var record = pop && pop.outcome === "one" && pop.records[0];
    return {
      name: (record && text(record.name)) || call.callerName || "",
      kind: record ? text(record.kind) : "",
      number: call.number || (pop && pop.number) || ""
    };
  }

  // ------------------------------------------------------------------ drawing

  function buildAgent() {
    var card = make("li", "agent");
    var head = make("div", "agent-head");
    head.append(make("span", "avatar"), make("div", "agent-names"));
    head.lastChild.append(make("span", "agent-name"), make("span", "agent-id"));
    var chips = make("div", "chips");
    var persistent = make("span", "chip persistent");
    persistent.append(icon("persistent"), make("span", "chip-label", "Persistent"));
    var microphone = make("span", "chip microphone");
    microphone.append(make("span", "mic-icon"), make("span", "chip-label"));
    var presence = make("span", "chip presence");
    presence.append(make("span", "dot"), make("span", "chip-label"));
    chips.append(persistent, microphone, presence);
    var call = make("div", "agent-call");
    call.append(make("span", "agent-call-state"), make("span", "agent-call-who"),
      make("span", "agent-call-time duration"));
    card.append(head, chips, call);
    return card;
  }

  function updateAgent(card, item) {
    var who = item.agent;
    card.dataset.agentId = who.id;
    card.querySelector(".avatar").textContent = initials(who.name || who.id);
    card.querySelector(".agent-name").textContent = who.name || who.id;
    card.querySelector(".agent-id").textContent = who.name ? who.id : "not in the roster";

    var persistent = card.querySelector(".persistent");
    persistent.dataset.state = who.persistent;
    persistent.title = PERSISTENT_TEXT[who.persistent];
    persistent.setAttribute("aria-label", PERSISTENT_TEXT[who.persistent]);
    card.dataset.persistent = who.persistent;

    var microphone = card.querySelector(".microphone");
    microphone.dataset.state = who.microphone;
    microphone.title = MICROPHONE_TEXT[who.microphone];
    microphone.setAttribute("aria-label", MICROPHONE_TEXT[who.microphone]);
    var micIcon = microphone.querySelector(".mic-icon");
    var wanted = who.microphone === "live" ? "microphone" : "microphoneOff";
    if (micIcon.dataset.icon !== wanted) {
      micIcon.replaceChildren(icon(wanted));
      micIcon.dataset.icon = wanted;
    }
    microphone.querySelector(".chip-label").textContent =
      who.microphone === "live" ? "Mic live" : (who.microphone === "off" ? "Mic off" : "Mic —");
    card.dataset.microphone = who.microphone;

    var presence = card.querySelector(".presence");
    var label = [who.presence, who.routing].filter(Boolean).map(words).join(" · ");
    presence.querySelector(".chip-label").textContent = label || "Presence unknown";
    var tone = (who.routing === "NOT_RESPONDING" && "bad") || PRESENCE_TONE[who.presence] ||
      PRESENCE_TONE[who.routing] || "unknown";
    presence.dataset.tone = tone;
    card.dataset.presence = who.presence || "";
    card.dataset.routing = who.routing || "";

    var line = card.querySelector(".agent-call");
    var time = line.querySelector(".agent-call-time");
    var current = callsOf(who.id)[0];
    card.dataset.call = current ? current.conversationId : "";
    line.dataset.state = current ? current.state : "none";
    if (current) {
      var caller = callerOf(current);
      line.querySelector(".agent-call-state").textContent = CALL_STATE_TEXT[current.state];
      line.querySelector(".agent-call-who").textContent = caller.name || caller.number || "Unknown caller";
      time.dataset.since = String(current.since);
      time.textContent = duration(Date.now() - current.since);
    } else {
      line.querySelector(".agent-call-state").textContent = "No call";
      line.querySelector(".agent-call-who").textContent = "";
      delete time.dataset.since;
      time.textContent = "";
    }
  }

  function drawAgents() {
    var items = [];
    model.rosterIds.forEach(function (id) {
      if (model.agents.has(id)) { items.push(model.agents.get(id)); }
    });
    Array.from(model.agents.values())
      .filter(function (who) { return !who.inRoster; })
      .sort(function (a, b) { return a.seen - b.seen; })
      .forEach(function (who) { items.push(who); });
    reconcile($("agents"), items.map(function (who) { return { key: who.id, agent: who }; }),
      buildAgent, updateAgent);
    $("stat-agents").textContent = String(items.length);
    $("stat-persistent").textContent = String(items.filter(function (who) {
      return who.persistent === "on";
    }).length);
  }

  function buildCall() {
    var row = make("li", "call");
    var state = make("span", "call-state");
    state.append(make("span", "dot"), make("span", "call-state-label"));
    var caller = make("div", "caller");
    var name = make("div", "caller-name");
    name.append(make("span", "caller-name-text"), make("span", "tag caller-kind"));
    caller.append(name, make("div", "caller-number"));
    var agentCell = make("div", "call-agent");
    agentCell.append(make("span", "call-agent-name"), make("span", "call-meta"));
    row.append(state, caller, agentCell, make("span", "call-duration duration"));
    return row;
  }

  function updateCall(row, item) {
    var call = item.call;
    var caller = callerOf(call);
    row.dataset.call = call.conversationId;
    row.dataset.agentId = call.agentId;
    row.dataset.state = call.state;
    row.querySelector(".call-state-label").textContent = CALL_STATE_TEXT[call.state];
    row.querySelector(".caller-name-text").textContent = caller.name || "Unknown caller";
    var kind = row.querySelector(".caller-kind");
    kind.textContent = caller.kind;
    kind.hidden = !caller.kind;
    row.querySelector(".caller-number").textContent = caller.number;
    row.querySelector(".call-agent-name").textContent = agentName(call.agentId);
    var meta = [];
    if (call.direction) { meta.push(call.direction === "outbound" ? "↗ Outbound" : "↙ Inbound"); }
    if (call.queueName) { meta.push(call.queueName); }
    row.querySelector(".call-meta").textContent = meta.join(" · ");
    var time = row.querySelector(".call-duration");
    time.dataset.since = String(call.since);
    time.textContent = duration(Date.now() - call.since);
  }

  function drawCalls() {
    var calls = Array.from(model.calls.values()).sort(function (a, b) { return b.order - a.order; });
    reconcile($("calls"), calls.map(function (call) { return { key: call.key, call: call }; }),
      buildCall, updateCall);
    $("stat-calls").textContent = String(calls.length);
  }

  function buildRecord() {
    var row = make("tr", "record-row");
    ["at", "adapter", "call", "caller", "record", "stage"].forEach(function (name) {
      row.appendChild(make("td", "cell-" + name));
    });
    row.querySelector(".cell-adapter").appendChild(make("span", "adapter"));
    var record = make("div", "record");
    record.append(make("span", "record-name"), make("span", "tag record-kind"),
      make("span", "record-id"));
    row.querySelector(".cell-record").appendChild(record);
    row.querySelector(".cell-stage").appendChild(make("span", "stage"));
    return row;
  }

  function updateRecord(row, item) {
    var entry = item.row;
    row.dataset.adapter = entry.adapter;
    row.dataset.call = entry.conversationId;
    row.dataset.stage = entry.stage || "";
    row.querySelector(".cell-at").textContent = entry.at === null ? "" : clock(entry.at);
    var adapter = row.querySelector(".adapter");
    adapter.textContent = entry.adapter;
    adapter.dataset.adapter = entry.adapter;
    var call = row.querySelector(".cell-call");
    call.textContent = entry.conversationId;
    call.title = entry.conversationId;
    var caller = [entry.callerName, entry.number].filter(Boolean).join(" · ");
    row.querySelector(".cell-caller").textContent = caller || "—";
    var record = entry.record;
    row.querySelector(".cell-record").dataset.linked = record ? "yes" : "no";
    row.querySelector(".record-name").textContent =
      record ? (text(record.name) || text(record.id)) : "No record linked";
    var kind = row.querySelector(".record-kind");
    kind.textContent = record ? text(record.kind) : "";
    kind.hidden = !(record && text(record.kind));
    row.querySelector(".record-id").textContent = record ? text(record.id) : "";
    var stage = row.querySelector(".stage");
    stage.textContent = words(entry.stage || "unknown");
    stage.dataset.stage = entry.stage || "";
  }

  function drawRecords() {
    var rows = Array.from(model.records.values()).sort(function (a, b) { return b.order - a.order; });
    reconcile($("records"), rows.map(function (entry) { return { key: entry.key, row: entry }; }),
      buildRecord, updateRecord);
    $("stat-records").textContent = String(model.recordsSeen);
  }

  function changed() {
    drawCalls();
    drawAgents();
    drawRecords();
    $("updated").textContent = "Last update " + clock(Date.now());
  }

  // Durations run on between messages.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (node) {
      node.textContent = duration(now - Number(node.dataset.since));
    });
  }

  // ------------------------------------------------------------------ the connection

  function setConnection(state, label) {
    $("connection").dataset.state = state;
    $("connection").textContent = label;
  }

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  function start() {
    var bridge = window.CrmphoneBridge.connect({
      client: "dashboard",
      onEvent: function (name, data) { onEvent(text(name), data); changed(); },
      onPop: function (message) { onPop(message); changed(); },
      onMessage: onMessage,
      onError: showError,
      onStatus: function (online) {
        if (online) {
          // The replay that follows the welcome redraws the calls as they are now: calls that
          // ended while the page was away must not linger.
          model.calls.clear();
          model.pops.clear();
          model.ended.clear();
          showError("");
          $("token-form").hidden = true;
          setConnection("online", "Live");
          changed();
        } else {
          setConnection("offline", "Reconnecting…");
        }
      },
      onTokenNeeded: function (reason) {
        setConnection("token", "Token needed");
        $("token-reason").textContent = reason || "";
        $("token-form").hidden = false;
        $("token").focus();
      }
    });

    $("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = $("token").value;
      $("token").value = "";
      if (!value.trim()) { return; }
      $("token-form").hidden = true;
      setConnection("connecting", "Connecting…");
      bridge.setToken(value);
    });
    window.setInterval(tick, 1000);
  }

  start();
})();
