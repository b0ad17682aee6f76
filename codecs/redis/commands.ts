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
 * - `keyless`: no key (INFO, DBSIZE, KEYS, SCAN, FLUSHALL, …): goes to the catch-all route.
 * - `local`: answered by the proxy itself (PING, ECHO, QUIT, AUTH, HELLO, SELECT, TIME, RESET, CLIENT SETNAME…).
 * - `unsupported`: cannot work over a shared, pipelined upstream connection; answered with an error naming it.
 *
 * Commands missing from the table (module commands, newer commands) are routed by their first argument when they
 * have one, as Envoy does for its "simple" commands, and otherwise treated as keyless.
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
   incrby incrbyfloat linsert lpop lpush lpushx lrem lset ltrim move persist pexpire pexpireat pfadd psetex restore
   rpop rpush rpushx sadd set setbit setex setnx setrange spop srem xack xadd xautoclaim xclaim xdel xsetid xtrim
   zadd zincrby zpopmax zpopmin zrem zremrangebylex zremrangebyrank zremrangebyscore geoadd`,
  true,
);
keys('sort georadius georadiusbymember', true, 1, 1, 1, { storeOption: true });
keys(
  `bitcount bitfield_ro bitpos dump expiretime get getbit getrange hexists hget hgetall hkeys hlen hmget hrandfield
   hscan hstrlen hvals lindex llen lpos lrange pexpiretime pttl scard sismember smembers smismember srandmember sscan
   strlen substr ttl type xlen xpending xrange xrevrange zcard zcount zlexcount zmscore zrandmember zrange
   zrangebylex zrangebyscore zrank zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore geodist geohash
   geopos georadius_ro georadiusbymember_ro geosearch sort_ro`,
  false,
);
// Channels route like keys (as Envoy does): a publisher and its subscribers meet on the channel's upstream.
keys('publish spublish', false);
keys('pfdebug', true, 2, 2);

// Several keys that must meet on one upstream.
keys('rename renamenx rpoplpush lmove smove copy geosearchstore zrangestore', true, 1, 2);
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
add('eval evalsha fcall', { kind: 'numkeys', first: 2, last: 0, step: 1, write: true });
add('eval_ro evalsha_ro fcall_ro', { kind: 'numkeys', first: 2, last: 0, step: 1, write: false });
add('zunionstore zinterstore zdiffstore', { kind: 'numkeys', first: 2, last: 1, step: 1, write: true });
add('zunion zinter zdiff zintercard sintercard', { kind: 'numkeys', first: 1, last: 0, step: 1, write: false });
add('lmpop zmpop', { kind: 'numkeys', first: 1, last: 0, step: 1, write: true });
add('xread', { kind: 'streams', ...NONE, write: false, blockOption: true });
add('xreadgroup', { kind: 'streams', ...NONE, write: true, blockOption: true });

// No key: the catch-all route.
add(
  `bgrewriteaof bgsave command config dbsize info keys lastsave latency lolwut module pubsub randomkey role save
   scan script slowlog acl function pfselftest`,
  { kind: 'keyless', ...NONE, write: false },
);
add('flushall flushdb', { kind: 'keyless', ...NONE, write: true });

// Answered by the proxy.
add('ping echo quit auth hello select time reset', { kind: 'local', ...NONE, write: false });

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
unsupported('monitor sync psync replconf replicaof slaveof failover shutdown debug', 'it is an administrative command the proxy does not forward');
unsupported('cluster readonly readwrite asking', 'Redis Cluster commands are not supported by the proxy');
unsupported('wait waitaof', 'it waits on the shared upstream connection');
unsupported('swapdb', 'the proxy serves database 0 only');
unsupported('migrate restore-asking', 'it moves keys between servers behind the proxy\'s back');

// Containers whose key is the argument after the subcommand.
function container(name: string, spec: Omit<CommandSpec, 'name' | 'sub'>, subs: Record<string, Omit<CommandSpec, 'name'>>): void {
  const sub = new Map<string, CommandSpec>();
  for (const [s, v] of Object.entries(subs)) for (const n of s.split(' ')) sub.set(n, { name: `${name}|${n}`, ...v });
  table.set(name, { name, ...spec, sub });
}
const KEY2_READ = { kind: 'keys', first: 2, last: 2, step: 1, write: false } as const;
const KEY2_WRITE = { kind: 'keys', first: 2, last: 2, step: 1, write: true } as const;
container('object', { kind: 'keyless', ...NONE, write: false }, { 'encoding freq idletime refcount': KEY2_READ });
container('memory', { kind: 'keyless', ...NONE, write: false }, { usage: KEY2_READ });
container('xinfo', { kind: 'keyless', ...NONE, write: false }, { 'stream groups consumers': KEY2_READ });
container('xgroup', { kind: 'keyless', ...NONE, write: false }, { 'create createconsumer delconsumer destroy setid': KEY2_WRITE });
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

/** The spec for unknown commands: routed by their first argument, as Envoy's simple commands. */
export const UNKNOWN_WITH_KEY: CommandSpec = { name: '?', kind: 'keys', first: 1, last: 1, step: 1, write: true };
export const UNKNOWN_KEYLESS: CommandSpec = { name: '?', kind: 'keyless', ...NONE, write: true };
