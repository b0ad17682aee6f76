/**
 * Runs once before any suite: installs every Debian peer the suites talk to (scripts/install-peers.sh is idempotent
 * and a no-op when all are present). Suites still call it for their own peers, so a single file run alone works
 * too, but no suite may depend on another having run first.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PEERS = ['redis-server', 'redis-tools', 'thrift-compiler', 'python3-thrift', 'haproxy', 'nutcracker', 'zookeeper', 'openssl', 'chromium'];

export default function setup(): void {
  const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'install-peers.sh');
  execFileSync('bash', [script, ...PEERS], { stdio: 'inherit', timeout: 900_000 });
}
