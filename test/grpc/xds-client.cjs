'use strict';
// A gRPC client process routed by xDS: @grpc/grpc-js with the @grpc/grpc-js-xds plugin, configured the way a
// production proxyless client is — a bootstrap in GRPC_XDS_BOOTSTRAP_CONFIG (set by the parent) read when the plugin
// registers, and a channel to `xds:///host:port` (argv[2]). The parent drives it over stdin/stdout, one JSON object
// a line:
//   → {"id": 1, "count": 5, "metadata": {"x-user": "jason"}, "deadlineMs": 5000}
//   ← {"id": 1, "results": [{"ok": true, "version": "v2", "user": "jason"}, {"ok": false, "code": 14, "details": "…"}]}
// The calls of one request go one after another on the one channel; {"op": "close"} closes it and exits.
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
require('@grpc/grpc-js-xds').register();

const target = process.argv[2];
const serialize = (v) => Buffer.from(JSON.stringify(v));
const deserialize = (b) => JSON.parse(b.toString('utf8'));
const Greeter = grpc.makeGenericClientConstructor(
  {
    Who: {
      path: '/waypost.test.Greeter/Who',
      requestStream: false,
      responseStream: false,
      requestSerialize: serialize,
      requestDeserialize: deserialize,
      responseSerialize: serialize,
      responseDeserialize: deserialize,
    },
  },
  'Greeter',
);
const client = new Greeter(target, grpc.credentials.createInsecure());

function callOnce(req) {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(req.metadata ?? {})) metadata.set(k, v);
  return new Promise((resolve) => {
    client.Who({ from: 'xds-client' }, metadata, { deadline: Date.now() + (req.deadlineMs ?? 5000), waitForReady: true }, (err, res) => {
      if (err) resolve({ ok: false, code: err.code, details: err.details });
      else resolve({ ok: true, ...res });
    });
  });
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  const req = JSON.parse(line);
  queue = queue.then(async () => {
    if (req.op === 'close') {
      client.close();
      process.exit(0);
    }
    const results = [];
    for (let i = 0; i < (req.count ?? 1); i++) results.push(await callOnce(req));
    process.stdout.write(JSON.stringify({ id: req.id, results }) + '\n');
  });
});
lines.on('close', () => void queue.then(() => process.exit(0)));
