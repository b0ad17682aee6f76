/**
 * A clock read once per event-loop callback. Everything the proxy does for one read (a chunk of pipelined
 * commands, an upstream chunk answering many clients) happens in one callback, so one `performance.now()` serves
 * every request in it; the value is dropped in a microtask, which runs as soon as the callback returns. Request
 * durations measured with it are off by at most the time spent handling that one chunk.
 */
let cached = -1;
const forget = (): void => {
  cached = -1;
};

/** `performance.now()`, read at most once per callback. */
export function now(): number {
  if (cached < 0) {
    cached = performance.now();
    queueMicrotask(forget);
  }
  return cached;
}
