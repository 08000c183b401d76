// A GUN.js peer driven by JSON lines on stdin; answers with JSON lines on stdout.
// node client.cjs (CommonJS: the repo root package.json says "type": "module") http://127.0.0.1:PORT/gun
const Gun = require('gun');
const gun = Gun({ peers: [process.argv[2]], localStorage: false, radisk: false, file: false,
                  axe: false, multicast: false });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const at = (path) => path.reduce((c, k) => c.get(k), gun);
const strip = (d) => { if (d && typeof d === 'object') { const c = { ...d }; delete c._; return c; } return d; };
const ops = {
  put(m) { at(m.path).put(m.data, (ack) => out({ id: m.id, err: ack.err || null, ok: !ack.err })); },
  once(m) { at(m.path).once((d) => out({ id: m.id, data: strip(d) === undefined ? null : strip(d) }), { wait: m.wait || 500 }); },
  on(m) { at(m.path).on((d) => out({ sub: m.id, data: strip(d) })); out({ id: m.id }); },
  map(m) { at(m.path).map().on((d, k) => out({ sub: m.id, key: k, data: strip(d) })); out({ id: m.id }); },
  // m.count puts of key `${m.prefix}${i}` = i into the node at m.path, all at once (no waiting for acks);
  // answers at once, then reports each put's first ack as an event
  burst(m) {
    const node = at(m.path);
    for (let i = 0; i < m.count; i++) {
      let first = true;
      node.get(m.prefix + i).put(i, (ack) => { if (first) { first = false; out({ sub: m.id, key: m.prefix + i, err: ack.err || null }); } });
    }
    out({ id: m.id });
  },
};
let buf = '';
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (!line.trim()) continue;
    const m = JSON.parse(line);
    try { ops[m.op](m); } catch (e) { out({ id: m.id, error: String(e) }); }
  }
});
process.stdin.on('end', () => process.exit(0));
out({ ready: true });
