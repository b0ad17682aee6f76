/**
 * dubbo2.js's encoder, decoder and heartbeat, typed for the tests that use it as a Dubbo peer written by others.
 * dubbo2.js is CommonJS and ships no usable types for its internals, so they are loaded by require.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** What dubbo2.js's encoder reads from a call context. */
export interface DubboContext {
  requestId: number;
  isSupportedDubbox: boolean;
  dubboVersion: string;
  dubboInterface: string;
  path: string;
  methodName: string;
  methodArgs: unknown[];
  version?: string;
  group?: string;
  timeout?: number;
  attachments: Record<string, unknown>;
}

export const DubboEncoder = (require('dubbo2.js/es7/encode.js') as { default: new (ctx: DubboContext) => { encode(): Buffer } }).default;
export const DubboContextClass = (require('dubbo2.js/es7/context.js') as { default: { create(): DubboContext } }).default;
export const dubboDecode = (
  require('dubbo2.js/es7/decode.js') as {
    decode(b: Buffer): { requestId: number; err: Error | null; res: unknown; attachments: Record<string, unknown> };
  }
).decode;
export const HeartBeat = (require('dubbo2.js/es7/heartbeat.js') as { default: { encode(): Buffer; isHeartBeat(b: Buffer): boolean } }).default;
export const DecodeBuffer = (
  require('dubbo2.js/es7/decode-buffer.js') as {
    default: { from(pid: number): { receive(b: Buffer): void; subscribe(f: (b: Buffer) => void): unknown } };
  }
).default;
