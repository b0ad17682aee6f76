/** Strict UTF-8 for the strings a Thrift request's routing reads (message name, THeader headers). */
import { isUtf8 } from 'node:buffer';
import { CodecError } from '../../src/codec.js';

/** `buf[start, end)` as text when it is valid UTF-8 (no overlong forms, no surrogates); `bad_body` otherwise. */
export function strictUtf8(buf: Buffer, start: number, end: number, what: string): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (buf[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (!ascii && !isUtf8(buf.subarray(start, end))) {
    throw new CodecError('bad_body', `thrift ${what} is not valid UTF-8: servers would read it differently`);
  }
  return buf.toString(ascii ? 'latin1' : 'utf8', start, end);
}
