#!/usr/bin/env python3
"""Timing half of bench/traffic.lua: status writes and the first 200 through Envoy.

    traffic_probe.py serial API TOKEN CACERT NS ENVOY_PORT NAME=IP ...
    traffic_probe.py burst  API TOKEN CACERT NS ENVOY_PORT NAME=IP ...

serial: for each pod in turn, PATCH its status (IP, Ready) and time from the
PATCH's answer to the first GET /<pod>/ through Envoy that answers 200 with
the pod's name (polled every 2 ms on a fresh connection), and to the pod's
EndpointSlice with its IP arriving on a watch (the operator's part). Prints
one line per pod: "<name> <answer ms> <slice ms>".

burst: PATCH every pod's status at once (16 at a time), then poll all paths
until each has answered 200 with its pod's name once. A watch of
EndpointSlices in the namespace runs meanwhile and records when each pod's
EndpointSlice with its IP arrived. Prints "last_write <s>", then per pod
"<name> slice <s> answer <s>", all times in seconds from the first write.

Python is test tooling here; the bench's setup lives in bench/traffic.lua.
"""
import concurrent.futures
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse


def api_conn(api, cacert):
    u = urllib.parse.urlparse(api)
    ctx = ssl.create_default_context(cafile=cacert)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)


def patch_status(conn, token, ns, name, ip):
    body = json.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                  "conditions": [{"type": "Ready", "status": "True"}]}})
    conn.request("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name), body,
                 {"Authorization": "Bearer " + token,
                  "Content-Type": "application/merge-patch+json"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError("PATCH %s: HTTP %d" % (name, r.status))


def answers(port, name):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/%s/" % name)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status == 200 and body.split("\n", 1)[0] == name
    except (OSError, http.client.HTTPException):
        return False


def serial(api, token, cacert, ns, port, pods):
    seen, ready = {}, threading.Event()
    threading.Thread(target=watch_slices, args=(api, token, cacert, ns, None, seen, ready),
                     daemon=True).start()
    ready.wait(10)
    conn = api_conn(api, cacert)
    for name, ip in pods:
        patch_status(conn, token, ns, name, ip)
        t0 = time.monotonic()
        while not answers(port, name):
            if time.monotonic() - t0 > 60:
                raise RuntimeError("%s: no 200 within 60 s" % name)
            time.sleep(0.002)
        t1 = time.monotonic()
        # The EndpointSlice arrived before the answer; give the watch a moment.
        for _ in range(100):
            if name in seen:
                break
            time.sleep(0.01)
        print("%s %.2f %s" % (name, (t1 - t0) * 1000,
                              "%.2f" % ((seen[name] - t0) * 1000) if name in seen else "-"),
              flush=True)


def watch_slices(api, token, cacert, ns, t0, seen, ready):
    conn = api_conn(api, cacert)
    conn.timeout = None
    conn.request("GET", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?watch=true" % ns,
                 headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    ready.set()
    for line in r:
        ev = json.loads(line)
        obj = ev.get("object", {})
        for ep in obj.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            if ref.get("name") and ep.get("addresses") and ref["name"] not in seen:
                seen[ref["name"]] = time.monotonic()


def burst(api, token, cacert, ns, port, pods):
    seen, ready = {}, threading.Event()
    t0 = [0.0]
    threading.Thread(target=watch_slices, args=(api, token, cacert, ns, t0, seen, ready),
                     daemon=True).start()
    ready.wait(10)
    time.sleep(0.5)  # the watch's initial events (none: pods have no IP yet)
    local = threading.local()

    def write(p):
        if not hasattr(local, "c"):
            local.c = api_conn(api, cacert)
        patch_status(local.c, token, ns, p[0], p[1])
        return time.monotonic()

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        last_write = max(ex.map(write, pods))
    answered = {}
    pending = [n for n, _ in pods]

    def probe(n):
        return n, answers(port, n), time.monotonic()

    # 8 pollers: a round over 300 paths takes a fraction of a second.
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        while pending:
            if time.monotonic() - start > 120:
                raise RuntimeError("%d pods never answered: %s" % (len(pending), pending[:5]))
            still = []
            for n, ok, t in ex.map(probe, pending):
                if ok:
                    answered[n] = t
                else:
                    still.append(n)
            pending = still
    print("last_write %.3f" % (last_write - start))
    for n, _ in pods:
        s = seen.get(n)
        print("%s slice %s answer %.3f" % (n, "%.3f" % (s - start) if s else "-", answered[n] - start))


def main():
    mode, api, token, cacert, ns, port = sys.argv[1:7]
    pods = [tuple(a.split("=", 1)) for a in sys.argv[7:]]
    token = open(token).read().strip()
    {"serial": serial, "burst": burst}[mode](api, token, cacert, ns, int(port), pods)


if __name__ == "__main__":
    main()
