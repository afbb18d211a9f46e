/* pool: see pool.h. A page is aligned to its size, so a block finds its page
 * by masking its address; the page's header keeps its free blocks, a bump
 * pointer to the part never used, and how many blocks are live. Each class
 * keeps a list of the pages with room; a full page is in no list. */
#include "pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "list.h"

/* Pages are mapped, not malloc'd, so LeakSanitizer would not look inside
 * them for pointers to the blocks above POOL_MAX_BLOCK that Lua keeps in
 * malloc: each page is a root region for it while it is mapped. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define POOL_LSAN 1
#endif
#endif
#ifdef POOL_LSAN
#include <sanitizer/lsan_interface.h>
#define lsan_root(pg) __lsan_register_root_region((pg), POOL_PAGE_BYTES)
#define lsan_unroot(pg) __lsan_unregister_root_region((pg), POOL_PAGE_BYTES)
#else
#define lsan_root(pg) ((void)(pg))
#define lsan_unroot(pg) ((void)(pg))
#endif

#define POOL_PAGE_BYTES ((size_t)64 * 1024)
/* Classes 8 bytes apart up to 256 bytes (Lua's strings, tables and small
 * node arrays), 16 apart above (the longer strings, e.g. a pod's
 * projection): at most 15 bytes of a block unused, less than malloc's. */
#define POOL_GRAIN 8
#define POOL_SMALL 256
#define POOL_COARSE 16
#define POOL_CLASSES (POOL_SMALL / POOL_GRAIN + (POOL_MAX_BLOCK - POOL_SMALL) / POOL_COARSE)
#define POOL_OS_PAGE ((size_t)4096)
#define POOL_HEADER 64 /* sizeof(struct page), rounded up: keeps blocks 16-aligned at the start */

struct page {
    struct list_node node;    /* in its class's list of pages with room */
    void *free;               /* freed blocks, each holding the next */
    char *bump;               /* first block never handed out */
    size_t used;              /* live blocks */
    size_t size;              /* block size */
    int listed;               /* in the list of its class */
    unsigned dropped;         /* bit k: system page k given back (see pool_tidy) */
};

_Static_assert(sizeof(struct page) <= POOL_HEADER, "page header fits");

struct pool {
    struct list room[POOL_CLASSES];
    size_t pages;
    size_t touched; /* bytes between page starts and their bump pointers */
    size_t dropped_bytes; /* of those, given back by pool_tidy */
};

struct pool *pool_new(void)
{
    return calloc(1, sizeof(struct pool));
}

static size_t class_of(size_t n)
{
    if (n <= POOL_SMALL)
        return (n + POOL_GRAIN - 1) / POOL_GRAIN - 1;
    return POOL_SMALL / POOL_GRAIN + (n - POOL_SMALL - 1) / POOL_COARSE;
}

static size_t size_of(size_t cls)
{
    if (cls < POOL_SMALL / POOL_GRAIN)
        return (cls + 1) * POOL_GRAIN;
    return POOL_SMALL + (cls - POOL_SMALL / POOL_GRAIN + 1) * POOL_COARSE;
}

static char *page_end(struct page *pg)
{
    return (char *)pg + POOL_PAGE_BYTES;
}

static void unlink_page(struct pool *p, struct page *pg)
{
    list_unlink(&p->room[class_of(pg->size)], &pg->node);
    pg->listed = 0;
}

static void link_page(struct pool *p, struct page *pg)
{
    list_push_front(&p->room[class_of(pg->size)], &pg->node);
    pg->listed = 1;
}

static struct page *page_at(struct list_node *n)
{
    return list_entry(n, struct page, node);
}

/* A fresh page aligned to its size: map twice the size, unmap the ends. */
static struct page *map_page(struct pool *p, size_t size)
{
    size_t span = 2 * POOL_PAGE_BYTES;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t at = ((uintptr_t)m + POOL_PAGE_BYTES - 1) & ~(uintptr_t)(POOL_PAGE_BYTES - 1);
    char *start = (char *)at;
    if (start > m)
        munmap(m, (size_t)(start - m));
    if (start + POOL_PAGE_BYTES < m + span)
        munmap(start + POOL_PAGE_BYTES, (size_t)(m + span - (start + POOL_PAGE_BYTES)));
    struct page *pg = (struct page *)(void *)start;
    lsan_root(pg);
    pg->bump = start + POOL_HEADER;
    pg->size = size;
    p->pages++;
    p->touched += POOL_HEADER;
    link_page(p, pg);
    return pg;
}

static void unmap_page(struct pool *p, struct page *pg)
{
    if (pg->listed)
        unlink_page(p, pg);
    p->pages--;
    p->touched -= (size_t)(pg->bump - (char *)pg);
    p->dropped_bytes -= (size_t)__builtin_popcount(pg->dropped) * POOL_OS_PAGE;
    lsan_unroot(pg);
    munmap(pg, POOL_PAGE_BYTES);
}

/* Blocks first and last (indices) that overlap system page k of pg. */
static void os_page_blocks(const struct page *pg, size_t k, size_t *first, size_t *last)
{
    size_t start = k * POOL_OS_PAGE, end = start + POOL_OS_PAGE;
    *first = (start - POOL_HEADER) / pg->size;
    *last = (end - 1 - POOL_HEADER) / pg->size;
}

/* True when block i overlaps a system page that is given back. */
static int block_dropped(const struct page *pg, size_t i)
{
    size_t from = POOL_HEADER + i * pg->size, to = from + pg->size - 1;
    for (size_t k = from / POOL_OS_PAGE; k <= to / POOL_OS_PAGE; k++)
        if (pg->dropped & (1u << k))
            return 1;
    return 0;
}

/* Takes back the lowest system page given back: its blocks that overlap no
 * other page given back join the free list (touching the page again). */
static void revive(struct pool *p, struct page *pg)
{
    p->dropped_bytes -= POOL_OS_PAGE;
    size_t k = (size_t)__builtin_ctz(pg->dropped), first, last;
    pg->dropped &= ~(1u << k);
    os_page_blocks(pg, k, &first, &last);
    for (size_t i = last + 1; i-- > first;) {
        if (block_dropped(pg, i))
            continue;
        char *b = (char *)pg + POOL_HEADER + i * pg->size;
        memcpy(b, &pg->free, sizeof pg->free);
        pg->free = b;
    }
}

static void *take(struct pool *p, size_t n)
{
    size_t size = size_of(class_of(n));
    struct page *pg = page_at(p->room[class_of(n)].head);
    if (pg == NULL && (pg = map_page(p, size)) == NULL)
        return NULL;
    void *b;
    if (pg->free == NULL && pg->dropped != 0)
        revive(p, pg);
    if (pg->free != NULL) {
        b = pg->free;
        memcpy(&pg->free, b, sizeof pg->free);
    } else {
        b = pg->bump;
        pg->bump += size;
        p->touched += size;
    }
    pg->used++;
    if (pg->free == NULL && pg->dropped == 0 && pg->bump + size > page_end(pg))
        unlink_page(p, pg);
    return b;
}

static void give(struct pool *p, void *b)
{
    struct page *pg = (struct page *)((uintptr_t)b & ~(uintptr_t)(POOL_PAGE_BYTES - 1));
    memcpy(b, &pg->free, sizeof pg->free);
    pg->free = b;
    pg->used--;
    if (pg->used == 0) {
        /* Keep the class's only page with room, so that one block freed
         * and taken again does not map and unmap a page each time. */
        struct list_node *head = p->room[class_of(pg->size)].head;
        if (pg->listed ? (head != &pg->node || pg->node.next != NULL) : head != NULL) {
            unmap_page(p, pg);
            return;
        }
    }
    if (!pg->listed)
        link_page(p, pg);
}

void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct pool *p = ud;
    if (ptr == NULL)
        osize = 0; /* Lua passes the object's type there */
    int in_old = ptr != NULL && osize <= POOL_MAX_BLOCK;
    if (nsize == 0) {
        if (in_old)
            give(p, ptr);
        else
            free(ptr);
        return NULL;
    }
    if (nsize > POOL_MAX_BLOCK) {
        if (ptr == NULL || !in_old)
            return realloc(ptr, nsize);
        void *nb = malloc(nsize);
        if (nb != NULL) {
            memcpy(nb, ptr, osize);
            give(p, ptr);
        }
        return nb;
    }
    if (in_old && class_of(osize) == class_of(nsize))
        return ptr;
    void *nb = take(p, nsize);
    if (nb != NULL && ptr != NULL) {
        memcpy(nb, ptr, osize < nsize ? osize : nsize);
        if (in_old)
            give(p, ptr);
        else
            free(ptr);
    }
    return nb;
}

static int fuller_first(const void *a, const void *b)
{
    const struct page *x = *(struct page *const *)a, *y = *(struct page *const *)b;
    return (x->used < y->used) - (x->used > y->used);
}

/* The free block after b on its page's free list (stored in b's bytes). */
static char *next_free(const char *b)
{
    char *next;
    memcpy(&next, b, sizeof next);
    return next;
}

/* Gives back (MADV_DONTNEED) each system page of pg, below its bump
 * pointer and past the header's, whose every block is free; their blocks
 * leave the free list until revive() takes the page back. */
static void drop_free_pages(struct pool *p, struct page *pg)
{
    enum { MAX_BLOCKS = (POOL_PAGE_BYTES - POOL_HEADER) / POOL_GRAIN };
    unsigned char is_free[MAX_BLOCKS / 8 + 1];
    size_t n = (size_t)(pg->bump - ((char *)pg + POOL_HEADER)) / pg->size;
    memset(is_free, 0, sizeof is_free);
    for (char *b = pg->free; b != NULL; b = next_free(b)) {
        size_t i = (size_t)(b - ((char *)pg + POOL_HEADER)) / pg->size;
        is_free[i / 8] |= (unsigned char)(1u << (i % 8));
    }
    unsigned now = 0;
    size_t used_to = (size_t)(pg->bump - (char *)pg);
    for (size_t k = 1; (k + 1) * POOL_OS_PAGE <= used_to; k++) {
        if (pg->dropped & (1u << k))
            continue;
        size_t first, last, i;
        os_page_blocks(pg, k, &first, &last);
        for (i = first; i <= last && i < n; i++)
            if (!(is_free[i / 8] & (1u << (i % 8))) && !block_dropped(pg, i))
                break;
        if (i > last || i >= n)
            now |= 1u << k;
    }
    if (now == 0)
        return;
    pg->dropped |= now;
    pg->free = NULL;
    for (size_t i = n; i-- > 0;) {
        if (!(is_free[i / 8] & (1u << (i % 8))) || block_dropped(pg, i))
            continue;
        char *b = (char *)pg + POOL_HEADER + i * pg->size;
        memcpy(b, &pg->free, sizeof pg->free);
        pg->free = b;
    }
    for (size_t k = 1; k < POOL_PAGE_BYTES / POOL_OS_PAGE; k++)
        if (now & (1u << k)) {
            madvise((char *)pg + k * POOL_OS_PAGE, POOL_OS_PAGE, MADV_DONTNEED);
            p->dropped_bytes += POOL_OS_PAGE;
        }
}

void pool_tidy(struct pool *p)
{
    for (size_t i = 0; i < POOL_CLASSES; i++)
        for (struct list_node *n = p->room[i].head; n != NULL; n = n->next)
            drop_free_pages(p, page_at(n));
    for (size_t i = 0; i < POOL_CLASSES; i++) {
        size_t n = 0;
        for (struct list_node *at = p->room[i].head; at != NULL; at = at->next)
            n++;
        struct page **all;
        if (n < 2 || (all = malloc(n * sizeof *all)) == NULL)
            continue; /* out of memory: the order stays, nothing is lost */
        n = 0;
        for (struct list_node *at = p->room[i].head; at != NULL; at = at->next)
            all[n++] = page_at(at);
        qsort(all, n, sizeof *all, fuller_first);
        p->room[i] = (struct list){0};
        while (n > 0)
            link_page(p, all[--n]);
        free(all);
    }
}

size_t pool_pages(const struct pool *p)
{
    return p->pages;
}

size_t pool_touched(const struct pool *p)
{
    return p->touched - p->dropped_bytes;
}

void pool_free(struct pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < POOL_CLASSES; i++)
        while (p->room[i].head != NULL)
            unmap_page(p, page_at(p->room[i].head));
    /* Full pages are in no list: only Lua's leftovers could be there, and
     * lua_close frees every object, so none remain. */
    free(p);
}
