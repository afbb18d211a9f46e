/* Fuzz target: HTTP requests to the metrics and health server
 * (host/server.c on libmicrohttpd), over a real loopback socket.
 *
 * The server starts once (both endpoint sets on one port); each input is
 * sent as the raw bytes of one connection, whose write side is then shut.
 * Invariants: no sanitizer report; whatever comes back starts as an HTTP
 * response; the server still answers GET /healthz afterwards.
 *
 *   make fuzz-build && build/fuzz/fuzz_http host/fuzz/corpus/http */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct server *srv;
static int port;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_output(fopen("/dev/null", "w"));   /* quiet */
    srv = server_start("127.0.0.1:0", "127.0.0.1:0", 3600);
    if (srv == NULL)
        abort();
    port = server_metrics_port(srv);
    server_heartbeat(srv);
    server_set_ready(srv, false, "fuzzing");
    return 0;
}

/* Sends one connection's bytes; returns what came back (up to cap) within
 * `wait_ms`. The connection is then reset, so an incomplete request does
 * not hold one of the server's connection slots until its timeout. */
static size_t exchange(const uint8_t *data, size_t size, char *reply, size_t cap, int wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        abort();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = wait_ms / 1000, .tv_usec = (wait_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;                      /* the server may close early: fine */
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    /* Wait up to wait_ms for the first bytes, then take what follows
     * within 5 ms gaps: loopback answers arrive together. */
    size_t got = 0;
    int timeout = wait_ms;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout) <= 0)
            break;
        ssize_t n = recv(fd, reply + got, cap - 1 - got, 0);
        if (n <= 0 || (got += (size_t)n) >= cap - 1)
            break;
        timeout = 5;
    }
    reply[got] = '\0';
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char reply[1 << 16];
    size_t got = exchange(data, size, reply, sizeof reply, 30);
    if (got > 0 && strncmp(reply, "HTTP/1.", got < 7 ? got : 7) != 0)
        abort();                        /* only HTTP ever comes back */
    static unsigned n;
    if (++n % 64 == 0) {                /* still alive and serving */
        static const char probe[] = "GET /healthz HTTP/1.0\r\n\r\n";
        got = exchange((const uint8_t *)probe, sizeof probe - 1, reply, sizeof reply, 5000);
        if (got < 12 || strncmp(reply + 8, " 200", 4) != 0) {
            fprintf(stderr, "fuzz_http: /healthz answered: %.80s\n", reply);
            abort();
        }
    }
    return 0;
}
