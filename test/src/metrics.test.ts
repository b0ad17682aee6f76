import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';

describe('request metrics', () => {
  it('exports counters by outcome and a cumulative histogram in Prometheus text', async () => {
    const m = new Metrics();
    const s = m.requestStatsFor('l1', 'dubbo', 'r1', 'c1');
    expect(m.requestStatsFor('l1', 'dubbo', 'r1', 'c1')).toBe(s);
    s.record('success', 0.0004);
    s.record('success', 0.003);
    s.record('local_reply', 20);
    const text = await m.registry.metrics();
    const labels = 'listener="l1",protocol="dubbo",route="r1",cluster="c1"';
    expect(text).toContain('# TYPE waypost_requests_total counter');
    expect(text).toContain(`waypost_requests_total{${labels},outcome="success"} 2`);
    expect(text).toContain(`waypost_requests_total{${labels},outcome="local_reply"} 1`);
    expect(text).not.toContain('outcome="error"');
    expect(text).toContain('# TYPE waypost_request_duration_seconds histogram');
    expect(text).toContain(`waypost_request_duration_seconds_bucket{${labels},le="0.0005"} 1`);
    expect(text).toContain(`waypost_request_duration_seconds_bucket{${labels},le="0.005"} 2`);
    expect(text).toContain(`waypost_request_duration_seconds_bucket{${labels},le="10"} 2`);
    expect(text).toContain(`waypost_request_duration_seconds_bucket{${labels},le="+Inf"} 3`);
    expect(text).toContain(`waypost_request_duration_seconds_count{${labels}} 3`);
    expect(text).toMatch(new RegExp(`waypost_request_duration_seconds_sum\\{${labels}\\} 20\\.0034`));
  });
});
