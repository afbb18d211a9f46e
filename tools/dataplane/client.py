#!/usr/bin/env python3
"""A client loop for the data-plane tests: what users see, every answer counted.

    client.py OUT PORT HOST PATH [PATH ...]

Sends GET http://127.0.0.1:PORT/PATH (Host: HOST; "-" for none given) for each
PATH in turn, over and over, one new connection per request, about 5 ms apart, until SIGTERM.
Appends one line per answer to OUT:

    <seconds since start> <path> <status> <first line of the body>

status 0 means no HTTP answer (connection refused, reset or a 5 s timeout).
"""
import http.client
import signal
import sys
import time

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def main():
    out, port, host, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    with open(out, "a", buffering=1) as f:
        while not stop:
            for p in paths:
                if stop:
                    break
                status, first = 0, "-"
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    headers = {} if host == "-" else {"Host": host}
                    c.request("GET", p, headers=headers)
                    r = c.getresponse()
                    status = r.status
                    body = r.read().decode("utf-8", "replace")
                    first = (body.split("\n", 1)[0].strip() or "-").replace(" ", "_")
                    c.close()
                except (OSError, http.client.HTTPException) as e:
                    first = type(e).__name__
                f.write("%.3f %s %d %s\n" % (time.monotonic() - t0, p, status, first))
                # Paced (about 150 requests/s at most): the machine is shared.
                time.sleep(0.005 if status else 0.05)


if __name__ == "__main__":
    main()
