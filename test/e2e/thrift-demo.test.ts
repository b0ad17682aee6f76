/**
 * The Thrift demo (examples/thrift), run as `node dist/examples/thrift/demo.js --auto-ports` does: python3-thrift
 * servers v1 and v2, the proxy on examples/thrift/config (ports rewritten), the python THeader client.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { runThriftDemo } from '../../examples/thrift/demo.js';
import { ensureThriftPeers } from '../fixtures/thrift/peers.js';

beforeAll(() => ensureThriftPeers());

describe('examples/thrift demo', () => {
  it('routes x-user: jason to v2 and splits the rest 20/80, and says so', async () => {
    const lines: string[] = [];
    const report = await runThriftDemo({ ports: 'auto', print: (l) => lines.push(l) });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.jason).toEqual(Array(10).fill('v2'));
    expect(report.split.errors).toBe(0);
    expect(report.split.v1 + report.split.v2).toBe(200);
    expect(report.split.v1).toBeGreaterThanOrEqual(report.split.v1Range[0]);
    expect(report.split.v1).toBeLessThanOrEqual(report.split.v1Range[1]);
    expect(lines.join('\n')).toContain('Demo passed');
  });
});
