import { CodecError } from './codec.js';
import { log } from './log.js';

/**
 * Containment: every asynchronous continuation of a request or a connection — a timer, an upstream answer or
 * failure, a filter's callback, a batch flush, a socket event — re-enters the proxy through {@link reenter}. Whatever
 * it throws (a frame whose head routed fine but whose arguments do not decode, a bug) is handed to the owner's
 * `contain`, which answers that request natively or closes that connection. Nothing a peer sends can reach Node's
 * uncaught-exception handler and take every other client down with it.
 */

/** The continuations, named as the metric label `where` of `waypost_contained_errors_total`. */
export type Continuation =
  /** A request frame just decoded: filters, route, the first attempt. */
  | 'request'
  /** The timer wheel: a fault delay ending, a deadline, a frame timeout, a mirror expiry. */
  | 'timer'
  /** An upstream answer being matched back and re-encoded for the client. */
  | 'response'
  /** An upstream connection failing the requests it carried (and the retries that starts). */
  | 'upstream_failure'
  /** An asynchronous filter's callback (the global rate limit service). */
  | 'filter_callback'
  /** A batch of buffered work written out later (Redis pipelines, fan-outs). */
  | 'flush'
  /** A mirrored copy of a request being sent. */
  | 'mirror'
  /** A connection's own socket events (its close abandoning what it had in flight). */
  | 'connection';

/** What a continuation belongs to: it answers or closes whatever was thrown in it. It must not throw itself. */
export interface Containable {
  contain(thrown: unknown, where: Continuation): void;
}

/** Why a throw happened, for the `reason` label: a codec's own reason, or `internal` for anything else (a bug). */
export function reasonOf(thrown: unknown): string {
  return thrown instanceof CodecError ? thrown.reason : 'internal';
}

/**
 * Logs a contained error at most once per cause and interval, and returns its reason; owners call it from `contain`
 * and count it in their listener's `waypost_contained_errors_total`. The log has the stack only for errors that are
 * not a CodecError (those are bugs, not hostile bytes).
 */
export function recordContained(thrown: unknown, where: Continuation, listener: string, fields?: Record<string, unknown>): string {
  const reason = reasonOf(thrown);
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const fn = reason === 'internal' ? log.errorLimited : log.warnLimited;
  fn(`contained:${listener}:${where}:${reason}`, 'a request failed in the proxy and was answered locally', {
    listener,
    where,
    reason,
    error: message,
    ...fields,
    stack: reason === 'internal' && thrown instanceof Error ? thrown.stack : undefined,
  });
  return reason;
}

/**
 * Runs `fn` for `owner`; a throw goes to `owner.contain`. If containing throws too (an owner's bug), it is logged
 * and swallowed: the caller — a timer wheel, a socket handler — must go on for everyone else.
 */
export function reenter(owner: Containable, where: Continuation, fn: () => void): void {
  try {
    fn();
  } catch (thrown) {
    containSafely(owner, thrown, where);
  }
}

/** For callers that already caught: hands `thrown` to its owner, never throwing. */
export function containSafely(owner: Containable, thrown: unknown, where: Continuation): void {
  try {
    owner.contain(thrown, where);
  } catch (again) {
    log.errorLimited(`contain_failed:${where}`, 'containing an error failed', {
      where,
      error: thrown instanceof Error ? thrown.message : String(thrown),
      stack: again instanceof Error ? again.stack : String(again),
    });
  }
}
