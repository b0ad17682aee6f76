/**
 * `npm start`: the Waypost Dubbo demo, end to end.
 *
 * 1. starts two Dubbo providers of DemoService, v1 on 127.0.0.1:20881 and v2 on 127.0.0.1:20882 (in this process);
 * 2. spawns the proxy: `node dist/src/cli.js proxy --config examples/dubbo/config --admin 127.0.0.1:<free port>`
 *    and waits for the admin's `GET /ready` to answer 200;
 * 3. through the proxy at 127.0.0.1:20880, with the dubbo2.js consumer: 10 calls with attachment `user: jason`
 *    (route `v2-for-jason`: all must reach v2), then 200 calls without (route `split`, 20/80 between v1 and v2);
 * 4. checks the results and exits 0, or says what went wrong and exits 1. The proxy and providers are always stopped.
 *
 * `WAYPOST_DEMO_PORTS=auto npm start` (or `--auto-ports`) uses free ports and a generated copy of the config instead of
 * 20880-20882. `--verbose` shows the proxy's own output.
 */
import type { Provider } from './provider.js';
import { startProvider } from './provider.js';
import { createDemoClient, type DemoClient } from './consumer.js';
import {
  demoConfigDir,
  displayPath,
  demoSplitWeights,
  freePorts,
  isListening,
  isMainModule,
  renderDemoConfig,
  spawnProxy,
  waitReady,
  writeTempConfig,
  type DemoPorts,
  type ProxyProcess,
} from './harness.js';

export interface DemoOptions {
  /** 'fixed' (default): 20880/20881/20882 and examples/dubbo/config; 'auto': free ports, generated config. */
  ports?: 'fixed' | 'auto';
  jasonCalls?: number;
  splitCalls?: number;
  /** Show the proxy's output as it comes. */
  verbose?: boolean;
  /** Where the demo's report goes (default console.log). */
  print?: (line: string) => void;
  readyTimeoutMs?: number;
}

export interface DemoReport {
  ok: boolean;
  problems: string[];
  ports: DemoPorts;
  /** The version that answered each call ('v1' | 'v2' | 'error'). */
  jason: string[];
  split: { v1: number; v2: number; errors: number; weights: Record<string, number>; v1Range: [number, number] };
  sampleAnswer?: string;
}

const VERSION_RE = /response from provider (v\d+)@/;

const useColor = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (useColor ? `\x1b[${code}m${s}\x1b[0m` : s);
const green = paint(32);
const red = paint(31);
const bold = paint(1);
const dim = paint(2);
const OK = green('✓');
const BAD = red('✗');

export async function runDemo(opts: DemoOptions = {}): Promise<DemoReport> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const mode = opts.ports ?? 'fixed';
  const jasonCalls = opts.jasonCalls ?? 10;
  const splitCalls = opts.splitCalls ?? 200;
  const weights = demoSplitWeights();
  const problems: string[] = [];
  const providers: Provider[] = [];
  let proxy: ProxyProcess | undefined;
  let client: DemoClient | undefined;
  let temp: { dir: string; remove(): void } | undefined;
  const [listen, v1Port, v2Port] = mode === 'auto' ? await freePorts(3) : [20880, 20881, 20882];
  const ports: DemoPorts = { listen: listen!, v1: v1Port!, v2: v2Port! };
  const report: DemoReport = {
    ok: false,
    problems,
    ports,
    jason: [],
    split: { v1: 0, v2: 0, errors: 0, weights, v1Range: [0, 0] },
  };
  const portHint = mode === 'fixed' ? ' (or run on free ports: WAYPOST_DEMO_PORTS=auto npm start)' : '';

  try {
    // 1. providers
    print(bold('1. Starting two Dubbo providers of org.apache.dubbo.samples.basic.api.DemoService'));
    for (const version of ['v1', 'v2'] as const) {
      try {
        const p = await startProvider({ port: ports[version], version });
        providers.push(p);
        print(`   provider ${version} listening on ${p.address}`);
      } catch (e) {
        throw new Error(`could not start provider ${version} on 127.0.0.1:${ports[version]}: ${(e as Error).message}${portHint}`);
      }
    }

    // 2. proxy
    let configDir = demoConfigDir();
    if (mode === 'auto') {
      temp = writeTempConfig({ 'demo.yaml': renderDemoConfig(ports) }, 'waypost-demo-');
      configDir = temp.dir;
    } else if (await isListening('127.0.0.1', ports.listen)) {
      throw new Error(`something already listens on 127.0.0.1:${ports.listen}, the demo's proxy port${portHint}`);
    }
    print('');
    print(bold('2. Starting the Waypost proxy'));
    proxy = await spawnProxy({ configDir, echo: opts.verbose ?? false });
    print(`   ${dim(proxy.command)}`);
    print(`   config: ${displayPath(configDir)}`);
    const readyMs = await waitReady(proxy, opts.readyTimeoutMs ?? 15_000);
    print(`   ready after ${(readyMs / 1000).toFixed(1)}s ${OK}  (admin: http://${proxy.adminAddress}/ready)`);
    print(`   Dubbo consumers now connect to the proxy at 127.0.0.1:${ports.listen}`);

    client = createDemoClient({ address: `127.0.0.1:${ports.listen}`, timeoutSeconds: 5 });

    // 3. jason
    print('');
    print(bold(`3. Route "v2-for-jason": ${jasonCalls} calls with attachment user=jason — all should reach v2`));
    const firstErrors: string[] = [];
    for (let i = 0; i < jasonCalls; i++) {
      const { res, err } = await client.sayHello('jason', { user: 'jason' });
      const v = res && VERSION_RE.exec(res)?.[1];
      if (v) report.jason.push(v);
      else {
        report.jason.push('error');
        if (firstErrors.length < 3) firstErrors.push(err ? `${err.name}: ${err.message}` : `unexpected answer ${JSON.stringify(res)}`);
      }
      if (i === 0 && res) report.sampleAnswer = res;
    }
    const jasonV2 = report.jason.filter((v) => v === 'v2').length;
    print(`   ${grid(report.jason)}`);
    if (jasonV2 === jasonCalls) print(`   v2 answered ${jasonV2}/${jasonCalls} ${OK}`);
    else {
      print(`   v2 answered only ${jasonV2}/${jasonCalls} ${BAD}`);
      problems.push(`route v2-for-jason: ${jasonCalls - jasonV2} of ${jasonCalls} calls with user=jason did not reach v2`);
    }
    for (const e of firstErrors) print(`   ${red('error:')} ${e}`);

    // 4. split
    const w1 = weights.v1 ?? 0;
    const w2 = weights.v2 ?? 0;
    const p1 = w1 / (w1 + w2 || 1);
    const mean = splitCalls * p1;
    const sd = Math.sqrt(splitCalls * p1 * (1 - p1));
    const range: [number, number] = [Math.max(0, Math.ceil(mean - 4 * sd)), Math.min(splitCalls, Math.floor(mean + 4 * sd))];
    report.split.v1Range = range;
    print('');
    print(bold(`4. Route "split": ${splitCalls} calls without attachments — configured v1 ${w1}% / v2 ${w2}%`));
    const seen: string[] = [];
    const splitErrors: string[] = [];
    for (let i = 0; i < splitCalls; i++) {
      const { res, err } = await client.sayHello(`waypost-${i + 1}`);
      const v = res && VERSION_RE.exec(res)?.[1];
      seen.push(v || 'error');
      if (!v && splitErrors.length < 3) splitErrors.push(err ? `${err.name}: ${err.message}` : `unexpected answer ${JSON.stringify(res)}`);
    }
    for (const row of chunk(seen, 50)) print(`   ${grid(row)}`);
    const v1 = seen.filter((v) => v === 'v1').length;
    const v2 = seen.filter((v) => v === 'v2').length;
    const errors = seen.length - v1 - v2;
    report.split = { v1, v2, errors, weights, v1Range: range };
    const pct = (n: number): string => `${((100 * n) / splitCalls).toFixed(1)}%`;
    const inRange = v1 >= range[0] && v1 <= range[1];
    print(
      `   v1 ${v1} (${pct(v1)})  v2 ${v2} (${pct(v2)})${errors ? `  errors ${errors}` : ''}  configured ${w1}/${w2}  ` +
        (inRange && errors === 0 ? OK : BAD),
    );
    print(dim(`   (a fair ${w1}/${w2} split puts v1 between ${range[0]} and ${range[1]} of ${splitCalls} calls, ±4σ)`));
    for (const e of splitErrors) print(`   ${red('error:')} ${e}`);
    if (errors > 0) problems.push(`route split: ${errors} of ${splitCalls} calls failed`);
    if (!inRange) problems.push(`route split: v1 answered ${v1} of ${splitCalls} calls, outside the expected ${range[0]}..${range[1]} for ${w1}/${w2}`);
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    await client?.close().catch(() => {});
    if (proxy) {
      const exitedEarly = proxy.child.exitCode !== null;
      await proxy.stop();
      if (exitedEarly && problems.length > 0) {
        problems.push(`the proxy had exited during the demo; its last output:\n${proxy.output().split('\n').slice(-20).join('\n')}`);
      }
    }
    await Promise.all(providers.map((p) => p.close()));
    temp?.remove();
  }

  report.ok = problems.length === 0;
  print('');
  if (report.ok) {
    if (report.sampleAnswer) print(`   sample answer: "${report.sampleAnswer}"`);
    print(green(bold('Demo passed: requests were routed by attachment and split by weight.')));
  } else {
    print(red(bold('Demo failed:')));
    for (const p of problems) print(`  - ${p.replace(/\n/g, '\n    ')}`);
  }
  return report;
}

function grid(versions: string[]): string {
  return versions.map((v) => (v === 'v1' ? '1' : v === 'v2' ? '2' : red('x'))).join('');
}

function chunk<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: npm start [-- --auto-ports] [--verbose]\n  env WAYPOST_DEMO_PORTS=auto: use free ports instead of 20880-20882');
    return;
  }
  const auto = args.includes('--auto-ports') || process.env.WAYPOST_DEMO_PORTS === 'auto';
  console.log(bold('Waypost Dubbo demo') + dim(' — attachment routing and weighted split through the proxy'));
  console.log(dim('each digit below is one call, showing the provider version that answered it (x = failed)'));
  console.log('');
  // A hard stop, in case something hangs: never leave a first-time user with a stuck terminal.
  const watchdog = setTimeout(() => {
    console.error(red('Demo failed: it did not finish within 120s.'));
    process.exit(1);
  }, 120_000);
  watchdog.unref();
  let stopping = false;
  process.on('SIGINT', () => {
    if (stopping) process.exit(130);
    stopping = true;
    console.error('\ninterrupted; stopping…');
    process.exit(130); // the harness's exit hook kills the proxy
  });
  const report = await runDemo({ ports: auto ? 'auto' : 'fixed', verbose: args.includes('--verbose') });
  clearTimeout(watchdog);
  process.exit(report.ok ? 0 : 1);
}

if (isMainModule(import.meta.url)) void main();
