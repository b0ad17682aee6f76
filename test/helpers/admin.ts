/** Reading a running proxy's admin API from tests: its config version and its Prometheus samples. */
import { httpGet } from '../../examples/dubbo/harness.js';

/** The version of the config the proxy serves (`/config_dump`). */
export async function configVersion(adminAddress: string): Promise<string> {
  const r = await httpGet(adminAddress, '/config_dump');
  return (JSON.parse(r.body) as { version: string }).version;
}

/** Sum of the Prometheus samples (`/stats/prometheus`) whose line matches `pattern`. */
export async function metricSum(adminAddress: string, pattern: RegExp): Promise<number> {
  const r = await httpGet(adminAddress, '/stats/prometheus');
  let sum = 0;
  for (const line of r.body.split('\n')) {
    if (!line.startsWith('#') && pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
