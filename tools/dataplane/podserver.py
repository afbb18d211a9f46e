#!/usr/bin/env python3
"""Pod stand-ins for the data-plane tests: HTTP servers that answer as pods.

    podserver.py --port PORT NAME=IP [NAME=IP ...]

Listens on IP:PORT for each pod and answers every request with status 200 and
the body

    <pod name>
    <request path as received>
    <Host header>

so a client (through Envoy) can tell which pod answered, and what path and
host that pod saw (for --rewrite-prefix and --hostname). A request to
/__slow/<seconds>/... is answered after that many seconds (an in-flight
request while a pod terminates). One process serves many pods; SIGTERM stops
it. Python is test tooling here, never part of the product.
"""
import asyncio
import signal
import sys


async def handle(name, reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                _method, target, _version = line.decode("latin-1").split(" ", 2)
            except ValueError:
                return
            host, length = "", 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                if k.strip().lower() == "host":
                    host = v.strip()
                elif k.strip().lower() == "content-length":
                    length = int(v.strip() or 0)
            if length:
                await reader.readexactly(length)
            parts = target.split("/")
            if "__slow" in parts:
                i = parts.index("__slow")
                try:
                    await asyncio.sleep(float(parts[i + 1]))
                except (IndexError, ValueError):
                    pass
            body = ("%s\n%s\n%s\n" % (name, target, host)).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port, pods):
    servers = []
    for name, ip in pods:
        servers.append(await asyncio.start_server(
            lambda r, w, n=name: handle(n, r, w), ip, port, reuse_address=True))
    print("serving %d pod(s) on port %d" % (len(servers), port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--port":
        sys.exit(__doc__)
    pods = [tuple(a.split("=", 1)) for a in args[2:]]
    asyncio.run(main(int(args[1]), pods))
