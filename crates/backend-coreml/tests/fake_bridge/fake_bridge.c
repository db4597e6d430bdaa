/*
 * fake_bridge.c - TEST SUPPORT ONLY, never a backend. Implements coreml_bridge.h with scripted
 * behaviour so the Rust side (loader, handles, pool, deadlines, cache) runs on Linux.
 *
 * Behaviour is chosen by words in the model path (the original path is recorded in the compiled
 * folder, so it survives the compile cache):
 *   compile_error  cmb_compile_model fails          load_error     cmb_model_load fails
 *   predict_error  cmb_model_predict fails          slow           predict sleeps 40 ms
 *   hang           predict blocks until fake_release_hangs(1)   badsize  output shape lies
 *   image          input is a 2x2 RGB image         plan           a compute plan exists
 * Default: input "input" f32 [1,4], output "output" f32 [1,4] = 2*x + 1.
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
} fake_stats_t;

struct cmb_model {
    char mode[1024];
    int in_flight;
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
    if (strstr(model_path, "compile_error"))
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
    if (strstr(m->mode, "load_error")) {
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

static int is_image(const cmb_model *m) { return strstr(m->mode, "image") != NULL; }

int32_t cmb_model_feature_count(const cmb_model *model, int32_t io, uint32_t *out_count,
                                char **err) {
    if (!model || !out_count || (io != CMB_IO_INPUT && io != CMB_IO_OUTPUT))
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_feature_count");
    *out_count = 1;
    return CMB_OK;
}

int32_t cmb_model_feature_describe(const cmb_model *model, int32_t io, uint32_t index,
                                   cmb_feature_desc *out, char **err) {
    if (!model || !out || index != 0 || (io != CMB_IO_INPUT && io != CMB_IO_OUTPUT))
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_feature_describe");
    memset(out, 0, sizeof *out);
    out->image_format = -1;
    if (io == CMB_IO_INPUT && is_image(model)) {
        snprintf(out->name, sizeof out->name, "image");
        out->kind = CMB_FEATURE_IMAGE;
        out->dtype = CMB_DTYPE_U8;
        out->rank = 3;
        out->shape[0] = 2; out->shape[1] = 2; out->shape[2] = 3;
        out->image_width = 2;
        out->image_height = 2;
        out->image_format = CMB_IMAGE_RGB;
        out->image_pixel_format = 0x42475241; /* 'BGRA' */
        return CMB_OK;
    }
    snprintf(out->name, sizeof out->name, io == CMB_IO_INPUT ? "input" : "output");
    out->kind = CMB_FEATURE_MULTIARRAY;
    out->dtype = CMB_DTYPE_F32;
    out->rank = 2;
    out->shape[0] = 1;
    out->shape[1] = 4;
    return CMB_OK;
}

int32_t cmb_model_compute_plan(cmb_model *model, uint32_t timeout_ms, cmb_plan_op *ops,
                               uint32_t capacity, uint32_t *out_total, char **err) {
    if (!model || !out_total || timeout_ms == 0)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_compute_plan");
    if (!strstr(model->mode, "plan"))
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

/* ABI 2: the fake's predictions are synchronous, like Core ML before macOS 14. */
int32_t cmb_model_cancel(cmb_model *model, char **err) {
    if (!model)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad argument to %s",
                    "cmb_model_cancel");
    return fail(err, CMB_ERR_UNSUPPORTED, "fake bridge: %s cannot stop a prediction",
                "cmb_model_cancel");
}

#ifndef FAKE_OMIT_PREDICT
static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int32_t predict_body(cmb_model *m, const cmb_tensor *in, uint32_t n_in, cmb_tensor *out,
                            uint32_t n_out, char **err) {
    if (!in || n_in != 1 || !out || n_out != 1)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: expected 1 input and 1 output%s",
                    "");
    const char *want = is_image(m) ? "image" : "input";
    if (!in[0].name || strcmp(in[0].name, want) != 0)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: unknown input `%s`",
                    in[0].name ? in[0].name : "(null)");
    if (!out[0].name || strcmp(out[0].name, "output") != 0)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: unknown output `%s`",
                    out[0].name ? out[0].name : "(null)");
    float x[4];
    if (is_image(m)) {
        if (in[0].dtype != CMB_DTYPE_U8 || in[0].bytes != 12 || in[0].rank != 3 ||
            in[0].strides[2] != 1 || in[0].strides[1] != 3 || in[0].strides[0] != 6)
            return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad image descriptor%s", "");
        const uint8_t *px = in[0].data;
        for (int i = 0; i < 4; i++) x[i] = (float)px[3 * i] + px[3 * i + 1] + px[3 * i + 2];
    } else {
        if (in[0].dtype != CMB_DTYPE_F32 || in[0].bytes != 16 || in[0].rank != 2 ||
            in[0].shape[1] != 4 || in[0].strides[1] != 1 || in[0].strides[0] != 4)
            return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: bad input descriptor%s", "");
        memcpy(x, in[0].data, sizeof x);
        for (int i = 0; i < 4; i++) x[i] = 2.0f * x[i] + 1.0f;
    }
    if (strstr(m->mode, "predict_error"))
        return fail(err, CMB_ERR_PREDICT,
                    "fake bridge: prediction failed: scripted failure (model %s)", m->mode);
    if (strstr(m->mode, "slow")) sleep_ms(40);
    if (strstr(m->mode, "hang")) {
        pthread_mutex_lock(&g_lock);
        g_stats.hung_now++;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 60; /* never block a test run for ever */
        while (!g_hangs_released) {
            if (pthread_cond_timedwait(&g_hang_cond, &g_lock, &until) == ETIMEDOUT) break;
        }
        g_stats.hung_now--;
        pthread_mutex_unlock(&g_lock);
    }
    if (out[0].dtype != CMB_DTYPE_F32 || out[0].bytes < 16 || !out[0].data)
        return fail(err, CMB_ERR_OUTPUT, "fake bridge: output buffer too small or not f32%s", "");
    memcpy(out[0].data, x, sizeof x);
    out[0].rank = 2;
    out[0].shape[0] = 1;
    out[0].shape[1] = strstr(m->mode, "badsize") ? 5 : 4;
    out[0].strides[0] = out[0].shape[1];
    out[0].strides[1] = 1;
    out[0].bytes_written = 16;
    return CMB_OK;
}

int32_t cmb_model_predict(cmb_model *model, const cmb_tensor *inputs, uint32_t n_inputs,
                          cmb_tensor *outputs, uint32_t n_outputs, char **err) {
    if (!model)
        return fail(err, CMB_ERR_INVALID_ARGUMENT, "fake bridge: NULL model%s", "");
    pthread_mutex_lock(&g_lock);
    g_stats.predicts++;
    if (model->in_flight++ > 0) g_stats.overlaps++;
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
