/* pool: a lua_Alloc for a long-lived Lua state that holds many small
 * objects (the core's caches). Blocks up to POOL_MAX_BLOCK bytes come from
 * size classes (8 or 16 bytes apart) carved from 64 KiB pages mapped on their own:
 * no per-block header, pages touched only as far as they were used, and a
 * page whose blocks are all free goes back to the system at once. Larger
 * blocks go to malloc. Not thread-safe: one pool per Lua state. */
#ifndef ENVOY_ROUTER_POOL_H
#define ENVOY_ROUTER_POOL_H

#include <stddef.h>

#define POOL_MAX_BLOCK 1024

struct pool;

/* New empty pool; NULL when out of memory. */
struct pool *pool_new(void);

/* Unmaps every page; pool_free(NULL) does nothing. Blocks still live in the
 * pool become invalid (call it after lua_close). */
void pool_free(struct pool *p);

/* The lua_Alloc contract (ud is the pool): nsize 0 frees ptr and returns
 * NULL; otherwise returns a block of nsize bytes holding the first
 * min(osize, nsize) bytes of ptr (osize is the block's size when ptr is not
 * NULL), or NULL when out of memory (ptr then stays valid). */
void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Orders each class's pages with room fullest first, so that new blocks
 * fill the pages a burst left nearly full and the emptiest ones can drain
 * and be unmapped. For a quiet moment (after a collection): it costs a
 * sort of the pages with room. */
void pool_tidy(struct pool *p);

/* Pages mapped now (each POOL_PAGE_BYTES of address space). */
size_t pool_pages(const struct pool *p);

/* Bytes of the pages mapped now that blocks have touched (the pool's share
 * of the resident set, at most). */
size_t pool_touched(const struct pool *p);

#endif
