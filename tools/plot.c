/* ddn train — plot.png: training loss and test accuracy over steps, drawn from metrics.csv.
 *
 * A small software rasteriser on purpose (lines, rectangles, stb_easy_font's text quads scaled x2)
 * so the plot needs nothing beyond Debian's libstb: stb_image_write for the PNG (linked from
 * libstb.a), stb_easy_font header-only. Two stacked panels share the step axis; each axis is
 * labelled with its range so the picture reads without the CSV.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include <stb_image_write.h>

#define W 900
#define H 640
#define SCALE 2 /* stb_easy_font glyphs are ~7 px high: doubled for legibility */

typedef struct canvas {
    unsigned char px[H][W][3];
} canvas;

static void put(canvas *c, int x, int y, const unsigned char *rgb)
{
    if (x >= 0 && x < W && y >= 0 && y < H) memcpy(c->px[y][x], rgb, 3);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const unsigned char *rgb)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(c, x, y, rgb);
}

static void line(canvas *c, int x0, int y0, int x1, int y1, const unsigned char *rgb, int thick)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (int guard = 0; guard < 4 * (W + H); guard++) {
        rect(c, x0 - thick / 2, y0 - thick / 2, x0 - thick / 2 + thick, y0 - thick / 2 + thick,
             rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

static void text(canvas *c, int x, int y, const char *s, const unsigned char *rgb)
{
    static char buf[60000];
    int quads = stb_easy_font_print(0, 0, (char *)s, NULL, buf, sizeof buf);
    for (int q = 0; q < quads; q++) {
        const float *v = (const float *)(buf + q * 64); /* 4 vertices of x, y, z, colour */
        int x0 = (int)v[0], y0 = (int)v[1], x1 = (int)v[8], y1 = (int)v[9];
        rect(c, x + SCALE * x0, y + SCALE * y0, x + SCALE * x1, y + SCALE * y1, rgb);
    }
}

static int text_width(const char *s) { return SCALE * stb_easy_font_width((char *)s); }

typedef struct series {
    double *x, *y;
    int n, cap;
} series;

static int push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx) return -1;
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny) return -1;
        s->y = ny, s->cap = cap;
    }
    s->x[s->n] = x, s->y[s->n] = y, s->n++;
    return 0;
}

static const unsigned char BLACK[3] = {0, 0, 0}, GREY[3] = {200, 200, 200},
                           BLUE[3] = {31, 119, 180}, ORANGE[3] = {230, 110, 20};

/* One panel in [top, top + h): frame, range labels, title, the series as a polyline. */
static void panel(canvas *c, int top, int h, const char *title, const series *s, double x_max,
                  const unsigned char *rgb, bool markers, const char *fmt)
{
    int left = 90, right = W - 30, bottom = top + h;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->y[i])) lo = fmin(lo, s->y[i]), hi = fmax(hi, s->y[i]);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    text(c, left, top - 22, title, BLACK);
    for (int k = 0; k <= 4; k++) { /* horizontal grid with value labels */
        int y = bottom - (int)((double)k / 4 * h);
        line(c, left, y, right, y, GREY, 1);
        char lab[32];
        snprintf(lab, sizeof lab, fmt, lo + (hi - lo) * k / 4);
        text(c, left - 8 - text_width(lab), y - 6, lab, BLACK);
    }
    line(c, left, top, left, bottom, BLACK, 2);
    line(c, left, bottom, right, bottom, BLACK, 2);
    for (int k = 0; k <= 4; k++) { /* step ticks */
        int x = left + (int)((double)k / 4 * (right - left));
        char lab[32];
        snprintf(lab, sizeof lab, "%.0f", x_max * k / 4);
        line(c, x, bottom, x, bottom + 5, BLACK, 2);
        text(c, x - text_width(lab) / 2, bottom + 9, lab, BLACK);
    }
    int px = 0, py = 0;
    for (int i = 0; i < s->n; i++) {
        if (!isfinite(s->y[i])) continue;
        int x = left + (int)(s->x[i] / (x_max > 0 ? x_max : 1) * (right - left));
        int y = bottom - (int)((s->y[i] - lo) / (hi - lo) * h);
        if (i) line(c, px, py, x, y, rgb, 2);
        if (markers) rect(c, x - 3, y - 3, x + 4, y + 4, rgb);
        px = x, py = y;
    }
    if (!s->n) text(c, (left + right) / 2 - 60, top + h / 2, "(no values yet)", BLACK);
}

int train_plot(const char *csv, const char *png, char *err, size_t err_n)
{
    FILE *f = fopen(csv, "r");
    if (!f) {
        snprintf(err, err_n, "cannot read %s", csv);
        return -1;
    }
    series loss = {0}, acc = {0};
    char row[512];
    double x_max = 1;
    int rc = 0;
    while (!rc && fgets(row, sizeof row, f)) {
        if (row[0] < '0' || row[0] > '9') continue; /* the header */
        /* step,epoch,loss,lr,test_accuracy: empty fields are absent values */
        char *field[5] = {0}, *p = row;
        for (int k = 0; k < 5 && p; k++) {
            field[k] = p;
            p = strchr(p, ',');
            if (p) *p++ = '\0';
        }
        double step = strtod(row, NULL);
        x_max = fmax(x_max, step);
        if (field[2] && *field[2] && *field[2] != '\n')
            rc = push(&loss, step, strtod(field[2], NULL));
        if (!rc && field[4] && *field[4] && *field[4] != '\n')
            rc = push(&acc, step, strtod(field[4], NULL));
    }
    fclose(f);
    canvas *c = rc ? NULL : malloc(sizeof *c);
    if (!c) {
        snprintf(err, err_n, "out of memory while plotting");
        free(loss.x), free(loss.y), free(acc.x), free(acc.y);
        return -1;
    }
    memset(c->px, 255, sizeof c->px);
    panel(c, 50, 230, "training loss (per step)", &loss, x_max, BLUE, false, "%.3f");
    panel(c, 360, 230, "test accuracy % (after each epoch and at the end)", &acc, x_max, ORANGE, true, "%.1f");
    text(c, W / 2 - text_width("step") / 2, H - 22, "step", BLACK);
    if (!stbi_write_png(png, W, H, 3, c->px, W * 3)) {
        snprintf(err, err_n, "cannot write %s", png);
        rc = -1;
    }
    free(c);
    free(loss.x), free(loss.y), free(acc.x), free(acc.y);
    return rc;
}
