// Renders a snapshot (browser_app.snapshot()) into the dashboard's tables. Plain DOM:
// every table is rebuilt from the snapshot, rows carry data-* attributes for tests.

export const $ = (id) => document.getElementById(id);

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text ?? "—";
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, items, addRow) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  for (const item of items) addRow(body.insertRow(), item);
}

/** "1 pattern", "2 patterns", "0 memories": a count with its noun in the right number. */
export const count = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

const short = (s, n = 12) => (s && s.length > n ? `${s.slice(0, n)}…` : s);
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

export function renderIdentity(snap) {
  $("me-id").textContent = snap.agent_id;
  $("me-role").textContent = snap.role;
  $("me-caps").textContent = snap.capabilities.join(", ");
  $("me-fp").textContent = snap.fingerprint;
  $("me-swarm").textContent = snap.swarm_id;
  $("scout-feed").hidden = snap.role !== "scout";
}

export function renderPeers(snap) {
  fill("peers", snap.peers, (row, p) => {
    row.dataset.agentId = p.agent_id;
    row.dataset.status = p.status;
    cell(row, p.agent_id);
    cell(row, p.role);
    cell(row, p.transport);
    cell(row, p.status, `status-${p.status}`);
    cell(row, p.last_heartbeat_age_s == null ? null : `${p.last_heartbeat_age_s.toFixed(1)} s ago`);
  });
  $("peer-count").textContent = `(${snap.peers.length})`;
  $("peers-empty").hidden = snap.peers.length > 0;
}

export function renderPatterns(snap) {
  const st = snap.pattern_stats;
  $("pattern-stats").textContent =
    `${count(st.patterns, "pattern")} from ${count(st.agents, "agent")}, ${count(st.visits, "visit")}, mean confidence ${st.avg_confidence}`;
  $("curve-empty").hidden = snap.curve.length > 0;
  fill("patterns", snap.patterns, (row, p) => {
    row.dataset.state = p.state;
    cell(row, p.state);
    cell(row, p.action);
    cell(row, p.q.toFixed(3));
    cell(row, p.visits);
    cell(row, p.confidence.toFixed(2));
  });
}

/** What the bounds on any one member held back (issue 14): a line under the pattern stats, data-* for tests. */
export function renderDefences(snap) {
  const d = snap.defences;
  if (!d) return;
  let line = $("defences");
  if (!line) {
    line = document.createElement("p");
    line.id = "defences";
    line.className = "muted";
    $("pattern-stats").after(line);
  }
  Object.assign(line.dataset, {
    memoryOverShare: d.memory_over_share, blocksOverShare: d.blocks_over_share,
    trimmed: d.pattern_entries_trimmed, foreignRefused: d.foreign_origins_refused,
    executorsReported: d.executors_reported,
  });
  line.textContent =
    `Bounded: ${count(d.memory_over_share, "memory", "memories")} and ${count(d.blocks_over_share, "block")} past a member's share dropped, ` +
    `${count(d.pattern_entries_trimmed, "pattern entry", "pattern entries")} trimmed, ${d.pattern_entries_capped} capped, ` +
    `${count(d.foreign_origins_refused, "state")} for other origins refused, ${count(d.executors_reported, "executor")} reported`;
}

export function renderSearch(hits) {
  fill("search-results", hits, (row, h) => {
    row.dataset.owner = h.owner;
    cell(row, h.content);
    cell(row, h.score.toFixed(3));
    cell(row, h.owner);
    cell(row, h.source);
  });
}

export function renderTasks(snap) {
  fill("tasks", snap.tasks, (row, t) => {
    row.dataset.taskId = t.task_id;
    row.dataset.state = t.state;
    cell(row, short(t.task_id, 10), "mono");
    cell(row, t.requester);
    cell(row, t.state);
    cell(row, t.claimant);
    cell(row, t.executor);
    cell(row, t.status);
    cell(row, t.verified ? "yes" : "no", t.verified ? "yes" : "no");
    cell(row, t.round_trip_ms == null ? null : `${Math.round(t.round_trip_ms)} ms`);
  });
}

export function renderArtifacts(snap) {
  fill("artifacts", snap.artifacts, (row, a) => {
    row.dataset.cid = a.cid;
    cell(row, a.cid, "mono");
    cell(row, a.local ? "yes" : "no", a.local ? "yes" : "no");
  });
}

export function renderLog(snap) {
  $("log-total").textContent = `(${snap.log_total} received)`;
  fill("log", snap.log, (row, m) => {
    cell(row, clock(m.t));
    cell(row, m.kind);
    cell(row, m.sender);
  });
}

/** Open or admitted; for an admitted swarm's admin, the members with a Remove button each (`onRemove(id)`). */
export function renderAdmission(snap, onRemove) {
  const adm = snap.admission;
  $("me-mode").textContent = !adm
    ? "open swarm (anyone with the link is a member)"
    : `admitted swarm, ${adm.admin ? "admin" : "member"}, key epoch ${adm.epoch}`;
  $("refused").hidden = !snap.refusal;
  $("refused").textContent = snap.refusal ? `Removed from the swarm: ${snap.refusal}` : "";
  $("members-panel").hidden = !adm?.admin;
  if (!adm?.admin) return;
  $("member-count").textContent = `(${adm.members.length})`;
  $("members-epoch").textContent = `Swarm key epoch ${adm.epoch}; a removal starts a new one without the removed member.`;
  fill("members", adm.members, (row, m) => {
    row.dataset.agentId = m.agent_id;
    cell(row, m.agent_id);
    cell(row, m.roles.join(", "));
    cell(row, new Date(m.expires_at).toLocaleString());
    const td = row.insertCell();
    if (m.admin) {
      td.textContent = "admin";
      return;
    }
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "plain remove";
    btn.textContent = "Remove";
    btn.onclick = () => onRemove(m.agent_id, btn);
    td.append(btn);
  });
}

export function renderAll(snap, onRemove) {
  renderIdentity(snap);
  renderAdmission(snap, onRemove);
  renderPeers(snap);
  renderPatterns(snap);
  renderDefences(snap);
  $("memory-count").textContent = `(${snap.memories} held)`;
  renderTasks(snap);
  renderArtifacts(snap);
  renderLog(snap);
}
