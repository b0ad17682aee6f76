"""A tiny python3-thrift server for the Waypost Thrift demo.

    server.py GEN_DIR PORT VERSION

Serves Hello on 127.0.0.1:PORT; hello(name) answers "hello <name> from <VERSION>". GEN_DIR holds the code
`thrift --gen py hello.thrift` generated. A THeader server that also takes framed/unframed binary and compact
clients (`allowed_client_types`), threaded so that the proxy's connections are served at the same time. Prints
"READY <port>" once listening; runs until killed (SIGTERM, Ctrl-C).
"""
import sys

sys.path.insert(0, sys.argv[1])

from thrift.protocol.THeaderProtocol import THeaderProtocolFactory  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402
from waypost_demo import Hello  # noqa: E402


class Handler:
    def __init__(self, version):
        self.version = version

    def hello(self, name):
        return "hello %s from %s" % (name, self.version)


def main():
    port, version = int(sys.argv[2]), sys.argv[3]
    sock = TSocket.TServerSocket(host="127.0.0.1", port=port)
    protocols = THeaderProtocolFactory(
        allowed_client_types=(
            THeaderClientType.HEADERS,
            THeaderClientType.FRAMED_BINARY,
            THeaderClientType.UNFRAMED_BINARY,
            THeaderClientType.FRAMED_COMPACT,
            THeaderClientType.UNFRAMED_COMPACT,
        )
    )
    # THeader frames itself: the transport factory hands over the socket as it is.
    server = TServer.TThreadedServer(Hello.Processor(Handler(version)), sock, TTransport.TTransportFactoryBase(), protocols, daemon=True)
    sock.listen()
    sock.listen = lambda: None  # serve() would listen again
    print("READY %d" % sock.handle.getsockname()[1], flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
