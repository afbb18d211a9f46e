/* selector: see selector.h. */
#include "selector.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

#define MAX_TOKEN 320   /* a qualified key is at most 253 + 1 + 63 bytes */

enum tok { T_END, T_IDENT, T_NOT, T_EQ, T_DEQ, T_NEQ, T_OPEN, T_CLOSE, T_COMMA, T_GT, T_LT,
           T_BAD };

struct lexer {
    const char *s;
    size_t pos;
    enum tok tok;
    char text[MAX_TOKEN + 1];
    size_t at;                  /* where the current token starts */
};

/* As the API server's lexer: these end an identifier; blanks separate. */
static bool special(char c)
{
    return c == '!' || c == '=' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<';
}

/* The API server's blanks: space, tab, CR, LF (not \v or \f, as isspace). */
static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void next(struct lexer *lx)
{
    const char *s = lx->s;
    while (blank(s[lx->pos]))
        lx->pos++;
    lx->at = lx->pos;
    char c = s[lx->pos];
    lx->text[0] = '\0';
    if (c == '\0') {
        lx->tok = T_END;
        return;
    }
    if (special(c)) {
        char d = s[lx->pos + 1];
        lx->pos++;
        switch (c) {
        case '!': lx->tok = d == '=' ? (lx->pos++, T_NEQ) : T_NOT; return;
        case '=': lx->tok = d == '=' ? (lx->pos++, T_DEQ) : T_EQ; return;
        case '(': lx->tok = T_OPEN; return;
        case ')': lx->tok = T_CLOSE; return;
        case ',': lx->tok = T_COMMA; return;
        case '>': lx->tok = T_GT; return;
        default: lx->tok = T_LT; return;
        }
    }
    size_t n = 0;
    while (s[lx->pos] && !special(s[lx->pos]) && !blank(s[lx->pos])) {
        if (n == MAX_TOKEN) {
            lx->tok = T_BAD;
            return;
        }
        lx->text[n++] = s[lx->pos++];
    }
    lx->text[n] = '\0';
    lx->tok = T_IDENT;
}

static int fail(struct lexer *lx, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "label selector \"%s\": %s at offset %zu", lx->s, what, lx->at);
    return -1;
}

/* Digits only: the value must also be a label value, so no sign (the API
 * server refuses "n<-2"). Whether it fits in an int64 is left to the API
 * server, whose LIST with the selector is the last check before a swap. */
static bool integer(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* The values of `in`/`notin` after "(": value (',' value)* ')'; an empty
 * list means the empty value, as the API server reads it. */
static int values(struct lexer *lx, char *err, size_t errlen)
{
    next(lx);
    if (lx->tok == T_CLOSE)
        return 0;
    for (;;) {
        if (lx->tok == T_IDENT) {
            if (!names_label_value(lx->text))
                return fail(lx, err, errlen, "invalid label value");
            next(lx);
        }
        if (lx->tok == T_CLOSE)
            return 0;
        if (lx->tok != T_COMMA)
            return fail(lx, err, errlen, "expected ',' or ')' in a value list");
        next(lx);
    }
}

/* One requirement, the lexer on its first token; leaves the lexer on the
 * token after it. */
static int requirement(struct lexer *lx, char *err, size_t errlen)
{
    bool negated = lx->tok == T_NOT;
    if (negated)
        next(lx);
    if (lx->tok != T_IDENT)
        return fail(lx, err, errlen, "expected a label key");
    if (!names_label_key(lx->text))
        return fail(lx, err, errlen, "invalid label key");
    next(lx);
    if (negated || lx->tok == T_COMMA || lx->tok == T_END)
        return 0;                               /* key, !key */
    switch (lx->tok) {
    case T_EQ: case T_DEQ: case T_NEQ:
        next(lx);
        if (lx->tok == T_IDENT) {
            if (!names_label_value(lx->text))
                return fail(lx, err, errlen, "invalid label value");
            next(lx);
        }
        return 0;                               /* a missing value is the empty value */
    case T_GT: case T_LT:
        next(lx);
        if (lx->tok != T_IDENT || !integer(lx->text))
            return fail(lx, err, errlen, "expected an integer after '>' or '<'");
        next(lx);
        return 0;
    case T_IDENT:
        if (strcmp(lx->text, "in") != 0 && strcmp(lx->text, "notin") != 0)
            return fail(lx, err, errlen, "expected an operator (=, ==, !=, in, notin, >, <)");
        next(lx);
        if (lx->tok != T_OPEN)
            return fail(lx, err, errlen, "expected '(' after in/notin");
        if (values(lx, err, errlen) != 0)
            return -1;
        next(lx);
        return 0;
    default:
        return fail(lx, err, errlen, "expected an operator (=, ==, !=, in, notin, >, <)");
    }
}

int selector_check(const char *sel, char *err, size_t errlen)
{
    struct lexer lx = {.s = sel};
    next(&lx);
    if (lx.tok == T_END)
        return 0;
    for (;;) {
        if (lx.tok == T_BAD)
            return fail(&lx, err, errlen, "token too long");
        if (requirement(&lx, err, errlen) != 0)
            return -1;
        if (lx.tok == T_BAD)
            return fail(&lx, err, errlen, "token too long");
        if (lx.tok == T_END)
            return 0;
        if (lx.tok != T_COMMA)
            return fail(&lx, err, errlen, "expected ',' between requirements");
        next(&lx);
    }
}
