/* leader: leader election through a coordination.k8s.io/v1 Lease, with
 * client-go's rules and timings.
 *
 * Every retry period a candidate reads the Lease and takes it when it is
 * free (no holder) or expired; the leader renews it (a PUT carrying the
 * resourceVersion it last saw, so two writers cannot both win: 409 means
 * read again). Expiry is judged with the local monotonic clock only: a
 * candidate remembers when IT last saw the Lease record change and counts
 * leaseDurationSeconds from there, so clocks of other hosts never matter.
 * A leader whose renewals have not succeeded for the renew deadline steps
 * down (before the lease can expire for the others). On shutdown the leader
 * releases the Lease (holder cleared, duration 1 s) so a standby takes over
 * at its next retry instead of waiting out the lease.
 *
 * Metric: leader_election_master_status{name=<lease name>} 1 while leading.
 * Main loop only. */
#ifndef ENVOY_ROUTER_LEADER_H
#define ENVOY_ROUTER_LEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kube.h"
#include "timers.h"

struct leader;

/* client-go's defaults (LeaderElectionConfig of controller-runtime). */
#define LEADER_LEASE_SECONDS 15
#define LEADER_RENEW_DEADLINE_MS 10000
#define LEADER_RETRY_MS 2000

struct leader_options {
    const char *namespace;      /* of the Lease */
    const char *name;           /* of the Lease (--leader-election-id) */
    const char *identity;       /* holderIdentity written when leading */
    int lease_seconds;          /* 0: LEADER_LEASE_SECONDS */
    int64_t renew_deadline_ms;  /* 0: LEADER_RENEW_DEADLINE_MS */
    int64_t retry_ms;           /* 0: LEADER_RETRY_MS */
};

/* Called when leadership is gained (true) or lost (false). */
typedef void (*leader_change_fn)(void *arg, bool leading);

/* Called once when a release (see leader_release) has an answer. */
typedef void (*leader_released_fn)(void *arg);

/* New elector, idle until leader_start; the Lease's JSON is read and built
 * by `c` (core_lease_parse, core_lease_body). Strings are copied. NULL when
 * out of memory or an option is missing (namespace, name or identity empty). */
struct leader *leader_new(struct kube *k, struct core *c, struct timers *t,
                          const struct leader_options *o, leader_change_fn on_change, void *arg);

/* Cancels its call and timer and frees (without releasing the Lease);
 * leader_free(NULL) does nothing. Free it before the kube client, the core
 * and the timers. */
void leader_free(struct leader *l);

/* Starts campaigning: a first attempt now, then one every retry period. */
void leader_start(struct leader *l);

/* True while this process holds the Lease. */
bool leader_is_leader(const struct leader *l);

/* Stops campaigning. When leading, also gives the Lease up with a PUT that
 * clears holderIdentity and sets leaseDurationSeconds 1 (client-go's
 * ReleaseOnCancel), steps down, and calls done(arg) when the API server has
 * answered: returns 0 then. Returns -1 when there was nothing to release
 * (done is not called). */
int leader_release(struct leader *l, leader_released_fn done, void *arg);

/* --- pure decisions (exported for the tests) ------------------------------ */

/* A record is the part of a Lease's spec that election reads and writes:
 * struct core_lease (core.h), read and built by the core state. */

/* True when the two records differ in any field. */
bool leader_record_changed(const struct core_lease *a, const struct core_lease *b);

/* What a candidate knows of the Lease: the record last read and the local
 * monotonic time at which it was first seen in that state. */
struct leader_observation {
    struct core_lease record;
    bool have;
    int64_t observed_ms;
};

/* Notes a record read at now_ms: the observed time moves only when the
 * record changed (client-go's rule), so the remote timestamps inside it are
 * never compared with the local clock. */
void leader_observe(struct leader_observation *o, const struct core_lease *rec,
                    int64_t now_ms);

/* True when a lease last seen changing at observed_ms (local monotonic)
 * with the given duration has run out at now_ms. */
bool leader_lease_expired(int64_t now_ms, int64_t observed_ms, int lease_seconds);

/* True when `me` may write itself into the Lease now: nobody holds it, `me`
 * already holds it, or the holder's lease expired (observed locally). */
bool leader_should_acquire(int64_t now_ms, int64_t observed_ms, int lease_seconds,
                           const char *holder, const char *me);

/* True when a leader whose last successful renewal was sent at last_renew_ms
 * must stop leading at now_ms. */
bool leader_should_step_down(int64_t now_ms, int64_t last_renew_ms, int64_t renew_deadline_ms);

/* The record `me` writes given the observed one: a renewal keeps acquireTime
 * and leaseTransitions; a takeover sets acquireTime to `now_text` and counts
 * one more transition. renewTime is always `now_text`. */
void leader_record_next(const struct core_lease *observed, bool have_observed,
                        const char *me, int lease_seconds, const char *now_text,
                        struct core_lease *out);

/* Formats a wall-clock time (seconds since the epoch) as a Kubernetes
 * MicroTime, "2006-01-02T15:04:05.000000Z", into buf (>= 32 bytes). */
void leader_micro_time(double wall, char *buf, size_t len);

/* The default holder identity: "<hostname>_<16 random hex digits>", written
 * into buf. Returns 0, or -1 when buf is too small. */
int leader_default_identity(char *buf, size_t len);

#endif
