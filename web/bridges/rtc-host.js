// Page-side WebRTC host for the Pyodide worker (RTCPeerConnection exists only
// on the page in Chromium; RTCDataChannel is transferable to a worker).
//
// hostWebRtc(worker) waits for the worker's "boot" message, then hands it one
// end of a MessageChannel. Over that port the worker's bridges/transport.js asks
// for peer connections ({op: "create" | "signal" | "close" | "closeAll"}) and
// gets back local signals, the transferred data channel and failures. Each peer
// connection carries one negotiated data channel (id 0), created together with
// the connection and transferred at once, so neither side waits for
// `ondatachannel` and the channel never passes through the page's event loop.

const MAX_PENDING_CANDIDATES = 64;

export function hostWebRtc(worker) {
  const { port1, port2 } = new MessageChannel();
  const conns = new Map(); // `${self}\n${peer}` → {sid, pc, pending: [], remoteSet}

  const post = (msg, transfer) => port1.postMessage(msg, transfer || []);
  const signal = (self, peer, data) => post({ op: "signal", self, peer, data: JSON.stringify(data) });
  const fail = (self, peer, sid, why) => {
    const key = `${self}\n${peer}`;
    const c = conns.get(key);
    if (c && c.sid === sid) {
      conns.delete(key);
      c.pc.close();
    }
    console.warn(`webrtc ${self} → ${peer}: ${why}`);
    post({ op: "failed", self, peer, sid });
  };

  function create(self, peer, sid, initiator, iceServers) {
    const key = `${self}\n${peer}`;
    const old = conns.get(key);
    if (old) old.pc.close();
    const pc = new RTCPeerConnection({ iceServers });
    const c = { sid, pc, pending: [], remoteSet: false };
    conns.set(key, c);
    const dc = pc.createDataChannel("edge", { negotiated: true, id: 0, ordered: true });
    post({ op: "channel", self, peer, sid, dc }, [dc]);
    pc.onicecandidate = (ev) => {
      if (ev.candidate && conns.get(key) === c) signal(self, peer, { sid, type: "candidate", candidate: ev.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") fail(self, peer, sid, "connection failed");
    };
    if (initiator) {
      pc.createOffer()
        .then((offer) => pc.setLocalDescription(offer))
        .then(() => signal(self, peer, { sid, type: "offer", sdp: pc.localDescription.sdp }))
        .catch((err) => fail(self, peer, sid, `offer: ${err}`));
    }
  }

  async function onSignal(self, peer, text) {
    let s;
    try {
      s = JSON.parse(text);
    } catch {
      return;
    }
    const key = `${self}\n${peer}`;
    const c = conns.get(key);
    if (!c || c.sid !== s.sid) return; // stale session: the worker already moved on
    const flush = async () => {
      c.remoteSet = true;
      for (const cand of c.pending.splice(0)) await c.pc.addIceCandidate(cand);
    };
    try {
      if (s.type === "offer") {
        await c.pc.setRemoteDescription({ type: "offer", sdp: s.sdp });
        await flush();
        await c.pc.setLocalDescription(await c.pc.createAnswer());
        signal(self, peer, { sid: c.sid, type: "answer", sdp: c.pc.localDescription.sdp });
      } else if (s.type === "answer") {
        await c.pc.setRemoteDescription({ type: "answer", sdp: s.sdp });
        await flush();
      } else if (s.type === "candidate") {
        if (c.remoteSet) await c.pc.addIceCandidate(s.candidate);
        else if (c.pending.length < MAX_PENDING_CANDIDATES) c.pending.push(s.candidate);
      }
    } catch (err) {
      fail(self, peer, c.sid, `${s.type}: ${err}`);
    }
  }

  port1.onmessage = ({ data: m }) => {
    if (!m || typeof m.self !== "string") return;
    if (m.op === "create") create(m.self, m.peer, m.sid, m.initiator, m.iceServers || []);
    else if (m.op === "signal") onSignal(m.self, m.peer, m.data);
    else if (m.op === "close" || m.op === "closeAll") {
      for (const [key, c] of conns) {
        if (key === `${m.self}\n${m.peer}` || (m.op === "closeAll" && key.startsWith(`${m.self}\n`))) {
          conns.delete(key);
          c.pc.close();
        }
      }
    }
  };

  const handover = ({ data }) => {
    if (!data || data.type !== "boot") return;
    worker.removeEventListener("message", handover);
    worker.postMessage({ rtcHostPort: true }, [port2]);
  };
  worker.addEventListener("message", handover);
}
