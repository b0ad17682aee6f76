import { expect } from 'vitest';
import { CodecError } from '../../src/codec.js';

/** Runs `read` (a metadata read, an encode) and expects it to refuse the frame as `bad_body`; returns the message. */
export function badBody(read: () => unknown): string {
  try {
    read();
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    expect((err as CodecError).reason).toBe('bad_body');
    return (err as CodecError).message;
  }
  throw new Error('expected a bad_body CodecError');
}
