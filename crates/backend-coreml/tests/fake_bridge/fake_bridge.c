/*
 * fake_bridge.c - TEST SUPPORT ONLY, never a backend. Implements coreml_bridge.h with scripted
 * behaviour so the Rust side (loader, handles, pool, deadlines, cache, schema, output sizing)
 * runs on Linux, along every path the Swift bridge can take.
 *
 * Behaviour is chosen by words in the model's file name (the original name is recorded in the
 * compiled folder, so it survives the compile cache; only the last path component is read, so
 * random temp-folder names cannot pick a mode):
 *   compile_error  cmb_compile_model fails          load_error     cmb_model_load fails
 *   predict_error  cmb_model_predict fails          slow           predict sleeps 40 ms
 *   hang           predict blocks until fake_release_hangs(1)   badsize  output shape lies
 *   cancellable    cmb_model_cancel stops the prediction (CMB_ERR_CANCELLED), as the async
 *                  prediction of macOS 14+ does; without it cancel answers CMB_ERR_UNSUPPORTED,
 *                  as on macOS 13 ("hang_cancellable": blocks until released or cancelled)
 *   internal_error predict fails with CMB_ERR_INTERNAL (an Objective-C exception's message)
 *   plan           a compute plan exists            plan_slow      the plan never gets ready:
 *                                                                  waits timeout_ms, CMB_ERR_TIMEOUT
 * and one model scenario (features and arithmetic, see the table below):
 *   image     2x2 RGB image in (32BGRA buffer), f32 [1,4] out = sum of each pixel's channels
 *   multi     inputs a, b f32 [1,4]; outputs prod = a*b, sum = a+b
 *   f16       x f16 [2,3] -> y f16 [2,3] = -x (raw half bits)
 *   i32       ids i32 [1,5] -> next i32 [1,5] = 3*ids - 1
 *   f64       the model is float64 (described as f32, as the bridge does); y = x / 3 computed
 *             in double, narrowed to f32 on delivery
 *   flex      x f32 flexible (default [1,4]) -> y f32 flexible, same shape, = 10*x
 *   undeclared x f32 flexible (default [1,4]) -> y with no declared shape: rank 1, [n], = x+0.5
 *   gray      image 3 wide 2 high, OneComponent8 -> weighted f32 [1,1] = sum (i+1)*pixel[i]
 *   bgra      image 2x2 RGB as a 32BGRA buffer -> f32 [1,4] = R*65536 + G*256 + B read back
 *             from the BGRA buffer the fake fills like the Swift bridge
 *   imageout  x f32 [1,4] -> rendered: RGB image 2x2 (32BGRA), mask: gray image 2x2
 *   baddtype  input f32 [1,4]; outputs: labels (OTHER: a string), output f32 [1,4] = 2x+1,
 *             raw (multi-array, i64 code: not deliverable), asking for labels/raw fails
 *   badinput  input tokens has an element type the bridge cannot pass (dtype -1)
 *   longname  describing an output fails: name over 255 bytes (the bridge's own error)
 *   nonul     an output's name fills its 256-byte buffer without a NUL (a faulty bridge)
 * Default: input "input" f32 [1,4], output "output" f32 [1,4] = 2*x + 1.
 * Every output that does not fit its buffer gets its rank and shape written, bytes_written 0,
 * and the call returns CMB_ERR_OUTPUT, as the Swift bridge does (ABI 2).
 *
 * Build variants: -DFAKE_ABI_VERSION=N reports another ABI; -DFAKE_OMIT_PREDICT leaves out
 * cmb_model_predict. Every allocation handed out is registered; frees of unknown pointers
 * (double frees) are counted. fake_stats() reports the counters.
 */
#define _GNU_SOURCE
#include "coreml_bridge.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION CMB_ABI_VERSION
#endif

typedef struct fake_stats_t {
    uint64_t models_allocated, models_freed;
    uint64_t strings_allocated, strings_freed;
    uint64_t bad_frees;
    uint64_t compiles, loads, predicts;
    uint64_t overlaps;           /* predictions that overlapped on one model handle */
    uint64_t max_in_flight;      /* most predictions running at once, all handles */
    uint64_t hung_now;           /* predictions currently blocked in "hang" */
    uint64_t outputs_too_small;  /* predictions answered CMB_ERR_OUTPUT with shapes reported */
    uint64_t last_plan_timeout_ms; /* timeout_ms of the last cmb_model_compute_plan call */
    uint64_t cancel_calls;       /* cmb_model_cancel calls, whatever they answered */
    uint64_t cancelled;          /* predictions that returned CMB_ERR_CANCELLED */
} fake_stats_t;

struct cmb_model {
    char mode[1024];     /* the path the model came from */
    const char *base;    /* its last component: the words that pick behaviour */
    int in_flight;
    int cancel_requested; /* "cancellable": set by cmb_model_cancel during a prediction */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hang_cond = PTHREAD_COND_INITIALIZER;
static int g_hangs_released = 0;
static int g_in_flight_total = 0;
static fake_stats_t g_stats;

#define REGISTRY_CAP 4096
static void *g_live[REGISTRY_CAP];

static void reg_add(void *p) {
    for (int i = 0; i < REGISTRY_CAP; i++) {
        if (!g_live[i]) { g_live[i] = p; return; }
    }
}

static int reg_remove(void *p) {
    for (int i = 0; i < REGISTRY_CAP; i++) {
        if (g_live[i] == p) { g_live[i] = NULL; return 1; }
    }
    return 0;
}

static char *new_string(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (s) {
        pthread_mutex_lock(&g_lock);
        g_stats.strings_allocated++;
        reg_add(s);
        pthread_mutex_unlock(&g_lock);
    }
    return s;
}

static int32_t fail(char **err, int32_t status, const char *fmt, const char *arg) {
    if (err) *err = new_string(fmt, arg);
    return status;
}

void fake_stats(fake_stats_t *out) {
    pthread_mutex_lock(&g_lock);
    *out = g_stats;
    pthread_mutex_unlock(&g_lock);
}

/* 1: blocked and future "hang" predictions return; 0: they block again. */
void fake_release_hangs(int released) {
    pthread_mutex_lock(&g_lock);
    g_hangs_released = released;
    pthread_cond_broadcast(&g_hang_cond);
    pthread_mutex_unlock(&g_lock);
}

/* Resets the peak of concurrent predictions to the current number. */
void fake_reset_peak(void) {
    pthread_mutex_lock(&g_lock);
    g_stats.max_in_flight = (uint64_t)g_in_flight_total;
    pthread_mutex_unlock(&g_lock);
}

uint32_t cmb_abi_version(void) { return FAKE_ABI_VERSION; }

int32_t cmb_os_build(char **out, char **err) {
    (void)err;
    if (!out) return CMB_ERR_INVALID_ARGUMENT;
    *out = new_string("%s", "FakeOS 1.0 (Build FAKE42)");
    return CMB_OK;
}

int32_t cmb_compute_devices(uint32_t *out_mask, char **err) {
    (void)err;
    if (!out_mask) return CMB_ERR_INVALID_ARGUMENT;
    *out_mask = CMB_DEVICE_CPU | CMB_DEVICE_NEURAL_ENGINE;
    return CMB_OK;
}

int32_t cmb_compile_model(const char *model_path, const char *dest_dir, char **out_path,
                          char **err) {
    if (!model_path || !dest_dir || !out_path)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: NULL argument%s", "");
    pthread_mutex_lock(&g_lock);
    g_stats.compiles++;
    pthread_mutex_unlock(&g_lock);
    const char *name = strrchr(model_path, '/');
    if (strstr(name ? name + 1 : model_path, "compile_error"))
        return fail(err, CMB_ERR_COMPILE, "fake bridge: cannot compile %s: scripted failure",
                    model_path);
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    char stem[256];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    char dir[2048], file[2100];
    snprintf(dir, sizeof dir, "%s/%s.mlmodelc", dest_dir, stem);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return fail(err, CMB_ERR_IO, "fake bridge: cannot create %s", dir);
    snprintf(file, sizeof file, "%s/coremldata.bin", dir);
    FILE *f = fopen(file, "w");
    if (!f) return fail(err, CMB_ERR_IO, "fake bridge: cannot write %s", file);
    fputs(model_path, f);
    fclose(f);
    *out_path = new_string("%s", dir);
    return CMB_OK;
}

int32_t cmb_model_load(const char *compiled_path, int32_t compute_units, cmb_model **out,
                       char **err) {
    if (!compiled_path || !out)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: NULL argument%s", "");
    if (compute_units < 0 || compute_units > 3)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad compute units%s", "");
    pthread_mutex_lock(&g_lock);
    g_stats.loads++;
    pthread_mutex_unlock(&g_lock);
    cmb_model *m = calloc(1, sizeof *m);
    if (!m) return fail(err, CMB_ERR_INTERNAL, "fake bridge: out of memory%s", "");
    snprintf(m->mode, sizeof m->mode, "%s", compiled_path);
    char file[2048];
    snprintf(file, sizeof file, "%s/coremldata.bin", compiled_path);
    FILE *f = fopen(file, "r");
    if (f) {
        size_t n = fread(m->mode, 1, sizeof m->mode - 1, f);
        m->mode[n] = 0;
        fclose(f);
    }
    size_t len = strlen(m->mode);
    while (len > 1 && m->mode[len - 1] == '/') m->mode[--len] = 0;
    const char *slash = strrchr(m->mode, '/');
    m->base = slash ? slash + 1 : m->mode;
    if (strstr(m->base, "load_error")) {
        free(m);
        return fail(err, CMB_ERR_LOAD, "fake bridge: cannot load %s: scripted failure",
                    compiled_path);
    }
    pthread_mutex_lock(&g_lock);
    g_stats.models_allocated++;
    reg_add(m);
    pthread_mutex_unlock(&g_lock);
    *out = m;
    return CMB_OK;
}

void cmb_model_free(cmb_model *model) {
    if (!model) return;
    pthread_mutex_lock(&g_lock);
    int known = reg_remove(model);
    if (known) g_stats.models_freed++; else g_stats.bad_frees++;
    pthread_mutex_unlock(&g_lock);
    if (known) free(model);
}

void cmb_string_free(char *s) {
    if (!s) return;
    pthread_mutex_lock(&g_lock);
    int known = reg_remove(s);
    if (known) g_stats.strings_freed++; else g_stats.bad_frees++;
    pthread_mutex_unlock(&g_lock);
    if (known) free(s);
}

/* ---- the scripted models ---------------------------------------------------------------- */

typedef struct feat {
    const char *name;
    int32_t kind, dtype;
    uint32_t rank;
    int32_t flexible;
    int64_t shape[4];
    int64_t width, height;   /* images */
    int32_t layout;          /* CMB_IMAGE_* for images, else -1 */
    uint32_t pixel_format;   /* CoreVideo OSType for images */
} feat;

#define OS_BGRA 0x42475241u  /* 'BGRA' (kCVPixelFormatType_32BGRA) */
#define OS_GRAY 0x4c303038u  /* 'L008' (kCVPixelFormatType_OneComponent8) */
#define ARR(n, dt, r, flex, ...) {n, CMB_FEATURE_MULTIARRAY, dt, r, flex, {__VA_ARGS__}, 0, 0, -1, 0}
#define IMG(n, w, h, lay, os, ch) {n, CMB_FEATURE_IMAGE, CMB_DTYPE_U8, 3, 0, {h, w, ch}, w, h, lay, os}

typedef struct scenario {
    const char *word;
    feat in[2];
    uint32_t n_in;
    feat out[3];
    uint32_t n_out;
} scenario;

/* Sorted by name within each side, as the Swift bridge describes them. The first scenario
 * whose word is in the model's name wins; the last entry is the default. */
static const scenario SCENARIOS[] = {
    {"imageout", {ARR("x", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1,
     {IMG("mask", 2, 2, CMB_IMAGE_GRAY, OS_GRAY, 1), IMG("rendered", 2, 2, CMB_IMAGE_RGB, OS_BGRA, 3)}, 2},
    {"image", {IMG("image", 2, 2, CMB_IMAGE_RGB, OS_BGRA, 3)}, 1,
     {ARR("output", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1},
    {"multi", {ARR("a", CMB_DTYPE_F32, 2, 0, 1, 4), ARR("b", CMB_DTYPE_F32, 2, 0, 1, 4)}, 2,
     {ARR("prod", CMB_DTYPE_F32, 2, 0, 1, 4), ARR("sum", CMB_DTYPE_F32, 2, 0, 1, 4)}, 2},
    {"f16", {ARR("x", CMB_DTYPE_F16, 2, 0, 2, 3)}, 1, {ARR("y", CMB_DTYPE_F16, 2, 0, 2, 3)}, 1},
    {"i32", {ARR("ids", CMB_DTYPE_I32, 2, 0, 1, 5)}, 1, {ARR("next", CMB_DTYPE_I32, 2, 0, 1, 5)}, 1},
    {"f64", {ARR("x", CMB_DTYPE_F32, 2, 0, 1, 3)}, 1, {ARR("y", CMB_DTYPE_F32, 2, 0, 1, 3)}, 1},
    {"undeclared", {ARR("x", CMB_DTYPE_F32, 2, 1, 1, 4)}, 1, {ARR("y", CMB_DTYPE_F32, 0, 1, 0)}, 1},
    {"flex", {ARR("x", CMB_DTYPE_F32, 2, 1, 1, 4)}, 1, {ARR("y", CMB_DTYPE_F32, 2, 1, 1, 4)}, 1},
    {"gray", {IMG("image", 3, 2, CMB_IMAGE_GRAY, OS_GRAY, 1)}, 1,
     {ARR("weighted", CMB_DTYPE_F32, 2, 0, 1, 1)}, 1},
    {"bgra", {IMG("image", 2, 2, CMB_IMAGE_RGB, OS_BGRA, 3)}, 1,
     {ARR("packed", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1},
    {"baddtype", {ARR("input", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1,
     {{"labels", CMB_FEATURE_OTHER, -1, 0, 0, {0}, 0, 0, -1, 0},
      ARR("output", CMB_DTYPE_F32, 2, 0, 1, 4), ARR("raw", CMB_DTYPE_I64, 2, 0, 1, 4)}, 3},
    {"badinput", {ARR("tokens", -1, 2, 0, 1, 8)}, 1, {ARR("output", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1},
    {"", {ARR("input", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1, {ARR("output", CMB_DTYPE_F32, 2, 0, 1, 4)}, 1},
};

static int has(const cmb_model *m, const char *word) { return strstr(m->base, word) != NULL; }

static const scenario *scenario_of(const cmb_model *m) {
    size_t n = sizeof SCENARIOS / sizeof SCENARIOS[0];
    for (size_t i = 0; i + 1 < n; i++)
        if (has(m, SCENARIOS[i].word)) return &SCENARIOS[i];
    return &SCENARIOS[n - 1];
}

int32_t cmb_model_feature_count(const cmb_model *model, int32_t io, uint32_t *out_count,
                                char **err) {
    if (!model || !out_count || (io != CMB_IO_INPUT && io != CMB_IO_OUTPUT))
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_feature_count");
    const scenario *s = scenario_of(model);
    *out_count = io == CMB_IO_INPUT ? s->n_in : s->n_out;
    return CMB_OK;
}

int32_t cmb_model_feature_describe(const cmb_model *model, int32_t io, uint32_t index,
                                   cmb_feature_desc *out, char **err) {
    if (!model || !out || (io != CMB_IO_INPUT && io != CMB_IO_OUTPUT))
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_feature_describe");
    const scenario *s = scenario_of(model);
    uint32_t n = io == CMB_IO_INPUT ? s->n_in : s->n_out;
    if (index >= n)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: feature index out of range%s", "");
    const feat *f = io == CMB_IO_INPUT ? &s->in[index] : &s->out[index];
    memset(out, 0, sizeof *out);
    if (io == CMB_IO_OUTPUT && has(model, "longname")) {
        /* What the Swift bridge's writeName(truncate: false) answers for a 300-byte name. */
        char name[301];
        memset(name, 'n', 300);
        name[300] = 0;
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "name `%s` is longer than 255 bytes", name);
    }
    if (io == CMB_IO_OUTPUT && has(model, "nonul")) {
        memset(out->name, 'n', sizeof out->name);
    } else {
        snprintf(out->name, sizeof out->name, "%s", f->name);
    }
    out->kind = f->kind;
    out->dtype = f->dtype;
    out->rank = f->rank;
    out->flexible = f->flexible;
    for (uint32_t i = 0; i < f->rank; i++) out->shape[i] = f->shape[i];
    out->image_width = f->width;
    out->image_height = f->height;
    out->image_format = f->layout;
    out->image_pixel_format = f->pixel_format;
    return CMB_OK;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int32_t cmb_model_compute_plan(cmb_model *model, uint32_t timeout_ms, cmb_plan_op *ops,
                               uint32_t capacity, uint32_t *out_total, char **err) {
    if (!model || !out_total || timeout_ms == 0)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_compute_plan");
    pthread_mutex_lock(&g_lock);
    g_stats.last_plan_timeout_ms = timeout_ms;
    pthread_mutex_unlock(&g_lock);
    if (has(model, "plan_slow")) {
        /* Core ML never finishes the plan: the bridge waits its bound, then gives up. */
        sleep_ms((long)timeout_ms);
        return fail(err, CMB_ERR_TIMEOUT,
                    "fake bridge: the compute plan was not ready within the bound%s", "");
    }
    if (!has(model, "plan"))
        return fail(err, CMB_ERR_UNSUPPORTED,
                    "fake bridge: no compute plan for %s (not an ML Program)", model->mode);
    static const struct { const char *name; int32_t dev; double cost; } plan[] = {
        {"ios17.conv", CMB_DEVICE_NEURAL_ENGINE, 0.6},
        {"ios17.relu", CMB_DEVICE_NEURAL_ENGINE, 0.1},
        {"ios17.softmax", CMB_DEVICE_CPU, 0.3},
        {"ios17.const", CMB_DEVICE_CPU, -1.0},
    };
    uint32_t n = sizeof plan / sizeof plan[0];
    *out_total = n;
    for (uint32_t i = 0; i < n && i < capacity && ops; i++) {
        memset(&ops[i], 0, sizeof ops[i]);
        snprintf(ops[i].op_name, sizeof ops[i].op_name, "%s", plan[i].name);
        ops[i].preferred_device = plan[i].dev;
        ops[i].supported_devices = CMB_DEVICE_CPU | (uint32_t)plan[i].dev;
        ops[i].estimated_cost = plan[i].cost;
    }
    return CMB_OK;
}

/* ABI 2. "cancellable" models behave like the async prediction of macOS 14+: a request during
 * a prediction stops it, with nothing in flight it does nothing. Others are synchronous, like
 * Core ML before macOS 14: CMB_ERR_UNSUPPORTED. */
int32_t cmb_model_cancel(cmb_model *model, char **err) {
    if (!model)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_cancel");
    pthread_mutex_lock(&g_lock);
    g_stats.cancel_calls++;
    int cancellable = strstr(model->base, "cancellable") != NULL;
    if (cancellable && model->in_flight > 0) {
        model->cancel_requested = 1;
        pthread_cond_broadcast(&g_hang_cond);
    }
    pthread_mutex_unlock(&g_lock);
    if (!cancellable)
        return fail(err, CMB_ERR_UNSUPPORTED, "fake bridge: %s cannot stop a prediction",
                    "a synchronous prediction");
    return CMB_OK;
}

#ifndef FAKE_OMIT_PREDICT
static size_t elem_size(int32_t dtype) {
    switch (dtype) {
    case CMB_DTYPE_F32: case CMB_DTYPE_I32: return 4;
    case CMB_DTYPE_F16: return 2;
    case CMB_DTYPE_I64: return 8;
    default: return 1;
    }
}

/* An input as the bridge reads it, checked the way the Swift bridge checks it. */
static int32_t take_input(const cmb_model *m, const feat *f, const cmb_tensor *in, uint32_t n_in,
                          const cmb_tensor **found, char **err) {
    (void)m;
    for (uint32_t i = 0; i < n_in; i++) {
        if (!in[i].name || strcmp(in[i].name, f->name) != 0) continue;
        const cmb_tensor *t = &in[i];
        if (!t->data || t->rank > CMB_MAX_RANK)
            return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: bad rank or NULL data", f->name);
        int64_t span = 1;
        for (uint32_t d = 0; d < t->rank; d++) {
            if (t->shape[d] <= 0 || t->strides[d] < 0)
                return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: bad shape", f->name);
            span += (t->shape[d] - 1) * t->strides[d];
        }
        if ((uint64_t)span * elem_size(t->dtype) > t->bytes)
            return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: shape/strides exceed its bytes", f->name);
        /* Dense row-major is what the Rust side sends. */
        int64_t dense = 1;
        for (int d = (int)t->rank - 1; d >= 0; d--) {
            if (t->strides[d] != dense)
                return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: strides not dense", f->name);
            dense *= t->shape[d];
        }
        int32_t want = f->kind == CMB_FEATURE_IMAGE ? CMB_DTYPE_U8 : f->dtype;
        if (t->dtype != want)
            return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: the model declares another element type", f->name);
        if (!f->flexible || f->kind == CMB_FEATURE_IMAGE) {
            int ok = t->rank == f->rank;
            for (uint32_t d = 0; ok && d < f->rank; d++) ok = t->shape[d] == f->shape[d];
            if (!ok)
                return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s`: shape differs from the model's", f->name);
        }
        *found = t;
        return CMB_OK;
    }
    return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: input `%s` missing", f->name);
}

static int64_t count_of(const int64_t *shape, uint32_t rank) {
    int64_t n = 1;
    for (uint32_t i = 0; i < rank; i++) n *= shape[i];
    return n;
}

/* IEEE half <-> float for the f16 scenario (only a sign flip is computed, so no rounding). */
static uint16_t half_neg(uint16_t h) { return h ^ 0x8000u; }

/* A computed output: source element type, shape, values. */
typedef struct result {
    const char *name;
    int32_t src;         /* CMB_DTYPE_* of `data`, or -2 for float64 (double) */
    uint32_t rank;
    int64_t shape[4];
    void *data;
} result;

#define SRC_F64 (-2)

/* Copies one result into the caller's slot like the Swift bridge's copyOutput: returns
 * CMB_OK, 1 when the buffer is too small (shape written, bytes_written 0), or an error. */
static int32_t deliver(cmb_tensor *slot, const result *r, char **err) {
    int32_t want = slot->dtype;
    int ok = (r->src == want) || (r->src == CMB_DTYPE_F16 && want == CMB_DTYPE_F32) ||
             (r->src == SRC_F64 && want == CMB_DTYPE_F32);
    if (!ok)
        return fail(err, CMB_ERR_OUTPUT, "fake bridge: output `%s` is not deliverable as the dtype asked", r->name);
    int64_t n = count_of(r->shape, r->rank);
    slot->rank = r->rank;
    int64_t dense = 1;
    for (int d = (int)r->rank - 1; d >= 0; d--) {
        slot->shape[d] = r->shape[d];
        slot->strides[d] = dense;
        dense *= r->shape[d];
    }
    slot->bytes_written = 0;
    uint64_t need = (uint64_t)n * elem_size(want);
    if (need > slot->bytes) return 1;
    if (!slot->data) return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: output `%s`: NULL data", r->name);
    if (r->src == SRC_F64) {
        const double *s = r->data;
        float *d = slot->data;
        for (int64_t i = 0; i < n; i++) d[i] = (float)s[i];
    } else {
        memcpy(slot->data, r->data, need);
    }
    slot->bytes_written = need;
    return CMB_OK;
}

static int32_t predict_body(cmb_model *m, const cmb_tensor *in, uint32_t n_in, cmb_tensor *out,
                            uint32_t n_out, char **err) {
    if ((n_in && !in) || (n_out && !out))
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: NULL tensor array%s", "");
    const scenario *s = scenario_of(m);
    const cmb_tensor *x[2] = {NULL, NULL};
    for (uint32_t i = 0; i < s->n_in; i++) {
        int32_t st = take_input(m, &s->in[i], in, n_in, &x[i], err);
        if (st != CMB_OK) return st;
    }
    if (n_in != s->n_in)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: the model has no such input%s", "");
    if (has(m, "predict_error"))
        return fail(err, CMB_ERR_PREDICT,
                    "fake bridge: prediction failed: scripted failure (model %s)", m->mode);
    if (has(m, "internal_error"))
        return fail(err, CMB_ERR_INTERNAL,
                    "fake bridge: NSInternalInconsistencyException: scripted exception (model %s)",
                    m->mode);
    if (has(m, "slow")) sleep_ms(40);
    if (has(m, "hang")) {
        pthread_mutex_lock(&g_lock);
        g_stats.hung_now++;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60; /* never block a test run for ever */
        while (!g_hangs_released && !m->cancel_requested) {
            if (pthread_cond_timedwait(&g_hang_cond, &g_lock, &until) == ETIMEDOUT) break;
        }
        g_stats.hung_now--;
        int stopped = m->cancel_requested;
        if (stopped) g_stats.cancelled++;
        pthread_mutex_unlock(&g_lock);
        if (stopped)
            return fail(err, CMB_ERR_CANCELLED, "fake bridge: the prediction was cancelled%s",
                        " (cmb_model_cancel)");
    }

    /* Compute every output of the scenario. */
    result r[3];
    memset(r, 0, sizeof r);
    float f32a[64], f32b[64];
    double f64a[8];
    uint16_t h16[8];
    int32_t i32a[8];
    uint8_t u8a[16], u8b[16];
    const char *w = s->word;
    if (!strcmp(w, "imageout")) {
        const float *v = x[0]->data;
        for (int p = 0; p < 4; p++) {
            u8b[p] = (uint8_t)v[p];                 /* mask: gray */
            u8a[3 * p] = (uint8_t)v[p];             /* rendered: R G B */
            u8a[3 * p + 1] = (uint8_t)(v[p] + 1);
            u8a[3 * p + 2] = (uint8_t)(v[p] + 2);
        }
        r[0] = (result){"mask", CMB_DTYPE_U8, 3, {2, 2, 1}, u8b};
        r[1] = (result){"rendered", CMB_DTYPE_U8, 3, {2, 2, 3}, u8a};
    } else if (!strcmp(w, "image") || !strcmp(w, "bgra")) {
        /* Fill a 32BGRA buffer from R, G, B the way Predict.swift's pixelBuffer does. */
        const uint8_t *px = x[0]->data;
        uint8_t bgra[16];
        for (int p = 0; p < 4; p++) {
            bgra[4 * p] = px[3 * p + 2];
            bgra[4 * p + 1] = px[3 * p + 1];
            bgra[4 * p + 2] = px[3 * p];
            bgra[4 * p + 3] = 255;
        }
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = &bgra[4 * p];
            f32a[p] = !strcmp(w, "image") ? (float)q[0] + q[1] + q[2]
                                         : (float)q[2] * 65536.0f + q[1] * 256.0f + q[0];
        }
        r[0] = (result){s->out[0].name, CMB_DTYPE_F32, 2, {1, 4}, f32a};
    } else if (!strcmp(w, "gray")) {
        const uint8_t *px = x[0]->data;
        float acc = 0;
        for (int i = 0; i < 6; i++) acc += (float)(i + 1) * px[i];
        f32a[0] = acc;
        r[0] = (result){"weighted", CMB_DTYPE_F32, 2, {1, 1}, f32a};
    } else if (!strcmp(w, "multi")) {
        const float *a = x[0]->data, *b = x[1]->data;
        for (int i = 0; i < 4; i++) { f32a[i] = a[i] * b[i]; f32b[i] = a[i] + b[i]; }
        r[0] = (result){"prod", CMB_DTYPE_F32, 2, {1, 4}, f32a};
        r[1] = (result){"sum", CMB_DTYPE_F32, 2, {1, 4}, f32b};
    } else if (!strcmp(w, "f16")) {
        const uint16_t *v = x[0]->data;
        for (int i = 0; i < 6; i++) h16[i] = half_neg(v[i]);
        r[0] = (result){"y", CMB_DTYPE_F16, 2, {2, 3}, h16};
    } else if (!strcmp(w, "i32")) {
        const int32_t *v = x[0]->data;
        for (int i = 0; i < 5; i++) i32a[i] = 3 * v[i] - 1;
        r[0] = (result){"next", CMB_DTYPE_I32, 2, {1, 5}, i32a};
    } else if (!strcmp(w, "f64")) {
        const float *v = x[0]->data;
        for (int i = 0; i < 3; i++) f64a[i] = (double)v[i] / 3.0;
        r[0] = (result){"y", SRC_F64, 2, {1, 3}, f64a};
    } else if (!strcmp(w, "flex") || !strcmp(w, "undeclared")) {
        int64_t n = count_of(x[0]->shape, x[0]->rank);
        if (n > 64) return fail(err, CMB_ERR_PREDICT, "fake bridge: input `x` above 64 elements%s", "");
        const float *v = x[0]->data;
        int flex = !strcmp(w, "flex");
        for (int64_t i = 0; i < n; i++) f32a[i] = flex ? 10.0f * v[i] : v[i] + 0.5f;
        r[0] = (result){"y", CMB_DTYPE_F32, flex ? x[0]->rank : 1, {0}, f32a};
        if (flex) for (uint32_t d = 0; d < x[0]->rank; d++) r[0].shape[d] = x[0]->shape[d];
        else r[0].shape[0] = n;
    } else {
        /* default, baddtype, badinput (never reached: Rust refuses it) */
        const float *v = x[0]->data;
        for (int i = 0; i < 4; i++) f32a[i] = 2.0f * v[i] + 1.0f;
        r[0] = (result){"output", CMB_DTYPE_F32, 2, {1, has(m, "badsize") ? 5 : 4}, f32a};
    }

    int too_small = 0;
    for (uint32_t j = 0; j < n_out; j++) {
        const char *want = out[j].name;
        const result *hit = NULL;
        for (int k = 0; k < 3 && !hit; k++)
            if (r[k].name && want && !strcmp(r[k].name, want)) hit = &r[k];
        if (!hit) {
            for (uint32_t k = 0; k < s->n_out; k++)
                if (want && !strcmp(s->out[k].name, want))
                    return fail(err, CMB_ERR_OUTPUT,
                                "fake bridge: output `%s` is neither a multi-array nor an image", want);
            return fail(err, CMB_ERR_OUTPUT, "fake bridge: the model produced no output `%s`",
                        want ? want : "(null)");
        }
        if (has(m, "badsize")) {
            /* A lying bridge: claims shape [1,5] but writes 16 bytes. */
            memcpy(out[j].data, hit->data, 16);
            out[j].rank = 2; out[j].shape[0] = 1; out[j].shape[1] = 5;
            out[j].strides[0] = 5; out[j].strides[1] = 1;
            out[j].bytes_written = 16;
            continue;
        }
        int32_t st = deliver(&out[j], hit, err);
        if (st == 1) too_small = 1;
        else if (st != CMB_OK) return st;
    }
    if (too_small) {
        pthread_mutex_lock(&g_lock);
        g_stats.outputs_too_small++;
        pthread_mutex_unlock(&g_lock);
        return fail(err, CMB_ERR_OUTPUT,
                    "fake bridge: an output does not fit its buffer%s (shape written to the "
                    "descriptor: size the buffer from it and run again)", "");
    }
    return CMB_OK;
}

int32_t cmb_model_predict(cmb_model *model, const cmb_tensor *inputs, uint32_t n_inputs,
                          cmb_tensor *outputs, uint32_t n_outputs, char **err) {
    if (!model)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: NULL model%s", "");
    pthread_mutex_lock(&g_lock);
    g_stats.predicts++;
    if (model->in_flight++ > 0) g_stats.overlaps++;
    model->cancel_requested = 0; /* requests count from the start of this call */
    g_in_flight_total++;
    if ((uint64_t)g_in_flight_total > g_stats.max_in_flight)
        g_stats.max_in_flight = (uint64_t)g_in_flight_total;
    pthread_mutex_unlock(&g_lock);
    int32_t status = predict_body(model, inputs, n_inputs, outputs, n_outputs, err);
    pthread_mutex_lock(&g_lock);
    model->in_flight--;
    g_in_flight_total--;
    pthread_mutex_unlock(&g_lock);
    return status;
}
#endif
