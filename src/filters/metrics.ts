/** `waypost_rate_limited_total`, as the proxy's metrics declare it (docs/traffic-policy.md): both rate limits count there. */
export const RATE_LIMITED = {
  name: 'waypost_rate_limited_total',
  help: 'Requests answered locally because a rate limit was exceeded',
  labelNames: ['listener', 'route'] as const,
};
