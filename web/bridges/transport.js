// Transport bridge for the Pyodide worker, exposed as globalThis.edgeTransport:
// WebSocket, BroadcastChannel and WebRTC data channels for
// py/ruvector_edge/transport/browser.py.
//
// FFI rules this file follows (see BROWSER-NOTES.md):
// - one crossing per message each way: Python calls `send(text)` once, and JS
//   calls the link's single Python callback once per received message with
//   (kind, a, b) — no per-message getattr or conversions beyond the string;
// - the Python callback is a create_proxy that Python destroys after `close()`,
//   and `close()` detaches it here first, so nothing calls a destroyed proxy;
// - an exception thrown by a Python callback would otherwise vanish: `emit`
//   catches it, logs it and counts it in `edgeTransport.stats`.
//
// RTCPeerConnection does not exist in workers (Chromium 156), RTCDataChannel
// does and is transferable: the page (bridges/rtc-host.js) owns the peer
// connections and hands each data channel to this worker, so data-channel
// messages go worker to worker without a hop through the page. Signalling
// (SDP, ICE candidates) goes page ⇄ worker over a MessageChannel port, and
// worker ⇄ peer as signed, encrypted SIGNAL messages sent by Python.

const stats = {
  callbackErrors: 0,
  lastCallbackError: null,
  /** BroadcastChannel direct frames for other tabs, dropped before reaching Python. */
  bcFilteredDirect: 0,
  /** Received messages that were not text (every link speaks JSON text). */
  nonText: 0,
  /** Data-channel sends refused (not open, too large, buffer full). */
  rtcSendRefused: 0,
};

function describe(err) {
  return err && err.message ? err.message : String(err);
}

/** Call a Python callback; never let its exception escape into (and vanish in) an event handler. */
function makeEmitter(label, callback) {
  let cb = callback;
  const emit = (kind, a, b) => {
    if (cb === null) return;
    try {
      cb(kind, a, b);
    } catch (err) {
      stats.callbackErrors += 1;
      stats.lastCallbackError = `${label}/${kind}: ${describe(err)}`;
      console.error(`edgeTransport ${label} callback failed on ${kind}:`, err);
    }
  };
  emit.detach = () => {
    cb = null;
  };
  return emit;
}

/** The topic and sender of an envelope frame, or null for anything else (Python validates for real). */
function headerOf(text) {
  try {
    const obj = JSON.parse(text);
    const h = obj && obj.header;
    if (h && typeof h.topic === "string" && typeof h.sender_id === "string") return h;
  } catch {}
  return null;
}

// WebSocket ---------------------------------------------------------------------------
/**
 * One WebSocket connection. Events: ("open"), ("message", text), ("close", code, reason).
 * Returns {send(text) → bool, close(code, reason), bufferedAmount()}.
 */
function webSocket(url, callback) {
  const emit = makeEmitter("websocket", callback);
  const ws = new WebSocket(url);
  ws.onopen = () => emit("open");
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") emit("message", ev.data);
    else stats.nonText += 1;
  };
  // Browsers always follow "error" with "close"; the close code is what Python needs.
  ws.onclose = (ev) => {
    emit("close", ev.code, ev.reason);
    emit.detach();
  };
  return {
    /** False unless the socket is OPEN: a CLOSING socket would silently discard the data. */
    send(text) {
      if (ws.readyState !== WebSocket.OPEN) return false;
      ws.send(text);
      return true;
    },
    close(code = 1000, reason = "") {
      emit.detach();
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(code, reason);
    },
    bufferedAmount: () => ws.bufferedAmount,
  };
}

// BroadcastChannel ----------------------------------------------------------------------
/**
 * A BroadcastChannel between the tabs (workers) of one origin. Messages are
 * {k: kind, s: sender, d: text}. Direct envelope frames for another agent are
 * dropped here, so a tab pays no FFI crossing or decoding for its neighbours'
 * traffic. Events: (kind, sender, text) with kind "frame", "registration", "bye".
 */
function broadcastChannel(name, selfId, callback) {
  const emit = makeEmitter("broadcast-channel", callback);
  const bc = new BroadcastChannel(name);
  const mine = "@" + selfId;
  bc.onmessage = (ev) => {
    const m = ev.data;
    if (!m || typeof m.k !== "string" || typeof m.d !== "string") {
      stats.nonText += 1;
      return;
    }
    if (m.k === "frame") {
      const h = headerOf(m.d);
      if (h === null) {
        emit("frame", "", m.d); // let Python count it as malformed
        return;
      }
      if (h.topic.startsWith("@") && h.topic !== mine) {
        stats.bcFilteredDirect += 1;
        return;
      }
      emit("frame", h.sender_id, m.d);
    } else {
      emit(m.k, typeof m.s === "string" ? m.s : "", m.d);
    }
  };
  return {
    post(kind, text) {
      bc.postMessage({ k: kind, s: selfId, d: text });
    },
    close() {
      emit.detach();
      bc.close();
    },
  };
}

// WebRTC --------------------------------------------------------------------------------
let hostPort = null;
const rtcLinks = new Set();

/** Called by worker.js when the page's rtc-host hands over its MessagePort. */
function attachRtcHost(port) {
  hostPort = port;
  port.onmessage = (ev) => {
    for (const link of rtcLinks) link.fromHost(ev.data);
  };
}

/**
 * WebRTC data channels to peers, one per peer, for the agent `selfId`.
 * Events: ("signal", peer, json) — a local SDP/ICE message to deliver to `peer`;
 * ("open", peer, sid); ("message", peer, text); ("close", peer, sid).
 * Returns {available, connect(peer, sid, initiator), signal(peer, json), send(text) → n,
 * closePeer(peer), close()}. `send` routes a direct frame ("@peer" topic) to that peer
 * only and returns 1, or -1 if its channel is not open; a broadcast frame goes to every
 * open channel and returns how many took it.
 */
function webRtc(selfId, config, callback) {
  const emit = makeEmitter("webrtc", callback);
  const channels = new Map(); // peer → {sid, dc}
  const iceServers = config && Array.isArray(config.iceServers) ? config.iceServers : [];
  const toHost = (msg) => {
    if (hostPort !== null) hostPort.postMessage({ self: selfId, ...msg });
  };

  const link = {
    fromHost(msg) {
      if (!msg || msg.self !== selfId) return;
      const { op, peer, sid } = msg;
      if (op === "signal") {
        emit("signal", peer, msg.data);
      } else if (op === "channel") {
        const dc = msg.dc;
        const old = channels.get(peer);
        if (old && old.sid !== sid) old.dc.close();
        channels.set(peer, { sid, dc });
        dc.onopen = () => emit("open", peer, sid);
        dc.onmessage = (ev) => {
          if (typeof ev.data === "string") emit("message", peer, ev.data);
          else stats.nonText += 1;
        };
        dc.onclose = () => {
          if (channels.get(peer)?.dc === dc) channels.delete(peer);
          emit("close", peer, sid);
        };
        if (dc.readyState === "open") emit("open", peer, sid);
      } else if (op === "failed") {
        const cur = channels.get(peer);
        if (cur && cur.sid === sid) {
          channels.delete(peer);
          cur.dc.close();
        }
        emit("close", peer, sid);
      }
    },
  };
  rtcLinks.add(link);

  function sendOn(entry, text) {
    const dc = entry && entry.dc;
    if (!dc || dc.readyState !== "open") return false;
    try {
      dc.send(text); // throws if the message exceeds the SCTP limit or the buffer is full
      return true;
    } catch (err) {
      stats.rtcSendRefused += 1;
      return false;
    }
  }

  return {
    available: hostPort !== null,
    /** Start a peer connection with `peer` under session id `sid`; the initiator makes the offer. */
    connect(peer, sid, initiator) {
      toHost({ op: "create", peer, sid, initiator, iceServers });
    },
    /** A signal (JSON text) that `peer` sent us through the swarm. */
    signal(peer, json) {
      toHost({ op: "signal", peer, data: json });
    },
    send(text) {
      const h = headerOf(text);
      if (h !== null && h.topic.startsWith("@")) {
        if (sendOn(channels.get(h.topic.slice(1)), text)) return 1;
        stats.rtcSendRefused += 1;
        return -1;
      }
      let n = 0;
      for (const entry of channels.values()) if (sendOn(entry, text)) n += 1;
      return n;
    },
    closePeer(peer) {
      const cur = channels.get(peer);
      channels.delete(peer);
      if (cur) cur.dc.close();
      toHost({ op: "close", peer });
    },
    close() {
      emit.detach();
      rtcLinks.delete(link);
      for (const { dc } of channels.values()) dc.close();
      channels.clear();
      toHost({ op: "closeAll" });
    },
  };
}

export const edgeTransport = {
  stats,
  webSocket,
  broadcastChannel,
  webRtc,
  attachRtcHost,
  /** Whether a page-side WebRTC host is attached (RTCPeerConnection lives on the page). */
  rtcAvailable: () => hostPort !== null,
};

globalThis.edgeTransport = edgeTransport;
