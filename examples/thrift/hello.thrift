// The Thrift demo's service: one method, answered with the version of the server that ran it.
namespace py waypost_demo

service Hello {
  string hello(1: string name)
}
