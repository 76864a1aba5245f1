/* ddn — a strict JSON validator and pull cursor (internal; used by the safetensors reader).
 *
 * Two passes over a text held in memory. ddn_json_validate checks the whole text against RFC 8259
 * (UTF-8 strings, escapes incl. surrogate pairs, the number grammar, literals, only whitespace
 * after the value) without recursion and with a nesting cap, so a hostile "[[[[..." cannot
 * overflow the stack. The cursor then walks the validated text without building a tree, so memory
 * stays proportional to what the caller keeps. Tests: tests/test_safetensors.c.
 */
#ifndef DDN_JSON_IMPL_H
#define DDN_JSON_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ddn_json_type {
    DDN_JSON_END = 0, /* no value at the cursor (end of text or a closing bracket) */
    DDN_JSON_NULL,
    DDN_JSON_BOOL,
    DDN_JSON_NUMBER,
    DDN_JSON_STRING,
    DDN_JSON_ARRAY,
    DDN_JSON_OBJECT,
} ddn_json_type;

const char *ddn_json_type_name(ddn_json_type t); /* "array", "a string", ... for messages */

/* Checks that s[0, len) is exactly one JSON value surrounded by optional whitespace, nested at
 * most max_depth deep. On failure writes "what, at byte N" into err and returns false. */
bool ddn_json_validate(const char *s, size_t len, int max_depth, char *err, size_t err_size);

/* true when s[0, len) is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). */
bool ddn_utf8_valid(const char *s, size_t len);

/* A cursor over a text that passed ddn_json_validate. */
typedef struct ddn_json {
    const char *s;
    size_t len, pos;
} ddn_json;

/* A number as written: is_int when it has neither fraction nor exponent; then mag is |value|
 * unless overflow (more than 64 bits). text/len quote it for messages. */
typedef struct ddn_json_num {
    const char *text;
    size_t len;
    bool is_int, neg, overflow;
    uint64_t mag;
} ddn_json_num;

ddn_json_type ddn_json_peek(ddn_json *j); /* skips whitespace */
/* Containers: ddn_json_enter consumes '[' or '{'; then `bool first = true; while
 * (ddn_json_next(j, &first)) { ...read one item... }` visits the items and consumes the closer. */
void ddn_json_enter(ddn_json *j);
bool ddn_json_next(ddn_json *j, bool *first);
/* Decodes the string at the cursor into out, NUL-terminated, and returns its length in bytes.
 * The decoded text plus its NUL never exceeds the raw token (quotes included), so a buffer as
 * long as the whole text holds every string of it, one after another. */
size_t ddn_json_string(ddn_json *j, char *out);
/* An object member's key as above, then consumes the ':'. */
size_t ddn_json_key(ddn_json *j, char *out);
void ddn_json_number(ddn_json *j, ddn_json_num *num);

#endif
