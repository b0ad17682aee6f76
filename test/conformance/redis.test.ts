/**
 * The built-in Redis codec through the conformance suite: a FIFO codec whose sessions differ by side (commands are
 * cut downstream, replies upstream). Commands are written by ioredis; replies are RESP2/RESP3 values as
 * redis-server writes them.
 */
import { Command } from 'ioredis';
import { redisCodec } from '../../codecs/redis/index.js';
import { runConformance } from './suite.js';

function ioredis(name: string, args: Array<string | number>): Buffer {
  const w = new Command(name, args).toWritable({} as never);
  return typeof w === 'string' ? Buffer.from(w) : w;
}
const resp = (text: string): Buffer => Buffer.from(text, 'utf8');

runConformance('redis (codecs/redis)', {
  codec: redisCodec,
  samples: [
    { name: 'GET', bytes: ioredis('get', ['user:42']), type: 'request', requestId: 0, metadata: { command: 'get', key: 'user:42' } },
    { name: 'SET', bytes: ioredis('set', ['k', 'v ✓', 'EX', 60]), type: 'request', metadata: { command: 'set', key: 'k' } },
    { name: 'MGET', bytes: ioredis('mget', ['a', 'b', 'c']), type: 'request', metadata: { command: 'mget', key: 'a' } },
    // No inline (telnet-style) command: the codec re-encodes those as arrays (docs/redis.md), so their `raw` is not
    // the bytes received, by design.
    { name: 'PING', bytes: ioredis('ping', []), type: 'request', metadata: { command: 'ping' } },
    { name: 'simple string', bytes: resp('+OK\r\n'), type: 'response', status: 'ok', side: 'upstream' },
    { name: 'bulk string', bytes: resp(`$${Buffer.byteLength('v ✓')}\r\nv ✓\r\n`), type: 'response', status: 'ok', side: 'upstream' },
    { name: 'null bulk', bytes: resp('$-1\r\n'), type: 'response', status: 'ok', side: 'upstream' },
    { name: 'array', bytes: resp('*3\r\n$1\r\n1\r\n$-1\r\n:7\r\n'), type: 'response', status: 'ok', side: 'upstream' },
    // A command's error is the server's answer (business_exception); a server-state error is a failure (error).
    { name: 'command error', bytes: resp('-ERR unknown command\r\n'), type: 'response', status: 'business_exception', side: 'upstream' },
    { name: 'LOADING', bytes: resp('-LOADING Redis is loading the dataset in memory\r\n'), type: 'response', status: 'error', side: 'upstream' },
    { name: 'RESP3 map', bytes: resp('%1\r\n+server\r\n+redis\r\n'), type: 'response', status: 'ok', side: 'upstream' },
  ],
  garbage: [
    resp('*x\r\n'),
    resp('*1\r\n:1\r\n'), // a command's arguments are bulk strings
    { bytes: resp('!!\r\n'), side: 'upstream' },
    { bytes: resp('$3\r\nabcXY'), side: 'upstream' },
  ],
  oversize: (max) => resp(`*1\r\n$${max + 1}\r\n`),
  documentedKeys: ['command', 'key'],
  heartbeats: false,
});
