/**
 * Test certificates made at test time with the `openssl` CLI: a CA, and leaf certificates with SPIFFE URI SANs (and
 * 127.0.0.1 / localhost), each usable as a server and a client certificate. `meshDir` lays a leaf out as Istio mounts
 * it (cert-chain.pem, key.pem, root-cert.pem) for `--mesh-certs`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Leaf {
  cert: string;
  key: string;
  /** The SPIFFE id (`spiffe://…`). */
  spiffe: string;
}

export class Pki {
  readonly ca: string;
  private readonly caKey: string;
  private serial = 1;

  private constructor(readonly dir: string, name: string) {
    this.ca = path.join(dir, `${name}-ca.pem`);
    this.caKey = path.join(dir, `${name}-ca.key`);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', this.caKey, '-out', this.ca, '-days', '2', '-subj', `/O=waypost-test/CN=${name} root`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }

  /** A CA in a new temporary directory (`name` tells CAs apart in messages). */
  static create(name = 'mesh', dir?: string): Pki {
    ensureOpenssl();
    return new Pki(dir ?? mkdtempSync(path.join(os.tmpdir(), 'waypost-pki-')), name);
  }

  /** A leaf for `spiffe://<trustDomain>/ns/<ns>/sa/<sa>` signed by this CA. */
  issue(name: string, ns: string, sa: string, trustDomain = 'cluster.local'): Leaf {
    const spiffe = `spiffe://${trustDomain}/ns/${ns}/sa/${sa}`;
    const key = path.join(this.dir, `${name}.key`);
    const csr = path.join(this.dir, `${name}.csr`);
    const cert = path.join(this.dir, `${name}.pem`);
    const ext = path.join(this.dir, `${name}.ext`);
    writeFileSync(
      ext,
      [
        `subjectAltName=URI:${spiffe},DNS:localhost,IP:127.0.0.1`,
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth,clientAuth',
      ].join('\n'),
    );
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/O=waypost-test/CN=${name}`]);
    openssl(['x509', '-req', '-in', csr, '-CA', this.ca, '-CAkey', this.caKey, '-set_serial', String(this.serial++), '-out', cert, '-days', '2', '-extfile', ext]);
    return { cert, key, spiffe };
  }

  /** A directory as Istio mounts workload certificates: cert-chain.pem, key.pem, root-cert.pem. */
  meshDir(leaf: Leaf, name = 'mesh-certs'): string {
    const dir = path.join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'cert-chain.pem'), readFileSync(leaf.cert));
    writeFileSync(path.join(dir, 'key.pem'), readFileSync(leaf.key));
    writeFileSync(path.join(dir, 'root-cert.pem'), readFileSync(this.ca));
    return dir;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

let checked = false;
function ensureOpenssl(): void {
  if (checked) return;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    execFileSync('bash', [path.join(__dirname_(), '..', '..', 'scripts', 'install-peers.sh'), 'openssl'], { stdio: 'inherit' });
  }
  checked = true;
}

function __dirname_(): string {
  return path.dirname(new URL(import.meta.url).pathname);
}
