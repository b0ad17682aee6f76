/**
 * What the proxy needs to know about each Redis command: where its keys are (so it can be routed by key prefix and
 * hashed to an endpoint), whether it writes (mirrors with `exclude_read_commands` skip reads), and whether it can
 * work through a proxy at all. Key positions follow Redis 7's command table (`COMMAND INFO`): `first`, `last`
 * (negative counts from the end: -1 is the last argument) and `step`.
 *
 * Kinds:
 * - `keys`: the keys are at first..last by step; the first key routes the command. When there are several keys,
 *   all of them must go to the same route and endpoint (the proxy checks; Redis Cluster calls the failure CROSSSLOT).
 * - `numkeys`: `EVAL script numkeys key…`-style: the argument at `first` counts the keys that follow it; `last` is
 *   the index of one more key before the count (ZUNIONSTORE's destination), or 0.
 * - `streams`: XREAD/XREADGROUP: the keys are the first half of the arguments after `STREAMS`.
 * - `mget`, `mset`, `sum`: split per route and endpoint, answered by reassembling (MGET), `+OK` (MSET), or the sum
 *   of the integer answers (DEL, UNLINK, EXISTS, TOUCH).
 * - `keyless`: no key: goes to the catch-all route. No command of the default table is keyless any more (the
 *   kind stays for subcommand containers and for callers that build specs of their own).
 * - `local`: answered by the proxy itself (PING, ECHO, QUIT, AUTH, HELLO, SELECT, TIME, RESET, INFO, CLIENT SETNAME…).
 * - `unsupported`: refused with an error naming it: it cannot work over a shared, pipelined upstream connection,
 *   administers the server, or has no key to route by.
 *
 * The table is an allow-list, as Envoy's redis_proxy has a fixed set of supported commands: commands it does not
 * know (newer commands, module commands other than RedisBloom's `bf.*`, which Envoy lists) are refused too.
 * Scripts (`script: true`) are allowed only on routes that say so (see connection.ts).
 */

export type CommandKind = 'keys' | 'numkeys' | 'streams' | 'mget' | 'mset' | 'sum' | 'keyless' | 'local' | 'unsupported';

export interface CommandSpec {
  /** Lower-case name (`object|encoding` for a subcommand). */
  readonly name: string;
  readonly kind: CommandKind;
  readonly first: number;
  readonly last: number;
  readonly step: number;
  /** Changes data (Redis' `write` flag): mirrored even with `exclude_read_commands`. */
  readonly write: boolean;
  /** For `unsupported`: why. */
  readonly reason?: string;
  /** `STORE`/`STOREDIST key` options add a key (SORT, GEORADIUS…). */
  readonly storeOption?: boolean;
  /** `BLOCK` makes the command blocking (XREAD, XREADGROUP): then it is unsupported. */
  readonly blockOption?: boolean;
  /** A script (EVAL, EVALSHA, FCALL and their `_RO` forms): runs only on routes that allow scripts. */
  readonly script?: boolean;
  /** `BY`/`GET` patterns name other keys (SORT): refused with them, since they could read any route's keys. */
  readonly patternOption?: boolean;
  /** A `DB n` option writes into another database (COPY): refused with it, as SELECT n and MOVE are. */
  readonly dbOption?: boolean;
  /** Container commands (OBJECT, XINFO, CLIENT, …): specs by subcommand; others of the container use `this`. */
  readonly sub?: ReadonlyMap<string, CommandSpec>;
}

const table = new Map<string, CommandSpec>();

function add(names: string, spec: Omit<CommandSpec, 'name'>): void {
  for (const name of names.trim().split(/\s+/)) table.set(name, { name, ...spec });
}

function keys(names: string, write: boolean, first = 1, last = 1, step = 1, extra: Partial<CommandSpec> = {}): void {
  add(names, { kind: 'keys', first, last, step, write, ...extra });
}

const NONE = { first: 0, last: 0, step: 0 } as const;

// Single key.
keys(
  `append bitfield decr decrby expire expireat getdel getex getset hdel hincrby hincrbyfloat hmset hset hsetnx incr
   incrby incrbyfloat linsert lpop lpush lpushx lrem lset ltrim persist pexpire pexpireat pfadd psetex restore
   rpop rpush rpushx sadd set setbit setex setnx setrange spop srem xack xadd xautoclaim xclaim xdel xsetid xtrim
   zadd zincrby zpopmax zpopmin zrem zremrangebylex zremrangebyrank zremrangebyscore geoadd`,
  true,
);
keys('georadius georadiusbymember', true, 1, 1, 1, { storeOption: true });
keys('sort', true, 1, 1, 1, { storeOption: true, patternOption: true });
keys('sort_ro', false, 1, 1, 1, { patternOption: true });
keys(
  `bitcount bitfield_ro bitpos dump expiretime get getbit getrange hexists hget hgetall hkeys hlen hmget hrandfield
   hscan hstrlen hvals lindex llen lpos lrange pexpiretime pttl scard sismember smembers smismember srandmember sscan
   strlen substr ttl type xlen xpending xrange xrevrange zcard zcount zlexcount zmscore zrandmember zrange
   zrangebylex zrangebyscore zrank zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore geodist geohash
   geopos georadius_ro georadiusbymember_ro geosearch`,
  false,
);
// Channels route like keys (as Envoy does): a publisher and its subscribers meet on the channel's upstream.
keys('publish spublish', false);
// RedisBloom, as in Envoy's list of simple commands.
keys('bf.add bf.insert bf.loadchunk bf.madd bf.reserve', true);
keys('bf.card bf.exists bf.info bf.mexists bf.scandump', false);

// Several keys that must meet on one upstream.
keys('rename renamenx rpoplpush lmove smove geosearchstore zrangestore', true, 1, 2);
keys('copy', true, 1, 2, 1, { dbOption: true });
keys('lcs', false, 1, 2);
keys('sdiffstore sinterstore sunionstore pfmerge', true, 1, -1);
keys('sdiff sinter sunion pfcount', false, 1, -1);
keys('bitop', true, 2, -1);
keys('msetnx', true, 1, -1, 2);

// Split across routes.
add('mget', { kind: 'mget', first: 1, last: -1, step: 1, write: false });
add('mset', { kind: 'mset', first: 1, last: -1, step: 2, write: true });
add('del unlink', { kind: 'sum', first: 1, last: -1, step: 1, write: true });
add('exists touch', { kind: 'sum', first: 1, last: -1, step: 1, write: false });

// Key counts in the arguments.
add('eval evalsha fcall', { kind: 'numkeys', first: 2, last: 0, step: 1, write: true, script: true });
add('eval_ro evalsha_ro fcall_ro', { kind: 'numkeys', first: 2, last: 0, step: 1, write: false, script: true });
add('zunionstore zinterstore zdiffstore', { kind: 'numkeys', first: 2, last: 1, step: 1, write: true });
add('zunion zinter zdiff zintercard sintercard', { kind: 'numkeys', first: 1, last: 0, step: 1, write: false });
add('lmpop zmpop', { kind: 'numkeys', first: 1, last: 0, step: 1, write: true });
add('xread', { kind: 'streams', ...NONE, write: false, blockOption: true });
add('xreadgroup', { kind: 'streams', ...NONE, write: true, blockOption: true });

// Answered by the proxy.
add('ping echo quit auth hello select time reset info', { kind: 'local', ...NONE, write: false });

// Cannot work over a shared, pipelined upstream connection.
function unsupported(names: string, reason: string): void {
  add(names, { kind: 'unsupported', ...NONE, write: false, reason });
}
unsupported(
  'subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe',
  'pub/sub needs a connection of its own to the server, and the proxy shares its upstream connections',
);
unsupported(
  'blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop',
  'blocking commands would stall every client sharing the upstream connection',
);
unsupported('multi exec discard watch unwatch', 'transactions need a connection of their own to the server');
unsupported(
  `config acl debug shutdown script function module monitor sync psync replconf replicaof slaveof failover save bgsave
   bgrewriteaof lastsave latency slowlog flushall flushdb swapdb pfdebug pfselftest command lolwut role`,
  'it is an administrative command the proxy does not forward',
);
unsupported('keys scan dbsize randomkey pubsub', 'it has no key to route by and would reach every route\'s keys');
unsupported('cluster readonly readwrite asking', 'Redis Cluster commands are not supported by the proxy');
unsupported('wait waitaof', 'it waits on the shared upstream connection');
unsupported('move', 'the proxy serves database 0 only');
unsupported('migrate restore-asking', 'it moves keys between servers behind the proxy\'s back');

// Containers whose key is the argument after the subcommand.
function container(name: string, spec: Omit<CommandSpec, 'name' | 'sub'>, subs: Record<string, Omit<CommandSpec, 'name'>>): void {
  const sub = new Map<string, CommandSpec>();
  for (const [s, v] of Object.entries(subs)) for (const n of s.split(' ')) sub.set(n, { name: `${name}|${n}`, ...v });
  table.set(name, { name, ...spec, sub });
}
const KEY2_READ = { kind: 'keys', first: 2, last: 2, step: 1, write: false } as const;
const KEY2_WRITE = { kind: 'keys', first: 2, last: 2, step: 1, write: true } as const;
const NO_SUBCOMMAND = { kind: 'unsupported', ...NONE, write: false, reason: 'only the subcommands that name a key are supported' } as const;
container('object', NO_SUBCOMMAND, { 'encoding freq idletime refcount': KEY2_READ });
container('memory', NO_SUBCOMMAND, { usage: KEY2_READ });
container('xinfo', NO_SUBCOMMAND, { 'stream groups consumers': KEY2_READ });
container('xgroup', NO_SUBCOMMAND, { 'create createconsumer delconsumer destroy setid': KEY2_WRITE });
container(
  'client',
  { kind: 'unsupported', ...NONE, write: false, reason: 'the proxy shares its upstream connections, so client state is not forwarded' },
  { 'setname getname setinfo id': { kind: 'local', ...NONE, write: false } },
);

/** The spec of a command by lower-case name (undefined for commands the table does not know). */
export function commandSpec(name: string): CommandSpec | undefined {
  return table.get(name);
}

/** Every command the table knows (tests, docs). */
export function knownCommands(): IterableIterator<CommandSpec> {
  return table.values();
}

/** The spec for commands the table does not know: refused (the table is an allow-list, as Envoy's). */
export const UNKNOWN: CommandSpec = { name: '?', kind: 'unsupported', ...NONE, write: true };
