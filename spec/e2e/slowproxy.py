#!/usr/bin/env python3
"""A TLS proxy in front of kube-apiserver that makes writes slow (test tooling).

    slowproxy.py UPSTREAM_PORT CERT KEY DELAY_SECONDS

Listens on a free loopback port (printed as "port N" on stdout once ready),
terminates TLS with CERT/KEY (HTTP/1.1 only, so every request is visible),
and forwards each request on a fresh TLS connection to 127.0.0.1:UPSTREAM_PORT
(not verified: a loopback test server), one request per connection
("Connection: close" both ways). Every request that is not a GET and whose
path does not contain "/leases/" or end in "/leases" is held DELAY_SECONDS
before it is forwarded: the operator's writes crawl while its Lease calls and
its lists and watches go through at once. A held request whose client hung
up meanwhile (a cancelled call) is dropped, never forwarded ("held METHOD PATH"
and "dropped METHOD PATH" on stdout tell which). Responses (watch
streams included) are piped back as they come. Runs until killed.
"""
import select
import socket
import ssl
import sys
import threading
import time

HEAD_MAX = 64 * 1024


def read_head(conn):
    """Reads up to the blank line; returns (head bytes, rest) or None on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > HEAD_MAX:
            return None
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def is_lease(path):
    p = path.split("?", 1)[0]
    return "/leases/" in p or p.endswith("/leases")


def hung_up(client):
    """True when the client closed its end (nothing else is sent before the answer)."""
    readable, _, _ = select.select([client], [], [], 0)
    if not readable:
        return False
    try:
        return client.recv(1) == b""
    except (OSError, ssl.SSLError):
        return True


def handle(conn, ctx, upstream_port, delay):
    client = conn
    try:
        client = ctx.wrap_socket(conn, server_side=True)
        got = read_head(client)
        if got is None:
            return
        head, body = got
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers, length, expect = [], 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            if key == "content-length":
                length = int(value.strip())
            if key == "expect":
                expect = True
                continue
            if key in ("connection", "keep-alive"):
                continue
            headers.append(line)
        if expect:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
        if method != "GET" and not is_lease(path):
            print("held", method, path, flush=True)
            time.sleep(delay)
            if hung_up(client):
                print("dropped", method, path, flush=True)
                return
        up_ctx = ssl.create_default_context()
        up_ctx.check_hostname = False
        up_ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", upstream_port))
        with up_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as up:
            out = "\r\n".join([lines[0]] + headers + ["Connection: close", "", ""])
            up.sendall(out.encode("latin-1") + body)
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                client.sendall(chunk)
    except (OSError, ValueError, ssl.SSLError):
        pass
    finally:
        try:
            client.close()
        except OSError:
            pass


def main():
    upstream_port, cert, key, delay = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    print("port", listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn, ctx, upstream_port, delay), daemon=True).start()


if __name__ == "__main__":
    main()
