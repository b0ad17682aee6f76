import { describe, expect, it } from 'vitest';
import { classifyPort, durationProblem, formatDuration, metaProtocolOf, parseDuration, toDurationJson } from '../../control/index.js';

describe('durations', () => {
  it.each([
    ['1s', 1_000_000_000n],
    ['100ms', 100_000_000n],
    ['1.5s', 1_500_000_000n],
    ['.5s', 500_000_000n],
    ['2m', 120_000_000_000n],
    ['1h', 3_600_000_000_000n],
    ['1h30m', 5_400_000_000_000n],
    ['1m0.25s', 60_250_000_000n],
    ['250us', 250_000n],
    ['250µs', 250_000n],
    ['7ns', 7n],
    ['0', 0n],
  ])('parses %s', (text, ns) => {
    expect(parseDuration(text)).toBe(ns);
  });

  it.each(['', 's', '1', '1x', '-1s', '1 s', 'ms1', '1s ', '1.5.5s'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it.each([
    [10_000_000_000n, '10s'],
    [1_500_000_000n, '1.5s'],
    [500_000_000n, '0.5s'],
    [1_000n, '0.000001s'],
    [0n, '0s'],
  ])('formats %s ns as %s', (ns, json) => {
    expect(formatDuration(ns)).toBe(json);
  });

  it('converts Istio YAML durations to proto3 JSON', () => {
    expect(toDurationJson('2m')).toBe('120s');
    expect(toDurationJson('1h30m')).toBe('5400s');
    expect(() => toDurationJson('soon')).toThrow('"soon" is not a duration');
  });

  it('explains what is wrong with a duration', () => {
    expect(durationProblem('1s')).toBeUndefined();
    expect(durationProblem('0s')).toBe('"0s" is too short: it must be at least 0.001s');
    expect(durationProblem(5)).toBe('must be a duration string like "1s" or "500ms" (got number 5)');
    expect(durationProblem('5')).toBe('"5" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"');
  });
});

describe('port names', () => {
  it.each([
    ['tcp-metaprotocol-dubbo', { kind: 'metaprotocol', protocol: 'dubbo' }],
    ['tcp-metaprotocol-thrift-x', { kind: 'metaprotocol', protocol: 'thrift' }],
    ['tcp-metaprotocol-brpc-echo-v2', { kind: 'metaprotocol', protocol: 'brpc' }],
    ['tcp-metaprotocol', { kind: 'metaprotocol-without-protocol' }],
    ['tcp-metaprotocol-', { kind: 'metaprotocol-without-protocol' }],
    ['tcp-redis', { kind: 'redis' }],
    ['tcp-redis-cache', { kind: 'redis' }],
    ['tcp-dubbo', { kind: 'other' }],
    ['http', { kind: 'other' }],
    ['tcp-metaprotocolx-dubbo', { kind: 'other' }],
  ])('%s', (name, kind) => {
    expect(classifyPort(name)).toEqual(kind);
  });

  it('metaProtocolOf gives the protocol of MetaProtocol ports only', () => {
    expect(metaProtocolOf('tcp-metaprotocol-thrift-x')).toBe('thrift');
    expect(metaProtocolOf('tcp-redis')).toBeUndefined();
  });
});
