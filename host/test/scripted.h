/* A scripted transport (transport.h) for unit tests of the controllers:
 * every request and watch is recorded and stays open until the test
 * answers it (scripted_answer), feeds it (scripted_feed) or the controller
 * cancels it; the clock is a number the test moves. Answers and chunks
 * reach the controller exactly as the kube client delivers them (a data
 * callback that returns non-zero ends the stream with 200 "aborted").
 * Include after cmocka.h. */
#ifndef ENVOY_ROUTER_TEST_SCRIPTED_H
#define ENVOY_ROUTER_TEST_SCRIPTED_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

#define SCRIPTED_MAX 256

struct scripted_call {
    char method[8];
    char path[2048];
    char content_type[64];       /* "" when none given */
    char *body;                  /* the request body, or NULL; kept until scripted_free */
    bool watch;
    bool open;                   /* started, not answered or cancelled */
    bool cancelled;
    kube_done_fn done;
    kube_data_fn data;
    void *arg;
};

struct scripted {
    struct scripted_call calls[SCRIPTED_MAX];
    size_t n;                    /* calls started so far */
    size_t cancels;
    int64_t now;                 /* the controllers' clock */
};

static inline struct kube_call *scripted_start(struct scripted *s, const char *method,
                                               const char *path, const char *content_type,
                                               const char *body, size_t len,
                                               kube_done_fn done, void *arg)
{
    if (s->n == SCRIPTED_MAX)
        return NULL;
    struct scripted_call *c = &s->calls[s->n++];
    memset(c, 0, sizeof(*c));
    snprintf(c->method, sizeof(c->method), "%s", method);
    snprintf(c->path, sizeof(c->path), "%s", path);
    snprintf(c->content_type, sizeof(c->content_type), "%s", content_type ? content_type : "");
    if (body && !(c->body = strndup(body, len)))
        return NULL;
    c->open = true;
    c->done = done;
    c->arg = arg;
    return (struct kube_call *)c;
}

static inline struct kube_call *scripted_request(void *arg, const char *method,
                                                 const char *path, const char *content_type,
                                                 const char *body, size_t len,
                                                 kube_done_fn done, void *done_arg)
{
    return scripted_start(arg, method, path, content_type, body, len, done, done_arg);
}

static inline struct kube_call *scripted_watch(void *arg, const char *path, kube_data_fn data,
                                               kube_done_fn done, void *done_arg)
{
    struct kube_call *kc = scripted_start(arg, "GET", path, NULL, NULL, 0, done, done_arg);
    struct scripted_call *c = (struct scripted_call *)kc;
    if (c) {
        c->watch = true;
        c->data = data;
    }
    return kc;
}

static inline void scripted_cancel(void *arg, struct kube_call *kc)
{
    struct scripted *s = arg;
    struct scripted_call *c = (struct scripted_call *)kc;
    if (!c)
        return;
    assert_true(c->open);               /* never a call that already ended */
    c->open = false;
    c->cancelled = true;
    s->cancels++;
}

static inline int64_t scripted_now(void *arg)
{
    return ((struct scripted *)arg)->now;
}

static inline struct kube_transport scripted_transport(struct scripted *s)
{
    return (struct kube_transport){ scripted_request, scripted_watch, scripted_cancel,
                                    scripted_now, s };
}

/* Calls open now. */
static inline size_t scripted_open(const struct scripted *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->calls[i].open;
    return n;
}

/* The last call started (there must be one). */
static inline struct scripted_call *scripted_last(struct scripted *s)
{
    assert_true(s->n > 0);
    return &s->calls[s->n - 1];
}

/* Ends open call i with status, body and transport error (NULL: none). */
static inline void scripted_end(struct scripted *s, size_t i, long status, const char *body,
                                const char *error)
{
    assert_true(i < s->n);
    struct scripted_call *c = &s->calls[i];
    assert_true(c->open);
    kube_done_fn done = c->done;
    void *arg = c->arg;
    struct kube_response r = { status, body ? body : "", body ? strlen(body) : 0, error };
    c->open = false;
    done(arg, &r);
}

/* Answers open call i. */
static inline void scripted_answer(struct scripted *s, size_t i, long status, const char *body)
{
    scripted_end(s, i, status, body, NULL);
}

/* Feeds a chunk to open watch i; when the controller asks to stop, the
 * stream ends as the client ends it. Returns what data returned. */
static inline int scripted_feed(struct scripted *s, size_t i, const char *chunk)
{
    assert_true(i < s->n);
    struct scripted_call *c = &s->calls[i];
    assert_true(c->open && c->watch);
    int rc = c->data(c->arg, chunk, strlen(chunk));
    if (rc != 0)
        scripted_end(s, i, 200, NULL, "aborted");
    return rc;
}

/* Frees the bodies kept and forgets every call (end of a test). */
static inline void scripted_free(struct scripted *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->calls[i].body);
    s->n = 0;
    s->cancels = 0;
}

#endif
