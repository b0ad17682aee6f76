// The bench's Thrift service: the npm client and the npm server generate their code from it at run time
// (Debian's `thrift` compiler); bench/thrift/wire.ts speaks the same calls on raw sockets.
namespace js waypost_bench

service Bench {
  string hello(1: string name)
}
