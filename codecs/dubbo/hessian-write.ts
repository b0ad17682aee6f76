/**
 * The one hessian2 value Waypost writes itself: a string (attachment keys/values, error messages).
 *
 * Characters are written as Java's Hessian2Output writes them: each UTF-16 unit as 1-3 bytes, so a character
 * outside the BMP becomes two 3-byte surrogates (CESU-8). Java's Hessian2Input only decodes 1-3 byte sequences,
 * so standard 4-byte UTF-8 (what Buffer.from(str) would give) would break Java peers.
 */

/** Units per chunk, as Java and hessian.js use; a non-final chunk is `R` b1 b0, the final one `S`/compact. */
const CHUNK_UNITS = 0x8000;

export function encodeHessianString(str: string): Buffer {
  const n = str.length;
  let size = 0;
  let start = 0;
  while (n - start > CHUNK_UNITS) {
    const len = chunkLength(str, start);
    size += 3 + cesuLength(str, start, start + len);
    start += len;
  }
  const last = n - start;
  size += (last <= 31 ? 1 : last <= 1023 ? 2 : 3) + cesuLength(str, start, n);

  const out = Buffer.allocUnsafe(size);
  let p = 0;
  start = 0;
  while (n - start > CHUNK_UNITS) {
    const len = chunkLength(str, start);
    out[p] = 0x52; // 'R': non-final chunk
    out.writeUInt16BE(len, p + 1);
    p = writeCesu(out, p + 3, str, start, start + len);
    start += len;
  }
  if (last <= 31) {
    out[p++] = last;
  } else if (last <= 1023) {
    out[p++] = 0x30 + (last >> 8);
    out[p++] = last & 0xff;
  } else {
    out[p++] = 0x53; // 'S': final chunk
    out.writeUInt16BE(last, p);
    p += 2;
  }
  writeCesu(out, p, str, start, n);
  return out;
}

/** A full chunk, one unit shorter when it would end between the two halves of a surrogate pair. */
function chunkLength(str: string, start: number): number {
  const tail = str.charCodeAt(start + CHUNK_UNITS - 1);
  return tail >= 0xd800 && tail <= 0xdbff ? CHUNK_UNITS - 1 : CHUNK_UNITS;
}

function cesuLength(str: string, from: number, to: number): number {
  let bytes = 0;
  for (let i = from; i < to; i++) {
    const c = str.charCodeAt(i);
    bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
  }
  return bytes;
}

function writeCesu(out: Buffer, p: number, str: string, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    const c = str.charCodeAt(i);
    if (c < 0x80) {
      out[p++] = c;
    } else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 0x3f);
    } else {
      out[p++] = 0xe0 | (c >> 12);
      out[p++] = 0x80 | ((c >> 6) & 0x3f);
      out[p++] = 0x80 | (c & 0x3f);
    }
  }
  return p;
}
