"""The Waypost Thrift demo's client: python3-thrift over THeader, one connection.

    client.py GEN_DIR PORT CALLS [KEY=VALUE ...]

Calls hello("demo-<i>") CALLS times on 127.0.0.1:PORT, sending the THeader headers KEY=VALUE with every call (the
proxy routes on them), and prints each answer on its own line, or "error: <what>" for a failed call.
"""
import sys

sys.path.insert(0, sys.argv[1])

from thrift.Thrift import TException  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.transport import TSocket  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402
from waypost_demo import Hello  # noqa: E402


def main():
    port, calls = int(sys.argv[2]), int(sys.argv[3])
    headers = [kv.split("=", 1) for kv in sys.argv[4:]]
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(5000)
    sock.open()
    protocol = THeaderProtocol(sock, [THeaderClientType.HEADERS])
    client = Hello.Client(protocol)
    for i in range(calls):
        for key, value in headers:
            protocol.trans.set_header(key.encode(), value.encode())  # sent with the next call only
        try:
            print(client.hello("demo-%d" % (i + 1)), flush=True)
        except TException as e:
            print("error: %s" % (e.message or e), flush=True)
    sock.close()


if __name__ == "__main__":
    main()
