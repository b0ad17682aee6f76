/**
 * ZooKeeper for the Zookeeper source's tests: Debian's `zookeeper` package (installed by scripts/install-peers.sh),
 * run in the foreground as a child process on a free port, and Dubbo-style provider registrations (an EPHEMERAL znode
 * `/dubbo/<interface>/providers/<URL-encoded provider URL>` held by its own ZooKeeper session, as a Dubbo provider
 * does: closing the session removes it).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, projectRoot } from '../../examples/dubbo/harness.js';
import { DEMO_INTERFACE } from '../../examples/dubbo/provider.js';
import { createZkClient, zookeeperModule, type ZkClient } from '../../control/sources/zk-client.js';

export interface ZookeeperServer {
  port: number;
  address: string;
  output(): string;
  /** Stops the server (SIGTERM) and starts it again on the same port and data (sessions survive, as in a real restart). */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const JAVA_DIR = '/usr/share/java';

/** Installs (if needed) and starts a standalone ZooKeeper; resolves once it answers. */
export async function startZookeeper(): Promise<ZookeeperServer> {
  execFileSync('bash', [path.join(projectRoot(), 'scripts', 'install-peers.sh'), 'zookeeper'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const jar = path.join(JAVA_DIR, 'zookeeper.jar'); // its manifest's Class-Path names the other jars
  if (!existsSync(jar)) throw new Error(`${jar} is missing after installing the zookeeper package`);
  const logger = ['slf4j-simple.jar', 'slf4j-nop.jar'].map((j) => path.join(JAVA_DIR, j)).find((j) => existsSync(j));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-zk-'));
  mkdirSync(path.join(dir, 'data'));
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'zoo.cfg'),
    [`tickTime=2000`, `dataDir=${path.join(dir, 'data')}`, `clientPort=${port}`, `clientPortAddress=127.0.0.1`, `admin.enableServer=false`, `maxSessionTimeout=60000`, ''].join('\n'),
  );
  const classpath = [dir, jar, ...(logger ? [logger] : [])].join(':');
  const address = `127.0.0.1:${port}`;
  const lines: string[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const kill = (): void => void child?.kill('SIGKILL');
  process.once('exit', kill);

  const launch = async (): Promise<void> => {
    const c = spawn(
      'java',
      ['-Xmx128m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-cp', classpath, '-Dzookeeper.admin.enableServer=false', 'org.apache.zookeeper.server.ZooKeeperServerMain', path.join(dir, 'zoo.cfg')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = c;
    const collect = (b: Buffer): void => {
      lines.push(b.toString('utf8'));
      if (lines.length > 200) lines.splice(0, lines.length - 200);
    };
    c.stdout!.on('data', collect);
    c.stderr!.on('data', collect);
    exited = new Promise<void>((r) => c.once('exit', () => r()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`zookeeper exited (${c.exitCode}):\n${lines.join('')}`);
      try {
        const client = await connect(address, 2000);
        client.close();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`zookeeper did not answer on ${address}: ${(err as Error).message}\n${lines.join('')}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  const halt = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 4000);
    await exited;
    clearTimeout(t);
  };

  const server: ZookeeperServer = {
    port,
    address,
    output: () => lines.join(''),
    async restart(downMs = 0) {
      await halt();
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    async stop() {
      process.off('exit', kill);
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await launch();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** A connected client (its own session). */
export function connect(address: string, timeoutMs = 5000, sessionTimeout = 6000): Promise<ZkClient> {
  const client = createZkClient(address, { sessionTimeout, spinDelay: 200, retries: 0 });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      client.close();
      reject(new Error(`no ZooKeeper session within ${timeoutMs} ms`));
    }, timeoutMs);
    client.once('connected', () => {
      clearTimeout(t);
      resolve(client);
    });
    client.connect();
  });
}

/** A providers/ znode name as Dubbo 2.7 writes it: the provider URL, URL-encoded (URLEncoder). */
export function providerNode(ip: string, port: number, params: Record<string, string>, iface = DEMO_INTERFACE): string {
  const query = Object.entries({
    anyhost: 'true',
    application: 'demo-provider',
    dubbo: '2.0.2',
    generic: 'false',
    interface: iface,
    methods: 'sayHello,whoami,echoAttachments,slow,fail',
    pid: String(process.pid),
    release: '2.7.8',
    side: 'provider',
    timestamp: String(Date.now()),
    ...params,
  })
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
  return encodeURIComponent(`dubbo://${ip}:${port}/${iface}?${query}`);
}

export interface Registration {
  node: string;
  /** Closes the provider's session: ZooKeeper removes its ephemeral node. */
  close(): Promise<void>;
}

/** Registers a provider as Dubbo does: persistent parents, an EPHEMERAL provider node on a session of its own. */
export async function registerProvider(
  zkAddress: string,
  ip: string,
  port: number,
  params: Record<string, string>,
  iface = DEMO_INTERFACE,
): Promise<Registration> {
  const zk = zookeeperModule();
  const client = await connect(zkAddress);
  const dir = `/dubbo/${iface}/providers`;
  const node = providerNode(ip, port, params, iface);
  await new Promise<void>((resolve, reject) => client.mkdirp(dir, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((resolve, reject) =>
    client.create(`${dir}/${node}`, null, zk.CreateMode.EPHEMERAL, (err) => (err ? reject(err) : resolve())),
  );
  return {
    node,
    close: () =>
      new Promise<void>((resolve) => {
        client.once('disconnected', () => resolve());
        client.close();
        setTimeout(resolve, 2000);
      }),
  };
}
