/* Loss curves: a tolerant metrics.jsonl reader and a cairo PNG renderer. */
#include "cllm/report/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "cllm/base/build_config.h"

/* ------------------------------------------------------------------------
 * Reading metrics.jsonl
 *
 * The trainer writes flat objects, but a person may add keys or nest
 * something later, so nested values are skipped rather than rejected. Only
 * the structure is checked strictly enough to catch a truncated or garbled
 * line and say where it is.
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *p;
    const char *why; /* set on failure */
} cursor;

typedef struct {
    double tokens, loss, val_loss;
    int has_tokens, has_loss, has_val_loss;
} metrics_line;

static void skip_ws(cursor *c) {
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n') c->p++;
}

static int fail(cursor *c, const char *why) {
    c->why = why;
    return 0;
}

/* Reads a string literal; its raw bytes (escapes not decoded: keys we look
 * for have none) go to buf, truncated to n-1. */
static int read_string(cursor *c, char *buf, size_t n) {
    size_t len = 0;
    if (*c->p != '"') return fail(c, "expected a string");
    for (c->p++; *c->p != '"'; c->p++) {
        if (*c->p == '\0') return fail(c, "unterminated string");
        if (*c->p == '\\' && c->p[1] != '\0') c->p++;
        if (buf && len + 1 < n) buf[len++] = *c->p;
    }
    c->p++;
    if (buf) buf[len] = '\0';
    return 1;
}

/* Skips a nested object or array, minding brackets inside strings. */
static int skip_nested(cursor *c) {
    int depth = 0;
    do {
        char ch = *c->p;
        if (ch == '\0') return fail(c, "unterminated object or array");
        if (ch == '"') {
            if (!read_string(c, NULL, 0)) return 0;
            continue;
        }
        if (ch == '{' || ch == '[') depth++;
        if (ch == '}' || ch == ']') depth--;
        c->p++;
    } while (depth > 0);
    return 1;
}

static int read_literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if (strncmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* A value: number (nan/inf tolerated, as printf writes them), string,
 * true/false/null, or a nested object/array. *is_number tells whether *num
 * holds a number. */
static int read_value(cursor *c, double *num, int *is_number) {
    *is_number = 0;
    char ch = *c->p;
    if (ch == '"') return read_string(c, NULL, 0);
    if (ch == '{' || ch == '[') return skip_nested(c);
    if (read_literal(c, "true") || read_literal(c, "false") || read_literal(c, "null")) return 1;
    char *end;
    errno = 0;
    double v = strtod(c->p, &end);
    if (end == c->p) return fail(c, "expected a value");
    c->p = end;
    *num = v;
    *is_number = 1;
    return 1;
}

static void keep_number(const char *key, double v, metrics_line *m) {
    if (!isfinite(v)) return;
    if (!strcmp(key, "tokens")) m->tokens = v, m->has_tokens = 1;
    else if (!strcmp(key, "loss")) m->loss = v, m->has_loss = 1;
    else if (!strcmp(key, "val_loss")) m->val_loss = v, m->has_val_loss = 1;
}

static int read_member(cursor *c, metrics_line *m) {
    char key[64];
    double v = 0;
    int is_number;
    if (!read_string(c, key, sizeof key)) return 0;
    skip_ws(c);
    if (*c->p != ':') return fail(c, "expected ':' after a key");
    c->p++;
    skip_ws(c);
    if (!read_value(c, &v, &is_number)) return 0;
    if (is_number) keep_number(key, v, m);
    return 1;
}

static int parse_metrics_line(cursor *c, metrics_line *m) {
    memset(m, 0, sizeof *m);
    skip_ws(c);
    if (*c->p != '{') return fail(c, "expected a JSON object '{'");
    c->p++;
    skip_ws(c);
    if (*c->p != '}') {
        for (;;) {
            if (!read_member(c, m)) return 0;
            skip_ws(c);
            if (*c->p == '}') break;
            if (*c->p != ',') return fail(c, *c->p ? "expected ',' or '}'" : "line ends inside the object");
            c->p++;
            skip_ws(c);
        }
    }
    c->p++;
    skip_ws(c);
    if (*c->p != '\0') return fail(c, "unexpected text after the object");
    return 1;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

static cllm_status append_point(cllm_plot_point **pts, int *n, int *cap, double x, double y) {
    if (*n == *cap) {
        int grown = *cap ? *cap * 2 : 256;
        cllm_plot_point *p = realloc(*pts, (size_t)grown * sizeof *p);
        if (!p) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory reading metrics");
        *pts = p;
        *cap = grown;
    }
    (*pts)[(*n)++] = (cllm_plot_point){x, y};
    return CLLM_OK;
}

static cllm_status add_line_to_curve(const metrics_line *m, cllm_loss_curve *out, int caps[2]) {
    cllm_status st = CLLM_OK;
    if (m->has_loss) st = append_point(&out->train, &out->n_train, &caps[0], m->tokens, m->loss);
    if (st == CLLM_OK && m->has_val_loss) st = append_point(&out->val, &out->n_val, &caps[1], m->tokens, m->val_loss);
    return st;
}

void cllm_loss_curve_free(cllm_loss_curve *c) {
    free(c->train);
    free(c->val);
    memset(c, 0, sizeof *c);
}

cllm_status cllm_loss_curve_read(const char *path, cllm_loss_curve *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return cllm_fail(errno == ENOMEM ? CLLM_ERR_INTERNAL : CLLM_ERR_INPUT, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int caps[2] = {0, 0};
    long lineno = 0;
    cllm_status st = CLLM_OK;
    ssize_t got;
    while (st == CLLM_OK && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)got != strlen(line)) {
            st = cllm_fail(CLLM_ERR_INPUT, "%s:%ld: NUL byte in the line", path, lineno);
            break;
        }
        if (is_blank(line)) continue;
        cursor c = {line, NULL};
        metrics_line m;
        /* A last line without its newline that does not parse is a row being
         * appended now, or one a kill cut short: the lines before it stand. */
        int cut_last_line = line[got - 1] != '\n';
        if (!parse_metrics_line(&c, &m) && cut_last_line) break;
        c = (cursor){line, NULL};
        if (!parse_metrics_line(&c, &m))
            st = cllm_fail(CLLM_ERR_INPUT, "%s:%ld: %s (column %ld)", path, lineno, c.why, (long)(c.p - line) + 1);
        else if ((m.has_loss || m.has_val_loss) && !m.has_tokens)
            st = cllm_fail(CLLM_ERR_INPUT, "%s:%ld: a loss without \"tokens\"", path, lineno);
        else
            st = add_line_to_curve(&m, out, caps);
    }
    if (st == CLLM_OK && ferror(f)) st = cllm_fail(CLLM_ERR_INPUT, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (st != CLLM_OK) cllm_loss_curve_free(out);
    return st;
}

/* ------------------------------------------------------------------------
 * Finding each run's metrics and its display name
 * ------------------------------------------------------------------------ */

static int is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The metrics file of a run argument: DIR/metrics.jsonl, or the file itself. */
static char *metrics_path_of(const char *run) {
    if (is_regular_file(run)) return strdup(run);
    size_t n = strlen(run) + sizeof "/metrics.jsonl";
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/metrics.jsonl", run);
    return p;
}

/* The legend name: the run folder's basename ("runs/a/" -> "a"); for a file
 * argument, the folder that holds it. */
static void run_name(const char *run, char *buf, size_t n) {
    char *copy = strdup(run);
    if (!copy) {
        snprintf(buf, n, "run");
        return;
    }
    if (is_regular_file(run)) {
        char *slash = strrchr(copy, '/');
        if (slash) *slash = '\0';
        else snprintf(copy, strlen(copy) + 1, ".");
    }
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/') copy[--len] = '\0';
    const char *base = strrchr(copy, '/');
    base = base && base[1] ? base + 1 : copy;
    /* "." reads badly in a legend; the current folder's name says more. The
     * buffer lives as long as `base` may point into it. */
    char cwd[1024];
    if (!strcmp(base, ".")) {
        const char *cwd_base = getcwd(cwd, sizeof cwd) ? strrchr(cwd, '/') : NULL;
        base = cwd_base && cwd_base[1] ? cwd_base + 1 : "run";
    }
    snprintf(buf, n, "%s", base);
    free(copy);
}

#if CLLM_HAVE_CAIRO
#include <cairo.h>

/* ------------------------------------------------------------------------
 * Drawing
 * ------------------------------------------------------------------------ */

typedef struct {
    cllm_loss_curve curve;
    char name[128];
} plot_run;

typedef struct {
    double x0, x1, y0, y1; /* data range shown */
} data_box;

typedef struct {
    double left, top, width, height; /* plot area in pixels */
} pixel_box;

typedef struct {
    cairo_t *cr;
    data_box data;
    pixel_box area;
} plot_frame;

static const double palette[][3] = {
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74},
    {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81},
};
enum { n_colours = (int)(sizeof palette / sizeof palette[0]) };

/* Differences of halves: the data may span more than DBL_MAX. */
static double px_x(const plot_frame *f, double x) {
    return f->area.left + (x / 2 - f->data.x0 / 2) / (f->data.x1 / 2 - f->data.x0 / 2) * f->area.width;
}

static double px_y(const plot_frame *f, double y) {
    return f->area.top + (f->data.y1 / 2 - y / 2) / (f->data.y1 / 2 - f->data.y0 / 2) * f->area.height;
}

static void widen_range(const cllm_plot_point *pts, int n, data_box *b) {
    for (int i = 0; i < n; i++) {
        b->x0 = fmin(b->x0, pts[i].tokens);
        b->x1 = fmax(b->x1, pts[i].tokens);
        b->y0 = fmin(b->y0, pts[i].loss);
        b->y1 = fmax(b->y1, pts[i].loss);
    }
}

/* Below this a span is flat: relative to the values (doubles cannot step
 * through it), or absolutely (its tenths would be subnormal or zero). */
static int is_flat(double lo, double hi) {
    return !(hi - lo > fmax(fmax(fabs(lo), fabs(hi)) * 1e-9, 1e-290));
}

/* A flat range is widened about its middle: such values are equal as far as
 * a plot can show. */
static void widen_if_flat(double *lo, double *hi, double min_pad) {
    double mid = *lo / 2 + *hi / 2;
    if (!is_flat(*lo, *hi)) return;
    double pad = fmax(fabs(mid) * 0.05, min_pad);
    *lo = mid - pad;
    *hi = mid + pad;
}

/* Tokens start at 0 so runs of different lengths compare at a glance; the
 * loss axis hugs the data with a margin, since losses never approach 0. */
static data_box data_range(const plot_run *runs, int n) {
    data_box b = {0, -INFINITY, INFINITY, -INFINITY};
    for (int r = 0; r < n; r++) {
        widen_range(runs[r].curve.train, runs[r].curve.n_train, &b);
        widen_range(runs[r].curve.val, runs[r].curve.n_val, &b);
    }
    if (is_flat(b.x0, b.x1)) b.x1 = b.x0 + fmax(1, fabs(b.x0) * 0.05); /* x0 <= 0 stays the left edge */
    double pad = (b.y1 - b.y0) * 0.05; /* inf for a span beyond DBL_MAX: then no margin */
    if (isfinite(b.y0 - pad) && isfinite(b.y1 + pad)) b.y0 -= pad, b.y1 += pad;
    widen_if_flat(&b.y0, &b.y1, 0.5);
    return b;
}

/* A 1, 2 or 5 times a power of ten giving about `target` intervals over
 * [lo, hi]. Halves first, since hi - lo itself may overflow. */
static double nice_step(double lo, double hi, int target) {
    double raw = (hi / 2 - lo / 2) * (2.0 / target);
    double mag = pow(10, floor(log10(raw)));
    double unit = raw / mag;
    return mag * (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10);
}

/* Ticks at whole multiples of a nice step, computed by index (first + i) *
 * step, never by accumulation, so each is exact and the count is known up
 * front. Returns the count (0 when the range gives no sensible ticks). */
enum { max_ticks = 40 };
static int axis_ticks(double lo, double hi, int target, double *step, double *first) {
    *step = nice_step(lo, hi, target);
    if (!(*step > 0) || !isfinite(*step)) return 0;
    *first = ceil(lo / *step);
    double last = floor(hi / *step + 1e-9);
    double count = last - *first + 1;
    if (!(count >= 1 && count <= max_ticks)) return 0;
    return (int)count;
}

static void format_tokens(double v, double axis_max, char *buf, size_t n) {
    if (v == 0) snprintf(buf, n, "0");
    else if (axis_max >= 1e9) snprintf(buf, n, "%gG", v / 1e9);
    else if (axis_max >= 1e6) snprintf(buf, n, "%gM", v / 1e6);
    else if (axis_max >= 1e4) snprintf(buf, n, "%gk", v / 1e3);
    else snprintf(buf, n, "%g", v);
}

/* Text anchored at (x, y): ax, ay in {0, 0.5, 1} = left/centre/right, top/middle/bottom. */
static void show_text_at(cairo_t *cr, double x, double y, double ax, double ay, const char *text) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
    cairo_show_text(cr, text);
}

static void set_font(cairo_t *cr, double size, int bold) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static void draw_grid_line(const plot_frame *f, double x0, double y0, double x1, double y1) {
    cairo_set_source_rgb(f->cr, 0.88, 0.88, 0.88);
    cairo_set_line_width(f->cr, 1);
    cairo_move_to(f->cr, x0, y0);
    cairo_line_to(f->cr, x1, y1);
    cairo_stroke(f->cr);
}

static void draw_x_ticks(const plot_frame *f) {
    cairo_t *cr = f->cr;
    double step, first;
    int n = axis_ticks(f->data.x0, f->data.x1, 8, &step, &first);
    double bottom = f->area.top + f->area.height;
    set_font(cr, 12, 0);
    for (int i = 0; i < n; i++) {
        double v = (first + i) * step, x = px_x(f, v);
        char label[32];
        draw_grid_line(f, x, f->area.top, x, bottom);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, x, bottom);
        cairo_line_to(cr, x, bottom + 5);
        cairo_stroke(cr);
        format_tokens(fabs(v) < step * 1e-9 ? 0 : v, f->data.x1, label, sizeof label);
        show_text_at(cr, x, bottom + 8, 0.5, 0, label);
    }
}

static void draw_y_ticks(const plot_frame *f) {
    cairo_t *cr = f->cr;
    double step, first;
    int n = axis_ticks(f->data.y0, f->data.y1, 6, &step, &first);
    set_font(cr, 12, 0);
    for (int i = 0; i < n; i++) {
        double v = (first + i) * step, y = px_y(f, v);
        char label[32];
        draw_grid_line(f, f->area.left, y, f->area.left + f->area.width, y);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, f->area.left - 5, y);
        cairo_line_to(cr, f->area.left, y);
        cairo_stroke(cr);
        snprintf(label, sizeof label, "%g", fabs(v) < step * 1e-9 ? 0 : v);
        show_text_at(cr, f->area.left - 8, y, 1, 0.5, label);
    }
}

static void draw_frame_and_labels(const plot_frame *f, const char *title, double width) {
    cairo_t *cr = f->cr;
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, f->area.left, f->area.top, f->area.width, f->area.height);
    cairo_stroke(cr);
    set_font(cr, 14, 0);
    show_text_at(cr, f->area.left + f->area.width / 2, f->area.top + f->area.height + 30, 0.5, 0, "tokens");
    cairo_save(cr);
    cairo_translate(cr, 18, f->area.top + f->area.height / 2);
    cairo_rotate(cr, -M_PI / 2);
    show_text_at(cr, 0, 0, 0.5, 0, "loss (nats/token)");
    cairo_restore(cr);
    set_font(cr, 16, 1);
    show_text_at(cr, width / 2, 14, 0.5, 0, title);
}

/* A filled dot with a white rim, so it stays visible on top of noisy lines. */
static void draw_marker(cairo_t *cr, double x, double y, const double rgb[3]) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, 4.5, 0, 2 * M_PI);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_fill(cr);
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, 3.2, 0, 2 * M_PI);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_fill(cr);
}

static void draw_polyline(const plot_frame *f, const cllm_plot_point *pts, int n) {
    for (int i = 0; i < n; i++) {
        double x = px_x(f, pts[i].tokens), y = px_y(f, pts[i].loss);
        if (i == 0) cairo_move_to(f->cr, x, y);
        else cairo_line_to(f->cr, x, y);
    }
    cairo_stroke(f->cr);
}

/* Train loss is noisy and dense, validation sparse and what matters most:
 * train is drawn thin and translucent, validation darker, thicker, dashed. */
static void style_train(cairo_t *cr, const double rgb[3]) {
    cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.55);
    cairo_set_line_width(cr, 1.2);
    cairo_set_dash(cr, NULL, 0, 0);
}

static void darker(const double rgb[3], double out[3]) {
    for (int i = 0; i < 3; i++) out[i] = rgb[i] * 0.75;
}

static void style_val(cairo_t *cr, const double rgb[3]) {
    static const double dash[] = {7, 4};
    double d[3];
    darker(rgb, d);
    cairo_set_source_rgb(cr, d[0], d[1], d[2]);
    cairo_set_line_width(cr, 2.2);
    cairo_set_dash(cr, dash, 2, 0);
}

static void clip_to_area(const plot_frame *f) {
    cairo_rectangle(f->cr, f->area.left, f->area.top, f->area.width, f->area.height);
    cairo_clip(f->cr);
}

static void draw_train(const plot_frame *f, const plot_run *run, const double rgb[3]) {
    cairo_save(f->cr);
    clip_to_area(f);
    cairo_set_line_join(f->cr, CAIRO_LINE_JOIN_ROUND);
    style_train(f->cr, rgb);
    draw_polyline(f, run->curve.train, run->curve.n_train);
    cairo_restore(f->cr);
}

static void draw_val(const plot_frame *f, const plot_run *run, const double rgb[3]) {
    double d[3];
    darker(rgb, d);
    cairo_save(f->cr);
    clip_to_area(f);
    cairo_set_line_join(f->cr, CAIRO_LINE_JOIN_ROUND);
    style_val(f->cr, rgb);
    draw_polyline(f, run->curve.val, run->curve.n_val);
    for (int i = 0; i < run->curve.n_val; i++)
        draw_marker(f->cr, px_x(f, run->curve.val[i].tokens), px_y(f, run->curve.val[i].loss), d);
    cairo_restore(f->cr);
}

/* One legend row: a line sample (with a marker for validation) and a label. */
static void draw_legend_row(cairo_t *cr, double x, double y, const double rgb[3], int is_val, const char *label) {
    double d[3];
    darker(rgb, d);
    cairo_save(cr);
    if (is_val) style_val(cr, rgb);
    else style_train(cr, rgb);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 28, y);
    cairo_stroke(cr);
    if (is_val) draw_marker(cr, x + 14, y, d);
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    show_text_at(cr, x + 36, y, 0, 0.5, label);
}

/* Top right, where falling loss curves leave room. */
static void draw_legend(const plot_frame *f, const plot_run *runs, int n) {
    cairo_t *cr = f->cr;
    char label[160];
    double row = 18, widest = 0;
    int rows = 0;
    set_font(cr, 12, 0);
    for (int r = 0; r < n; r++) {
        for (int is_val = 0; is_val < 2; is_val++) {
            if (is_val && runs[r].curve.n_val == 0) continue;
            cairo_text_extents_t e;
            snprintf(label, sizeof label, "%s %s", runs[r].name, is_val ? "validation" : "train");
            cairo_text_extents(cr, label, &e);
            widest = fmax(widest, e.x_advance);
            rows++;
        }
    }
    double w = widest + 50, h = rows * row + 10;
    double x = f->area.left + f->area.width - w - 10, y = f->area.top + 10;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, x, y, w, h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double ry = y + 5 + row / 2;
    for (int r = 0; r < n; r++) {
        const double *rgb = palette[r % n_colours];
        draw_legend_row(cr, x + 8, ry, rgb, 0, (snprintf(label, sizeof label, "%s train", runs[r].name), label));
        ry += row;
        if (runs[r].curve.n_val == 0) continue;
        draw_legend_row(cr, x + 8, ry, rgb, 1, (snprintf(label, sizeof label, "%s validation", runs[r].name), label));
        ry += row;
    }
}

static void render(cairo_t *cr, const plot_run *runs, int n, const char *title, int width, int height) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    plot_frame f = {cr, data_range(runs, n), {80, 40, width - 80 - 25, height - 40 - 60}};
    draw_x_ticks(&f);
    draw_y_ticks(&f);
    /* Every run's train line first, so no run's validation hides under another's noise. */
    for (int r = 0; r < n; r++) draw_train(&f, &runs[r], palette[r % n_colours]);
    for (int r = 0; r < n; r++) draw_val(&f, &runs[r], palette[r % n_colours]);
    draw_frame_and_labels(&f, title, width);
    draw_legend(&f, runs, n);
}

static cairo_status_t write_to_file(void *closure, const unsigned char *data, unsigned int length) {
    return fwrite(data, 1, length, (FILE *)closure) == length ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static cllm_status write_png(cairo_surface_t *surface, const char *png_path) {
    cllm_atomic_file af;
    cllm_status st = cllm_atomic_open(&af, png_path);
    if (st != CLLM_OK) return st;
    cairo_status_t cs = cairo_surface_write_to_png_stream(surface, write_to_file, af.f);
    if (cs != CAIRO_STATUS_SUCCESS) {
        cllm_atomic_abort(&af);
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", png_path, cairo_status_to_string(cs));
    }
    return cllm_atomic_commit(&af);
}

static cllm_status read_runs(const char *const *dirs, int n, plot_run *runs) {
    for (int r = 0; r < n; r++) {
        char *path = metrics_path_of(dirs[r]);
        if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        cllm_status st = cllm_loss_curve_read(path, &runs[r].curve);
        if (st == CLLM_OK && runs[r].curve.n_train + runs[r].curve.n_val == 0)
            st = cllm_fail(CLLM_ERR_INPUT, "%s: no loss values to plot", path);
        free(path);
        if (st != CLLM_OK) return st;
        run_name(dirs[r], runs[r].name, sizeof runs[r].name);
    }
    return CLLM_OK;
}

static cllm_status draw_to_png(const plot_run *runs, int n, const char *png_path, const char *title, int width,
                               int height) {
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surface);
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot create a %dx%d image", width, height);
    }
    cairo_t *cr = cairo_create(surface);
    render(cr, runs, n, title, width, height);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    cllm_status st = cs == CAIRO_STATUS_SUCCESS
                         ? write_png(surface, png_path)
                         : cllm_fail(CLLM_ERR_INTERNAL, "drawing %s failed: %s", png_path, cairo_status_to_string(cs));
    cairo_surface_destroy(surface);
    return st;
}

cllm_status cllm_plot_runs_sized(const char *const *dirs, int n_dirs, const char *png_path, const char *title,
                                 int width, int height) {
    if (n_dirs <= 0) return cllm_fail(CLLM_ERR_INPUT, "no runs to plot");
    if (width < 200 || width > 10000 || height < 200 || height > 10000)
        return cllm_fail(CLLM_ERR_INPUT, "plot size %dx%d is outside 200..10000 pixels", width, height);
    plot_run *runs = calloc((size_t)n_dirs, sizeof *runs);
    if (!runs) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    cllm_status st = read_runs(dirs, n_dirs, runs);
    if (st == CLLM_OK) st = draw_to_png(runs, n_dirs, png_path, title ? title : "loss", width, height);
    for (int r = 0; r < n_dirs; r++) cllm_loss_curve_free(&runs[r].curve);
    free(runs);
    return st;
}

#else /* !CLLM_HAVE_CAIRO */

cllm_status cllm_plot_runs_sized(const char *const *dirs, int n_dirs, const char *png_path, const char *title,
                                 int width, int height) {
    (void)dirs, (void)n_dirs, (void)png_path, (void)title, (void)width, (void)height;
    (void)metrics_path_of, (void)run_name;
    return cllm_fail(CLLM_ERR_INPUT, "cllm was built without cairo: apt-get install libcairo2-dev and rebuild");
}

#endif

cllm_status cllm_plot_runs(const char *const *dirs, int n_dirs, const char *png_path, const char *title) {
    return cllm_plot_runs_sized(dirs, n_dirs, png_path, title, CLLM_PLOT_WIDTH, CLLM_PLOT_HEIGHT);
}
