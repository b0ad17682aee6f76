/**
 * The Thrift server the bench measures against (a child process, so that it does not share an event loop with the
 * load generator): framed binary `Bench.hello(name) → "hello <name>"`.
 *
 *   node dist/bench/thrift/server.js [--impl raw|npm] [--port 0] [--gen DIR]
 *
 * `raw` (default) decodes each call on raw buffers (bench/thrift/wire.ts) and answers as npm's generated
 * processor would, without its per-call allocations: fast, so that the proxy rather than the server is what a
 * closed-loop run saturates. `npm` is the processor generated from bench.thrift on npm's createServer (needs
 * `--gen DIR`, a folder of generated code, or generates one). Prints `thrift server (<impl>) listening on HOST:PORT`.
 */
import net from 'node:net';
import { isMainModule } from '../../examples/dubbo/harness.js';
import { generate, startNpmServer, type Generated } from './npm.js';
import { MessageParser, MessageType, UNKNOWN_METHOD, encodeAppException, encodeMessage, readStringField } from './wire.js';

export function startRawServer(port: number): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let corked = false;
    const parser = new MessageParser((m) => {
      if (m.type !== MessageType.CALL && m.type !== MessageType.ONEWAY) return;
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          socket.uncork();
        });
      }
      if (m.name === 'hello') {
        const name = readStringField(m.body, 1) ?? '';
        if (m.type === MessageType.CALL) socket.write(encodeMessage(MessageType.REPLY, 'hello', m.seqid, 0, `hello ${name}`));
      } else if (m.type === MessageType.CALL) {
        socket.write(encodeAppException(m.name, m.seqid, `Unknown function ${m.name}`, UNKNOWN_METHOD));
      }
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const impl = get('--impl') ?? 'raw';
  const port = Number(get('--port') ?? 0);
  let server: net.Server;
  let gen: Generated | undefined;
  if (impl === 'raw') {
    server = await startRawServer(port);
  } else if (impl === 'npm') {
    const dir = get('--gen');
    gen = dir ? { dir, cleanup: () => undefined } : generate();
    server = await startNpmServer(gen, port);
  } else {
    console.error(`unknown --impl ${impl} (raw or npm)`);
    process.exit(2);
  }
  const addr = server.address() as net.AddressInfo;
  console.log(`thrift server (${impl}) listening on ${addr.address}:${addr.port}`);
  const stop = (): void => {
    server.close();
    gen?.cleanup();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (isMainModule(import.meta.url)) void main();
