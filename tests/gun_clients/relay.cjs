// The official GUN relay (npm `gun`), for comparison: node relay.js <dataDir>; prints {"port": N}.
const http = require('http');
const Gun = require('gun');
const server = http.createServer((req, res) => { res.writeHead(200); res.end('ok'); });
server.listen(0, '127.0.0.1', () => {
  Gun({ web: server, file: process.argv[2], axe: false, multicast: false, localStorage: false });
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
