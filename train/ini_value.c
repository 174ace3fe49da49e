// ini_value.c: quoting of INI values for inih (train/ini_value.h).
#include "train/ini_value.h"

#include "engine/base/error.h"

#include <string.h>

#define LINE_MAX_BYTES 160  // per written line, under inih's 199

// Bytes inih returns unchanged inside a value (not first or last if blank).
static int plain_byte(unsigned char c) { return c >= 0x20 && c < 0x7f && c != ';' && c != '#' && c != '"' && c != '\\'; }

static int needs_quotes(const char *key, const char *v) {
    size_t n = strlen(v);
    if (strlen(key) + 3 + n > LINE_MAX_BYTES) return 1;
    if (n && (v[0] == ' ' || v[n - 1] == ' ')) return 1;
    for (size_t i = 0; i < n; i++)
        if (!plain_byte((unsigned char)v[i])) return 1;
    return 0;
}

// The escaped form of byte c into out (at most 5 bytes); `edge`: first or last on its
// line, where inih would strip a blank.
static int escape(unsigned char c, int edge, char *out) {
    switch (c) {
    case '\\': return (int)(memcpy(out, "\\\\", 2), 2);
    case '"': return (int)(memcpy(out, "\\\"", 2), 2);
    case '\n': return (int)(memcpy(out, "\\n", 2), 2);
    case '\r': return (int)(memcpy(out, "\\r", 2), 2);
    case '\t': return (int)(memcpy(out, "\\t", 2), 2);
    }
    if (plain_byte(c) && !(edge && c == ' ')) return out[0] = (char)c, 1;
    return snprintf(out, 5, "\\x%02x", c);
}

int ini_value_write(FILE *f, const char *key, const char *value) {
    if (!needs_quotes(key, value)) return fprintf(f, "%s = %s\n", key, value) < 0 ? -1 : 0;
    fprintf(f, "%s = \"", key);
    size_t line = strlen(key) + 4;
    char e[6];
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        // A piece may not end with a blank: look at whether this byte ends its line.
        int n = escape(*p, 0, e);
        int last_here = line + (size_t)n + 5 > LINE_MAX_BYTES || !p[1];
        if (last_here) n = escape(*p, 1, e);
        fwrite(e, 1, (size_t)n, f);
        line += (size_t)n;
        if (p[1] && line + 5 > LINE_MAX_BYTES) {
            fputs("\n  ", f);  // continuation; its first byte is escaped as an edge
            line = 2;
            if (p[1] == ' ') {
                fputs("\\x20", f), line += 4, p++;
                if (!p[1]) break;
            }
        }
    }
    return fprintf(f, "\"\n") < 0 ? -1 : 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ini_value_feed(ini_value *v, const char *text, int continuation) {
    if (!continuation) {
        v->len = 0, v->open = 0;
        if (text[0] != '"') {
            size_t n = strlen(text);
            if (n > INI_VALUE_MAX) return mo_errorf("value longer than %d bytes", INI_VALUE_MAX);
            memcpy(v->buf, text, n + 1), v->len = n;
            return 0;
        }
        text++;
        v->open = 1;
    } else if (!v->open) {
        return mo_errorf("an indented line continues only a quoted value; remove the indent");
    }
    for (const char *p = text; *p; p++) {
        if (v->len >= INI_VALUE_MAX) return mo_errorf("value longer than %d bytes", INI_VALUE_MAX);
        char c = *p;
        if (c == '"') {
            if (p[1]) return mo_errorf("text after the closing quote: '%s'", p + 1);
            v->open = 0;
            v->buf[v->len] = 0;
            return 0;
        }
        if (c == '\\') {
            switch (*++p) {
            case '\\': c = '\\'; break;
            case '"': c = '"'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'x': {
                int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
                if (h < 0 || l < 0) return mo_errorf("bad escape \\x%.2s (use \\xHH)", p + 1);
                if (h == 0 && l == 0) return mo_errorf("\\x00: a value cannot hold a NUL byte");
                c = (char)(h * 16 + l), p += 2;
                break;
            }
            default: return mo_errorf("unknown escape '\\%.1s' (use \\\\ \\\" \\n \\r \\t \\xHH)", p);
            }
        }
        v->buf[v->len++] = c;
    }
    v->buf[v->len] = 0;
    return 0;  // still open: the value goes on on the next (indented) line
}

static int next_byte(ini_lines *r) {
    if (r->f) return getc(r->f);
    return *r->text ? (unsigned char)*r->text++ : EOF;
}

char *ini_line_read(char *str, int num, ini_lines *r) {
    if (r->bad) return NULL;
    int n = 0, ch = 0;
    while (n < num - 1 && (ch = next_byte(r)) != EOF) {
        if (ch == 0) r->bad = 2;
        str[n++] = (char)ch;
        if (ch == '\n') break;
    }
    if (!n) return NULL;
    r->line++;
    if (str[n - 1] != '\n' && ch != EOF) {  // the line goes on past inih's buffer
        ch = next_byte(r);
        if (ch == '\n' || ch == EOF) str[n - 1 + (ch == EOF)] = 0, n = n - 1 + (ch == EOF);
        else r->bad = 1;
    }
    if (r->bad) return NULL;  // inih sees the end of the file; ini_lines_check reports the line
    str[n] = 0;
    return str;
}

int ini_lines_check(const ini_lines *r, const char *path) {
    if (r->bad == 1)
        return mo_errorf("%s:%d: line longer than 199 bytes, the most inih reads (in a train config a long value can be quoted over indented lines)", path,
                         r->line);
    if (r->bad == 2) return mo_errorf("%s:%d: a NUL byte (not a text file)", path, r->line);
    if (r->f && ferror(r->f)) return mo_errorf("%s: cannot read the config file", path);
    return 0;
}
