/* dirwatch: notices changes under the scripts directory with inotify.
 *
 * Watches the directory, every directory below it (following symlinks, so a
 * ConfigMap's `..data` link and the directory it points at are both
 * covered) and the directory's parent for its own name. The watches are
 * set up afresh after every change, so a directory that is deleted and
 * created again, a `..data` link swapped to a new directory, or a
 * --scripts-dir that is itself such a link keep being watched. Main loop
 * only. */
#ifndef ENVOY_ROUTER_DIRWATCH_H
#define ENVOY_ROUTER_DIRWATCH_H

#include <stdbool.h>
#include <stddef.h>

struct dirwatch;

/* Starts watching `dir` (copied). Returns NULL with one line in err when
 * inotify is unavailable or `dir` cannot be watched now. */
struct dirwatch *dirwatch_new(const char *dir, char *err, size_t errlen);

/* Stops and frees; dirwatch_free(NULL) does nothing. */
void dirwatch_free(struct dirwatch *w);

/* The descriptor to poll for POLLIN (non-blocking). */
int dirwatch_fd(const struct dirwatch *w);

/* Reads every pending event; true when any concerns the directory's
 * contents (then the watches are set up again). False when nothing
 * relevant happened. */
bool dirwatch_changed(struct dirwatch *w);

/* Watches held now (the directory, those below it and the parent). */
size_t dirwatch_count(const struct dirwatch *w);

#endif
