/**
 * The Redis codec (RESP2 and RESP3), registered as `waypost.codec.redis`, protocol `redis`, FIFO multiplexing
 * (Redis answers in request order and has no request ids).
 *
 * Downstream sessions cut commands (arrays of bulk strings, or inline commands) and expose `command` (lower-case
 * name) and `key` (the first key, per the command table) as metadata; upstream sessions cut replies of any RESP2/3
 * type. Frames are views of the bytes received. Local replies are RESP errors (`-ERR …`), the same in both protocol
 * versions.
 *
 * The data plane's Redis proxy (`envoy.filters.network.redis_proxy`, src/redis/) uses this codec for framing and
 * adds what Redis needs beyond it: key-prefix routes, splitting multi-key commands, AUTH, HELLO, and so on.
 */
import type { CodecFactory, CodecOptions, CodecSession, Frame, FrameEdit, LocalReply } from '../../src/codec.js';
import { RedisReply, ReplyDecoder } from './reply.js';
import { RedisRequest, RequestDecoder } from './request.js';
import { errorReply, oneLine } from './resp.js';

export { RedisRequest, RequestDecoder, splitArgs } from './request.js';
export { RedisReply, ReplyDecoder, ReplyScanner, skipValue, errorTextOf, valueStart } from './reply.js';
export { commandSpec, knownCommands, type CommandSpec, type CommandKind } from './commands.js';

export const REDIS_CODEC_NAME = 'waypost.codec.redis';

/** Bytes written first on every upstream connection of a session (login, protocol switch) and their answer count. */
export interface Handshake {
  readonly bytes: Buffer;
  readonly replies: number;
}

class RedisSession implements CodecSession {
  private readonly requests: RequestDecoder | undefined;
  private readonly replies: ReplyDecoder | undefined;

  constructor(options: CodecOptions, private readonly hello: Handshake | undefined) {
    if (options.side === 'downstream') this.requests = new RequestDecoder(options.maxFrameSize);
    else this.replies = new ReplyDecoder(options.maxFrameSize);
  }

  get buffered(): number {
    return this.requests?.buffered ?? this.replies?.buffered ?? 0;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    if (this.requests !== undefined) this.requests.decode(chunk, sink);
    else this.replies!.decode(chunk, sink);
  }

  /** Redis frames carry no id and no headers: the bytes go as they came (a copy when asked). */
  encode(frame: Frame, edit?: FrameEdit): Buffer {
    return edit?.copy === true ? Buffer.from(frame.raw) : frame.raw;
  }

  localReply(request: Frame, reply: LocalReply): Buffer | undefined {
    return errorReply(localReplyText(request, reply));
  }

  heartbeatReply(): Buffer | undefined {
    return undefined;
  }

  handshake(): Handshake | undefined {
    return this.hello;
  }
}

/**
 * The text of a local reply (without the leading `-`):
 * no route → `ERR no route for key 'k'` (or `command 'c'`), timeout → `ERR timeout`, rate limited →
 * `ERR rate limited`, fault abort → `ERR <message>`, upstream failures → `ERR upstream failure: <message>`.
 */
export function localReplyText(request: Frame | undefined, reply: LocalReply): string {
  switch (reply.kind) {
    case 'no_route':
      return `ERR no route for ${describeRequest(request)}`;
    case 'timeout':
      return 'ERR timeout';
    case 'over_limit':
      return reply.message.startsWith('rate limited') ? 'ERR rate limited' : `ERR upstream overloaded: ${oneLine(reply.message)}`;
    case 'fault_abort':
      return `ERR ${oneLine(reply.message)}`;
    case 'bad_request':
      return `ERR bad request: ${oneLine(reply.message)}`;
    case 'permission_denied':
      // Redis' own ACL error prefix.
      return `NOPERM ${oneLine(reply.message)}`;
    default:
      return `ERR upstream failure: ${oneLine(reply.message)}`;
  }
}

/** `key 'k'` or `command 'c'`, for messages (printable, bounded). */
export function describeRequest(request: Frame | undefined): string {
  const md = request?.metadata;
  const key = md?.get('key');
  if (key !== undefined) return `key '${printable(key)}'`;
  const command = md?.get('command');
  return command !== undefined ? `command '${printable(command)}'` : 'the request';
}

function printable(s: string): string {
  const flat = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return flat.length > 100 ? `${flat.slice(0, 97)}...` : flat;
}

/** A Redis codec factory under `name`; with `handshake`, its upstream sessions log in/switch protocol first. */
export function createRedisCodec(name: string, handshake?: Handshake): CodecFactory {
  return {
    name,
    protocol: 'redis',
    multiplexing: 'fifo',
    create(options: CodecOptions): CodecSession {
      return new RedisSession(options, options.side === 'upstream' ? handshake : undefined);
    },
  };
}

export const redisCodec: CodecFactory = createRedisCodec(REDIS_CODEC_NAME);

export default redisCodec;
