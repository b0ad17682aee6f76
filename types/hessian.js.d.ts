// Minimal types for hessian.js (the package ships none): only what Waypost uses.
declare module 'hessian.js' {
  export class EncoderV2 {
    constructor(options?: unknown);
    write(value: unknown): this;
    get(): Buffer;
    reset(): this;
  }
  export class DecoderV2 {
    constructor(buf?: Buffer);
    init(buf: Buffer): this;
    read(): unknown;
    readString(): string;
    readInt(): number;
    readMap(): unknown;
    position(): number;
    position(pos: number): this;
    byteBuffer: { position(): number; position(pos: number): unknown; limit(): number };
    clean(): this;
  }
  export function encode(value: unknown, version?: '1.0' | '2.0'): Buffer;
  export function decode(buf: Buffer, version?: '1.0' | '2.0', options?: unknown): unknown;
  const hessian: {
    EncoderV2: typeof EncoderV2;
    DecoderV2: typeof DecoderV2;
    encode: typeof encode;
    decode: typeof decode;
  };
  export default hessian;
}
declare module 'js-to-java' {
  const java: ((type: string, value: unknown) => { $class: string; $: unknown }) & {
    String(v: string): { $class: string; $: string };
    Map(v: Record<string, unknown>): unknown;
    [k: string]: unknown;
  };
  export default java;
}
