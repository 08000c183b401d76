// GUN's own frame parser in Node (gun/lib/yson.js, which `require('gun')` installs as JSON.parseAsync), for
// checking what a GUN.js peer makes of our frames: reads one JSON string (a frame) a line on stdin and
// prints, a line each, whether JSON.parseAsync gave the same value as JSON.parse.
require('gun/lib/yson.js');
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let buf = '';
const queue = [];
let busy = false;
const next = () => {
  if (busy || !queue.length) return;
  busy = true;
  const text = queue.shift();
  JSON.parseAsync(text, (err, value) => {
    process.stdout.write(JSON.stringify({ same: !err && same(value, JSON.parse(text)) }) + '\n');
    busy = false;
    next();
  });
};
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (line.trim()) queue.push(JSON.parse(line));
  }
  next();
});
