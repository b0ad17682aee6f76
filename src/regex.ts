/**
 * The one way to compile a regular expression that config carries (route and rate-limit matchers, SAN matchers, and
 * `waypost validate`'s check of them): RE2 syntax, matched against the WHOLE value as Envoy's `safe_regex` is, and
 * run by re2js, a pure-JavaScript port of RE2, in time linear in the value's length. JavaScript's own RegExp
 * backtracks: `(a+)+$` against a 30-byte attachment held the event loop for seconds.
 *
 * Linear is not free: the cost per byte grows with the compiled program, and past a program size of about 100 an
 * expression such as `[xy]*x[xy]{150}` costs microseconds per byte. So, like Envoy's
 * `re2.max_program_size.error_level` (default 100), an expression whose program is larger than
 * MAX_REGEX_PROGRAM_SIZE is refused when the config is loaded; compile time and memory are bounded by the same rule.
 */
import { RE2JS } from 're2js';

/** Largest compiled RE2 program accepted (Envoy's default error level for `re2.max_program_size`). */
export const MAX_REGEX_PROGRAM_SIZE = 100;

/** A compiled config regex. `test` is true when the expression matches the whole value. */
export interface ConfigRegex {
  readonly source: string;
  readonly programSize: number;
  test(value: string): boolean;
}

export interface RegexOptions {
  readonly ignoreCase?: boolean;
}

/** Compile `source`; throws an Error whose message says what RE2 refuses (no "where": callers add the field path). */
export function compileRegex(source: string, options: RegexOptions = {}): ConfigRegex {
  if (typeof source !== 'string') throw new Error(`a regex must be a string, not ${source === null ? 'null' : typeof source}`);
  let re: RE2JS;
  try {
    re = RE2JS.compile(source, options.ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw new Error(`invalid regular expression ${JSON.stringify(source)}: ${reason(err, source)}`);
  }
  const programSize = re.programSize();
  if (programSize > MAX_REGEX_PROGRAM_SIZE) {
    throw new Error(
      `regular expression ${JSON.stringify(source)} is too complex: its RE2 program size is ${programSize}, the limit is ` +
        `${MAX_REGEX_PROGRAM_SIZE} (large counted repeats such as {1,63} cost the most; prefer + or *)`,
    );
  }
  // testExact: anchored at both ends, no capture groups (RE2's DFA path).
  return { source, programSize, test: (value) => re.testExact(value) };
}

/** Why `source` is refused, or undefined when it compiles. For validators that report instead of throwing. */
export function regexProblem(source: string, options: RegexOptions = {}): string | undefined {
  try {
    compileRegex(source, options);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** re2js says `error parsing regexp: <what>: \`<where>\``; the where is dropped when it is the whole expression. */
function reason(err: unknown, source: string): string {
  let msg = err instanceof Error ? err.message : String(err);
  msg = msg.replace(/^error parsing regexp: /, '');
  const whole = `: \`${source}\``;
  if (msg.endsWith(whole)) msg = msg.slice(0, -whole.length);
  // The two JavaScript features people reach for most, which RE2 leaves out to stay linear.
  if (/\(\?<?[=!]/.test(source)) msg += ' (RE2 has no lookahead or lookbehind)';
  else if (/\\[1-9]|\\k</.test(source)) msg += ' (RE2 has no backreferences)';
  return msg;
}
