#!/usr/bin/env node
// Re-copies the third-party .proto files Waypost's xDS code loads at run time into proto/ (see proto/README.md).
//
//   node proto/vendor.mjs            copy from node_modules/@grpc/grpc-js-xds/deps (a devDependency), rewrite SOURCES
//   node proto/vendor.mjs --check    exit 1 if the vendored files differ from that package's
//
// It copies the import closure of ENTRIES (files are searched in the package's four dependency trees, in order) and
// nothing else; the google/protobuf well-known types come with protobufjs and are not copied.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.join(HERE, '..', 'node_modules', '@grpc', 'grpc-js-xds');
const TREES = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((t) => path.join(PKG, 'deps', t));
const ENTRIES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/type/v3/token_bucket.proto',
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/config/ratelimit/v3/rls.proto',
  'envoy/config/accesslog/v3/accesslog.proto',
  'envoy/config/trace/v3/http_tracer.proto',
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
  'validate/validate.proto',
  'envoy/extensions/filters/network/redis_proxy/v3/redis_proxy.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
];

const check = process.argv.includes('--check');
const version = JSON.parse(readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
const found = new Map();
const queue = [...ENTRIES];
while (queue.length > 0) {
  const rel = queue.shift();
  if (found.has(rel) || rel.startsWith('google/protobuf/')) continue;
  const tree = TREES.find((t) => existsSync(path.join(t, rel)));
  if (!tree) throw new Error(`${rel}: not found in ${PKG}/deps`);
  const file = path.join(tree, rel);
  found.set(rel, file);
  for (const m of readFileSync(file, 'utf8').matchAll(/^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"/gm)) queue.push(m[1]);
}

let differ = 0;
const lines = [];
for (const rel of [...found.keys()].sort()) {
  const src = found.get(rel);
  const dst = path.join(HERE, rel);
  const data = readFileSync(src);
  const sha = createHash('sha256').update(data).digest('hex');
  lines.push(`${sha}  ${rel}  (${path.relative(PKG, src).split(path.sep).slice(0, 2).join('/')})`);
  if (check) {
    if (!existsSync(dst) || !readFileSync(dst).equals(data)) {
      differ++;
      console.error(`differs: ${rel}`);
    }
  } else {
    mkdirSync(path.dirname(dst), { recursive: true });
    copyFileSync(src, dst);
  }
}
if (check) {
  console.log(differ === 0 ? `ok: ${found.size} files match @grpc/grpc-js-xds ${version}` : `${differ} files differ`);
  process.exit(differ === 0 ? 0 : 1);
}
writeFileSync(
  path.join(HERE, 'SOURCES'),
  `# Copied by proto/vendor.mjs from the npm package @grpc/grpc-js-xds@${version}, deps/<tree>/.\n# sha256  path  (tree)\n${lines.join('\n')}\n`,
);
console.log(`copied ${found.size} files from @grpc/grpc-js-xds ${version}`);
