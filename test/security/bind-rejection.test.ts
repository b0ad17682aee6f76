/**
 * A config whose listeners cannot all bind is rejected whole: the listeners it did bind are closed again, the last
 * good config keeps serving, and writing the good config back changes nothing. Before, the rejected config's other
 * listeners stayed bound for good (50 listeners, one port taken: 49 left listening, their descriptors never freed).
 * A real proxy process (`waypost proxy --config`) and a real Dubbo provider.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, HOST, OpsFixture, servicesYaml, sleep, tcpConnect, until } from '../limits/helpers.js';

const fx = new OpsFixture();
let good: number;
let blocker: net.Server;
let taken: number;

function config(listenPorts: number[]): string {
  return servicesYaml(listenPorts.map((listenPort, i) => ({ host: i === 0 ? HOST : `svc${i}.bind.waypost.test`, listenPort, endpoints: [{ port: fx.providers[0]!.port, version: 'v1' }] })));
}

beforeAll(async () => {
  [good] = await freePorts(1);
  blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  taken = (blocker.address() as net.AddressInfo).port;
  await fx.start({ config: () => config([good!]) });
}, 60_000);

afterAll(async () => {
  await fx.stop();
  blocker?.close();
});

describe('a config whose listeners cannot all bind', () => {
  it('is rejected whole: nothing of it stays bound, the last good config serves, and the good config written back changes nothing', async () => {
    const conn = await fx.connect(`127.0.0.1:${good}`);
    expect((await fx.call(conn, 'sayHello', ['a'])).status).toBe(20);
    const rejectedBefore = await fx.metric(/^waypost_config_applies_total\{result="rejected"\}/);
    const others = await freePorts(20);
    // Twenty new services, one of them on a port something else holds.
    fx.writeConfig(config([good!, ...others, taken]));
    await until(() => /cannot bind/.test(fx.proxy.output()), 15_000, () => fx.proxy.output());
    await until(async () => (await fx.metric(/^waypost_config_applies_total\{result="rejected"\}/)) > rejectedBefore, 15_000);
    for (const port of others) expect(await tcpConnect(port)).toBe('ECONNREFUSED');
    expect((await fx.call(conn, 'sayHello', ['b'])).status).toBe(20);
    expect((await (await fetch(`http://${fx.adminAddress}/ready`)).status)).toBe(200);

    // The good config again: still served, still nothing else bound.
    fx.writeConfig(config([good!]));
    await sleep(1500);
    for (const port of others) expect(await tcpConnect(port)).toBe('ECONNREFUSED');
    expect((await fx.call(conn, 'sayHello', ['c'])).status).toBe(20);

    // Once the port is free, the same services apply and serve.
    await fx.apply(config([good!, ...others]));
    for (const port of others) expect(await tcpConnect(port)).toBe('ok');
    const fresh = await fx.connect(`127.0.0.1:${others[3]}`);
    expect((await fx.call(fresh, 'sayHello', ['d'])).status).toBe(20);
  }, 60_000);
});
