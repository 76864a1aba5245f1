/* ddn — a strict JSON validator and pull cursor (see json_impl.h).
 *
 * The validator is an explicit state machine with a stack of open containers (capped), so its
 * stack use does not depend on the input. The cursor functions trust a validated text but still
 * never read past its end, so a caller mistake cannot turn into an out-of-bounds read.
 */
#include <stdio.h>
#include <string.h>

#include "json_impl.h"

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *ddn_json_type_name(ddn_json_type t)
{
    switch (t) {
    case DDN_JSON_NULL: return "null";
    case DDN_JSON_BOOL: return "a boolean";
    case DDN_JSON_NUMBER: return "a number";
    case DDN_JSON_STRING: return "a string";
    case DDN_JSON_ARRAY: return "an array";
    case DDN_JSON_OBJECT: return "an object";
    default: return "nothing";
    }
}

/* Length of the well-formed UTF-8 sequence at p (n bytes available), or 0 (RFC 3629 table). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
        else if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

bool ddn_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* ---- validation ------------------------------------------------------------------------------- */
typedef struct vstate {
    const char *s;
    size_t len, pos;
    char *err;
    size_t err_size;
} vstate;

static bool fail(vstate *v, const char *what)
{
    if (v->pos >= v->len)
        snprintf(v->err, v->err_size, "%s, at the end of the text (byte %zu)", what, v->pos);
    else
        snprintf(v->err, v->err_size, "%s, at byte %zu", what, v->pos);
    return false;
}

static void skip_ws(const char *s, size_t len, size_t *pos)
{
    while (*pos < len && is_ws(s[*pos])) (*pos)++;
}

/* Reads 4 hex digits at s[pos]; -1 when they are not there. */
static long read_hex4(const char *s, size_t len, size_t pos)
{
    if (len - pos < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(s[pos + (size_t)i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool check_string(vstate *v)
{
    const char *s = v->s;
    v->pos++; /* opening quote */
    for (;;) {
        if (v->pos >= v->len) return fail(v, "unterminated string");
        unsigned char c = (unsigned char)s[v->pos];
        if (c == '"') {
            v->pos++;
            return true;
        }
        if (c < 0x20) return fail(v, "unescaped control character in string");
        if (c != '\\') {
            size_t k = utf8_seq((const unsigned char *)s + v->pos, v->len - v->pos);
            if (!k) return fail(v, "invalid UTF-8 in string");
            v->pos += k;
            continue;
        }
        if (v->pos + 1 >= v->len) return fail(v, "unterminated string");
        char e = s[v->pos + 1];
        if (e && strchr("\"\\/bfnrt", e)) {
            v->pos += 2;
            continue;
        }
        if (e != 'u') return fail(v, "invalid escape in string");
        long cp = read_hex4(s, v->len, v->pos + 2);
        if (cp < 0) return fail(v, "invalid \\u escape (needs 4 hex digits)");
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(v, "lone low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = (v->len - v->pos >= 12 && s[v->pos + 6] == '\\' && s[v->pos + 7] == 'u')
                          ? read_hex4(s, v->len, v->pos + 8)
                          : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail(v, "lone high surrogate in \\u escape");
            v->pos += 6;
        }
        v->pos += 6;
    }
}

static bool check_number(vstate *v)
{
    const char *s = v->s;
    size_t n = v->len;
    if (s[v->pos] == '-') v->pos++;
    if (v->pos >= n || !is_digit(s[v->pos])) return fail(v, "invalid number: digit expected");
    if (s[v->pos] == '0') {
        v->pos++;
        if (v->pos < n && is_digit(s[v->pos])) return fail(v, "invalid number: leading zero");
    } else
        while (v->pos < n && is_digit(s[v->pos])) v->pos++;
    if (v->pos < n && s[v->pos] == '.') {
        v->pos++;
        if (v->pos >= n || !is_digit(s[v->pos]))
            return fail(v, "invalid number: digit expected after '.'");
        while (v->pos < n && is_digit(s[v->pos])) v->pos++;
    }
    if (v->pos < n && (s[v->pos] == 'e' || s[v->pos] == 'E')) {
        v->pos++;
        if (v->pos < n && (s[v->pos] == '+' || s[v->pos] == '-')) v->pos++;
        if (v->pos >= n || !is_digit(s[v->pos]))
            return fail(v, "invalid number: digit expected in exponent");
        while (v->pos < n && is_digit(s[v->pos])) v->pos++;
    }
    return true;
}

static bool check_literal(vstate *v, const char *word)
{
    size_t k = strlen(word);
    if (v->len - v->pos < k || memcmp(v->s + v->pos, word, k) != 0)
        return fail(v, "invalid literal (expected true, false or null)");
    v->pos += k;
    return true;
}

bool ddn_json_validate(const char *s, size_t len, int max_depth, char *err, size_t err_size)
{
    enum { VALUE, MEMBER, AFTER } state = VALUE;
    char stack[256]; /* '{' or '[' per open container */
    int depth = 0;
    vstate v = {s, len, 0, err, err_size};
    if (max_depth > (int)sizeof stack) max_depth = (int)sizeof stack;
    if (err_size) err[0] = '\0';
    for (;;) {
        skip_ws(s, len, &v.pos);
        if (state == VALUE) {
            if (v.pos >= len) return fail(&v, "unexpected end of text, expected a value");
            char c = s[v.pos];
            bool ok = true;
            state = AFTER;
            if (c == '{' || c == '[') {
                if (depth >= max_depth) {
                    char what[64];
                    snprintf(what, sizeof what, "nesting deeper than %d levels", max_depth);
                    return fail(&v, what);
                }
                stack[depth++] = c;
                v.pos++;
                skip_ws(s, len, &v.pos);
                if (v.pos < len && s[v.pos] == (c == '{' ? '}' : ']')) {
                    v.pos++;
                    depth--;
                } else
                    state = c == '{' ? MEMBER : VALUE;
            } else if (c == '"') ok = check_string(&v);
            else if (c == '-' || is_digit(c)) ok = check_number(&v);
            else if (c == 't') ok = check_literal(&v, "true");
            else if (c == 'f') ok = check_literal(&v, "false");
            else if (c == 'n') ok = check_literal(&v, "null");
            else return fail(&v, "unexpected character, expected a value");
            if (!ok) return false;
        } else if (state == MEMBER) {
            if (v.pos >= len || s[v.pos] != '"') return fail(&v, "expected a string key");
            if (!check_string(&v)) return false;
            skip_ws(s, len, &v.pos);
            if (v.pos >= len || s[v.pos] != ':') return fail(&v, "expected ':' after key");
            v.pos++;
            state = VALUE;
        } else {
            if (depth == 0) {
                if (v.pos != len) return fail(&v, "trailing characters after the JSON value");
                return true;
            }
            char open = stack[depth - 1];
            if (v.pos < len && s[v.pos] == ',') {
                v.pos++;
                state = open == '{' ? MEMBER : VALUE;
            } else if (v.pos < len && s[v.pos] == (open == '{' ? '}' : ']')) {
                v.pos++;
                depth--;
            } else
                return fail(&v, open == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
}

/* ---- cursor ----------------------------------------------------------------------------------- */
static char cur(const ddn_json *j) { return j->pos < j->len ? j->s[j->pos] : '\0'; }

ddn_json_type ddn_json_peek(ddn_json *j)
{
    skip_ws(j->s, j->len, &j->pos);
    switch (cur(j)) {
    case '{': return DDN_JSON_OBJECT;
    case '[': return DDN_JSON_ARRAY;
    case '"': return DDN_JSON_STRING;
    case 't': case 'f': return DDN_JSON_BOOL;
    case 'n': return DDN_JSON_NULL;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': return DDN_JSON_NUMBER;
    default: return DDN_JSON_END;
    }
}

void ddn_json_enter(ddn_json *j)
{
    skip_ws(j->s, j->len, &j->pos);
    if (cur(j) == '{' || cur(j) == '[') j->pos++;
}

bool ddn_json_next(ddn_json *j, bool *first)
{
    skip_ws(j->s, j->len, &j->pos);
    char c = cur(j);
    if (c == '}' || c == ']' || c == '\0') {
        if (c) j->pos++;
        return false;
    }
    if (!*first) {
        if (c != ',') return false; /* not after validation; never loop in place */
        j->pos++;
    }
    *first = false;
    skip_ws(j->s, j->len, &j->pos);
    return true;
}

/* Appends code point cp as UTF-8; returns the bytes written. */
static size_t put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t ddn_json_string(ddn_json *j, char *out)
{
    size_t n = 0;
    skip_ws(j->s, j->len, &j->pos);
    if (cur(j) != '"') {
        out[0] = '\0';
        return 0;
    }
    j->pos++;
    while (j->pos < j->len && j->s[j->pos] != '"') {
        char c = j->s[j->pos];
        if (c != '\\') {
            out[n++] = c;
            j->pos++;
            continue;
        }
        char e = j->pos + 1 < j->len ? j->s[j->pos + 1] : '\0';
        j->pos += 2;
        switch (e) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            long cp = read_hex4(j->s, j->len, j->pos);
            if (cp < 0) cp = 0xFFFD; /* unreachable after validation */
            else j->pos += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && j->pos + 6 <= j->len && j->s[j->pos] == '\\' &&
                j->s[j->pos + 1] == 'u') {
                long lo = read_hex4(j->s, j->len, j->pos + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    j->pos += 6;
                }
            }
            n += put_utf8(out + n, (unsigned long)cp);
            break;
        }
        default: out[n++] = e; break; /* \" \\ \/ */
        }
    }
    if (j->pos < j->len) j->pos++; /* closing quote */
    out[n] = '\0';
    return n;
}

size_t ddn_json_key(ddn_json *j, char *out)
{
    size_t n = ddn_json_string(j, out);
    skip_ws(j->s, j->len, &j->pos);
    if (cur(j) == ':') j->pos++;
    return n;
}

void ddn_json_number(ddn_json *j, ddn_json_num *num)
{
    skip_ws(j->s, j->len, &j->pos);
    memset(num, 0, sizeof *num);
    num->text = j->s + j->pos;
    num->is_int = true;
    if (cur(j) == '-') {
        num->neg = true;
        j->pos++;
    }
    while (is_digit(cur(j))) {
        unsigned d = (unsigned)(cur(j) - '0');
        if (num->mag > (UINT64_MAX - d) / 10) num->overflow = true;
        else num->mag = num->mag * 10 + d;
        j->pos++;
    }
    while (is_digit(cur(j)) || cur(j) == '.' || cur(j) == 'e' || cur(j) == 'E' || cur(j) == '+' ||
           cur(j) == '-') {
        num->is_int = false;
        j->pos++;
    }
    num->len = (size_t)(j->s + j->pos - num->text);
}
