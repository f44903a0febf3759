/* charwright.runtime.sampling._speedups: the C sampler (runtime/c/sampler.h, the same source the
 * emitted C runtime compiles) behind a CPython type, batched: one call samples every row of a
 * step. Built at `pip install` when a C compiler is there (setup.py: optional, a failed build
 * installs the numpy path); runtime/sampling/compiled.py wraps it in Sampler's interface.
 *
 *   core = Core(temperature, top_k, top_p, min_p, typical_p, repetition_penalty,
 *               repetition_window, greedy, vocab_size)     top_k 0 = off; the ranges of
 *                                                          SamplingConfig (ValueError outside)
 *   core.join(prompts, seeds, row_ids)   prompts: list of int32 C-contiguous arrays (their
 *                                        last repetition_window ids are enough); seeds, row_ids:
 *                                        uint64 arrays, one per row; rows join at the end
 *   core.take(keep)                      keep: int64 array of row indices; only they stay
 *   core.sample(z, out[, allowed])       z: float32 C-contiguous [rows, V], changed in place;
 *                                        out: int64 [rows] receives the ids; allowed: bool
 *                                        [rows, V] (False: -inf after the penalty) or None
 *   core.row_state(i)                    (seed, row id, coins drawn, window ids oldest first
 *                                        as a list, or None when the penalty is off)
 *   core.set_row_state(i, seed, row, coins, window)   coins -1: unchanged; window None:
 *                                        unchanged, else an int32 array (its last ids)
 *   core.set_fast(np.empty, np.dtype(np.int64), fallback)
 *   ids = core.pick(z)                   sample with a new int64 [rows] made in C (no Python
 *                                        frame: Sampler.sample); another z: fallback(core, z)
 *   n = core.run_steps(invoke, args, token_in, state_in, logits, new_state, z0, limit, eos,
 *                      out[, on_error]) up to `limit` rounds of (backend step, sample) in C over
 *                                        the backend's own buffers (Generator.advance)
 *   core.rows                            the number of rows
 *   SOURCE_SHA256                        sha256 of _speedups.c + sampler.h as built (setup.py)
 *
 * Per-row state lives in C buffers: cw_row (key, coins drawn, the window's place) and the
 * windows, W int32 per row. The GIL is released around a large step (rows x V >= 16384);
 * a call made meanwhile from another thread raises RuntimeError instead of racing. *
 * (About 720 lines, one idea: the C type over the sampler's rows; its methods share the buffer
 * checks and the busy guard, which a split would only pass around.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../c/sampler.h"

typedef struct {
    PyObject_HEAD
    cw_sampling cfg;
    int V;
    int busy;               /* 1 while a sample call runs without the GIL */
    Py_ssize_t rows, cap;
    cw_row *row;            /* [cap] */
    int32_t *win;           /* [cap * W] when the penalty is on, else NULL */
    uint64_t *seed, *rid;   /* [cap]: what row_state reports */
    void *scratch;          /* CW_SCRATCH_BYTES(V) */
    PyObject *empty, *dtype, *fallback; /* fast(): numpy.empty, int64, f(core, z) (no cycle) */
} Core;

static void core_repoint(Core *c) {
    Py_ssize_t i;
    for (i = 0; i < c->rows; i++)
        c->row[i].window = c->win ? c->win + (size_t)i * (size_t)c->cfg.window : NULL;
}

static int core_reserve(Core *c, Py_ssize_t n) {
    Py_ssize_t cap = c->cap ? c->cap : 4;
    cw_row *row;
    uint64_t *seed, *rid;
    if (n <= c->cap) return 0;
    while (cap < n) cap *= 2;
    if ((size_t)cap > ((size_t)PY_SSIZE_T_MAX / sizeof(cw_row)) / 2) {
        PyErr_NoMemory();
        return -1;
    }
    row = (cw_row *)PyMem_Realloc(c->row, (size_t)cap * sizeof *row);
    if (!row) goto fail;
    c->row = row;
    seed = (uint64_t *)PyMem_Realloc(c->seed, (size_t)cap * sizeof *seed);
    if (!seed) goto fail;
    c->seed = seed;
    rid = (uint64_t *)PyMem_Realloc(c->rid, (size_t)cap * sizeof *rid);
    if (!rid) goto fail;
    c->rid = rid;
    if (c->cfg.penalty_on) {
        int32_t *win = (int32_t *)PyMem_Realloc(
            c->win, (size_t)cap * (size_t)c->cfg.window * sizeof *win);
        if (!win) goto fail;
        c->win = win;
    }
    c->cap = cap;
    core_repoint(c);
    return 0;
fail:
    core_repoint(c);
    PyErr_NoMemory();
    return -1;
}

static int core_check_idle(Core *c) {
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the sampler is in use by another thread or by a callback "
                        "within its call (one call at a time)");
        return -1;
    }
    return 0;
}

static int core_init(Core *self, PyObject *args, PyObject *kw) {
    double t, top_p, min_p, typ, pen;
    int top_k, window, greedy, V;
    static char *names[] = {"temperature", "top_k", "top_p", "min_p", "typical_p",
                            "repetition_penalty", "repetition_window", "greedy", "vocab_size",
                            NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "diddddiii", names, &t, &top_k, &top_p,
                                     &min_p, &typ, &pen, &window, &greedy, &V))
        return -1;
    if (self->row || self->scratch) {
        PyErr_SetString(PyExc_RuntimeError, "Core is initialised once");
        return -1;
    }
    if (V < 1 || cw_sampling_init(&self->cfg, t, top_k, top_p, min_p, typ, pen, window,
                                  greedy) != CW_SAMPLER_OK) {
        PyErr_SetString(PyExc_ValueError, "sampling settings out of range");
        return -1;
    }
    self->V = V;
    self->scratch = PyMem_Calloc(1, CW_SCRATCH_BYTES(V));
    if (!self->scratch) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void core_dealloc(Core *self) {
    Py_XDECREF(self->empty);
    Py_XDECREF(self->dtype);
    Py_XDECREF(self->fallback);
    PyMem_Free(self->row);
    PyMem_Free(self->win);
    PyMem_Free(self->seed);
    PyMem_Free(self->rid);
    PyMem_Free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* a C-contiguous buffer of ndim 1 and one of the integer formats given ('i' int32, 'q' int64,
 * 'Q' uint64; 'l'/'L' accepted where they are 8 bytes) */
static int get_ints(PyObject *o, Py_buffer *b, int itemsize, int is_unsigned, const char *what) {
    const char *f;
    if (PyObject_GetBuffer(o, b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (b->ndim != 1 || b->itemsize != itemsize || f[1] != '\0' ||
        !(itemsize == 4 ? (*f == 'i' || (*f == 'l' && sizeof(long) == 4))
                        : is_unsigned ? (*f == 'Q' || (*f == 'L' && sizeof(long) == 8))
                                      : (*f == 'q' || (*f == 'l' && sizeof(long) == 8)))) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_TypeError, "%s: a 1-D C-contiguous %s array expected", what,
                     itemsize == 4 ? "int32" : is_unsigned ? "uint64" : "int64");
        return -1;
    }
    return 0;
}

static PyObject *core_join(Core *self, PyObject *args) {
    PyObject *prompts, *seeds_o, *rids_o;
    Py_buffer sb, rb;
    Py_ssize_t n, i, at;
    if (!PyArg_ParseTuple(args, "O!OO", &PyList_Type, &prompts, &seeds_o, &rids_o)) return NULL;
    if (core_check_idle(self) < 0) return NULL;
    n = PyList_GET_SIZE(prompts);
    if (get_ints(seeds_o, &sb, 8, 1, "seeds") < 0) return NULL;
    if (get_ints(rids_o, &rb, 8, 1, "row_ids") < 0) {
        PyBuffer_Release(&sb);
        return NULL;
    }
    if (sb.shape[0] != n || rb.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "join: one seed and one row id per prompt");
        goto fail;
    }
    if (core_reserve(self, self->rows + n) < 0) goto fail;
    self->busy = 1; /* a prompt's __buffer__ (3.12+) may call back into this core */
    for (i = 0, at = self->rows; i < n; i++, at++) {
        Py_buffer pb;
        uint64_t seed = ((const uint64_t *)sb.buf)[i];
        if (get_ints(PyList_GET_ITEM(prompts, i), &pb, 4, 0, "prompt") < 0) goto undo;
        if (seed > 0x7FFFFFFFFFFFFFFFu ||
            cw_row_init(&self->row[at], &self->cfg, seed, ((const uint64_t *)rb.buf)[i],
                        self->win ? self->win + (size_t)at * (size_t)self->cfg.window : NULL,
                        (const int32_t *)pb.buf, (long)pb.shape[0]) != CW_SAMPLER_OK) {
            PyBuffer_Release(&pb);
            PyErr_SetString(PyExc_ValueError, "join: a seed outside 0..2**63-1");
            goto undo;
        }
        {
            const int32_t *ids = (const int32_t *)pb.buf;
            Py_ssize_t k;
            for (k = 0; k < pb.shape[0]; k++)
                if (ids[k] < 0 || ids[k] >= self->V) {
                    PyBuffer_Release(&pb);
                    PyErr_SetString(PyExc_ValueError, "join: a prompt id outside the vocabulary");
                    goto undo;
                }
        }
        PyBuffer_Release(&pb);
        self->seed[at] = seed;
        self->rid[at] = ((const uint64_t *)rb.buf)[i];
    }
    self->busy = 0;
    self->rows += n;
    PyBuffer_Release(&sb);
    PyBuffer_Release(&rb);
    Py_RETURN_NONE;
undo: /* no row joined: the rows before stay as they were */
    self->busy = 0;
fail:
    PyBuffer_Release(&sb);
    PyBuffer_Release(&rb);
    return NULL;
}

static PyObject *core_take(Core *self, PyObject *arg) {
    Py_buffer kb;
    Py_ssize_t n, i, W;
    cw_row *row = NULL;
    int32_t *win = NULL;
    uint64_t *seed = NULL, *rid = NULL;
    const int64_t *keep;
    if (core_check_idle(self) < 0) return NULL;
    if (get_ints(arg, &kb, 8, 0, "keep") < 0) return NULL;
    n = kb.shape[0];
    keep = (const int64_t *)kb.buf;
    for (i = 0; i < n; i++)
        if (keep[i] < 0 || keep[i] >= self->rows) {
            PyBuffer_Release(&kb);
            PyErr_SetString(PyExc_IndexError, "take: a row index out of range");
            return NULL;
        }
    W = self->cfg.window;
    if (n) {
        row = (cw_row *)PyMem_Malloc((size_t)n * sizeof *row);
        seed = (uint64_t *)PyMem_Malloc((size_t)n * sizeof *seed);
        rid = (uint64_t *)PyMem_Malloc((size_t)n * sizeof *rid);
        if (self->win) win = (int32_t *)PyMem_Malloc((size_t)n * (size_t)W * sizeof *win);
        if (!row || !seed || !rid || (self->win && !win)) {
            PyMem_Free(row);
            PyMem_Free(seed);
            PyMem_Free(rid);
            PyMem_Free(win);
            PyBuffer_Release(&kb);
            return PyErr_NoMemory();
        }
        for (i = 0; i < n; i++) {
            row[i] = self->row[keep[i]];
            seed[i] = self->seed[keep[i]];
            rid[i] = self->rid[keep[i]];
            if (win)
                memcpy(win + (size_t)i * (size_t)W, self->win + (size_t)keep[i] * (size_t)W,
                       (size_t)W * sizeof *win);
        }
    }
    PyBuffer_Release(&kb);
    PyMem_Free(self->row);
    PyMem_Free(self->seed);
    PyMem_Free(self->rid);
    PyMem_Free(self->win);
    self->row = row;
    self->seed = seed;
    self->rid = rid;
    self->win = win;
    self->rows = self->cap = n;
    core_repoint(self);
    Py_RETURN_NONE;
}

static int is_format(const Py_buffer *b, char c) {
    const char *f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    return f[0] == c && f[1] == '\0';
}

/* every row's pick into out [rows]; the GIL released for a large step (busy meanwhile) */
static void core_run(Core *self, float *z, int64_t *out, const unsigned char *allowed) {
    Py_ssize_t r, rows = self->rows;
    int V = self->V, release = (double)rows * (double)V >= 16384.0;
    PyThreadState *ts;
    self->busy = 1;
    ts = release ? PyEval_SaveThread() : NULL;
    for (r = 0; r < rows; r++) {
        int id = 0;
        cw_sample_row(&self->cfg, &self->row[r], z + (size_t)r * (size_t)V, V,
                      allowed ? allowed + (size_t)r * (size_t)V : NULL, self->scratch, &id);
        out[r] = id;
    }
    if (release) PyEval_RestoreThread(ts);
    self->busy = 0;
}

static PyObject *core_sample(Core *self, PyObject *args) {
    PyObject *zo, *oo, *ao = Py_None;
    Py_buffer zb, ob, ab;
    Py_ssize_t rows;
    int V = self->V;
    const unsigned char *allowed = NULL;
    if (!PyArg_ParseTuple(args, "OO|O", &zo, &oo, &ao)) return NULL;
    if (core_check_idle(self) < 0) return NULL;
    if (PyObject_GetBuffer(zo, &zb, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    rows = self->rows;
    if (zb.ndim != 2 || zb.itemsize != 4 || !is_format(&zb, 'f') || zb.shape[0] != rows ||
        zb.shape[1] != V) {
        PyBuffer_Release(&zb);
        PyErr_Format(PyExc_TypeError, "z: a C-contiguous float32 array [%zd, %d] expected",
                     rows, V);
        return NULL;
    }
    if (PyObject_GetBuffer(oo, &ob, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&zb);
        return NULL;
    }
    if (ob.ndim != 1 || ob.itemsize != 8 || ob.shape[0] != rows ||
        !(is_format(&ob, 'q') || (sizeof(long) == 8 && is_format(&ob, 'l')))) {
        PyBuffer_Release(&zb);
        PyBuffer_Release(&ob);
        PyErr_Format(PyExc_TypeError, "out: a C-contiguous int64 array [%zd] expected", rows);
        return NULL;
    }
    if (ao != Py_None) {
        if (PyObject_GetBuffer(ao, &ab, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
            PyBuffer_Release(&zb);
            PyBuffer_Release(&ob);
            return NULL;
        }
        if (ab.ndim != 2 || ab.itemsize != 1 || ab.shape[0] != rows || ab.shape[1] != V ||
            !(is_format(&ab, '?') || is_format(&ab, 'B'))) {
            PyBuffer_Release(&zb);
            PyBuffer_Release(&ob);
            PyBuffer_Release(&ab);
            PyErr_Format(PyExc_TypeError,
                         "allowed: a C-contiguous bool array [%zd, %d] expected", rows, V);
            return NULL;
        }
        allowed = (const unsigned char *)ab.buf;
    }
    if (self->busy || self->rows != rows) { /* changed by a __buffer__ callback */
        PyBuffer_Release(&zb);
        PyBuffer_Release(&ob);
        if (allowed) PyBuffer_Release(&ab);
        PyErr_SetString(PyExc_RuntimeError, "sample: the rows changed during the call");
        return NULL;
    }
    core_run(self, (float *)zb.buf, (int64_t *)ob.buf, allowed);
    PyBuffer_Release(&zb);
    PyBuffer_Release(&ob);
    if (allowed) PyBuffer_Release(&ab);
    Py_RETURN_NONE;
}

static PyObject *core_set_fast(Core *self, PyObject *args) {
    PyObject *empty, *dtype, *fallback;
    if (!PyArg_ParseTuple(args, "OOO", &empty, &dtype, &fallback)) return NULL;
    Py_XSETREF(self->empty, Py_NewRef(empty));
    Py_XSETREF(self->dtype, Py_NewRef(dtype));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_RETURN_NONE;
}

/* fallback(core, z), holding fallback across the call (it may call set_fast) */
static PyObject *core_fallback(Core *self, PyObject *zo) {
    PyObject *f = Py_NewRef(self->fallback), *r;
    r = PyObject_CallFunctionObjArgs(f, (PyObject *)self, zo, NULL);
    Py_DECREF(f);
    return r;
}

/* ids = core.pick(z): sample's work with a new int64 [rows] made here (numpy.empty, given by
 * set_fast) and no Python frame between the caller and C; a z that is not C-contiguous float32
 * [rows, V] goes to fallback(core, z), which converts it. */
static PyObject *core_pick(Core *self, PyObject *zo) {
    Py_buffer zb, ob;
    PyObject *out, *args[2];
    if (!self->empty) {
        PyErr_SetString(PyExc_RuntimeError, "pick: set_fast first");
        return NULL;
    }
    if (core_check_idle(self) < 0) return NULL;
    if (PyObject_GetBuffer(zo, &zb, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        return core_fallback(self, zo);
    }
    if (zb.ndim != 2 || zb.itemsize != 4 || !is_format(&zb, 'f') || zb.shape[0] != self->rows ||
        zb.shape[1] != self->V) {
        PyBuffer_Release(&zb);
        return core_fallback(self, zo);
    }
    args[0] = PyLong_FromSsize_t(self->rows);
    if (!args[0]) {
        PyBuffer_Release(&zb);
        return NULL;
    }
    { /* empty may call set_fast: hold what this call uses */
        PyObject *empty = Py_NewRef(self->empty);
        args[1] = Py_NewRef(self->dtype);
        out = PyObject_Vectorcall(empty, args, 2, NULL);
        Py_DECREF(empty);
        Py_DECREF(args[1]);
    }
    Py_DECREF(args[0]);
    if (!out || PyObject_GetBuffer(out, &ob, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_XDECREF(out);
        PyBuffer_Release(&zb);
        return NULL;
    }
    if (ob.len != self->rows * 8 || zb.shape[0] != self->rows || self->busy) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&zb);
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "pick: set_fast's empty did not give int64 [rows]");
        return NULL;
    }
    core_run(self, (float *)zb.buf, (int64_t *)ob.buf, NULL);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&zb);
    return out;
}

/* a C-contiguous buffer of `itemsize`-byte items, format one of `fmts`, with this many items
 * (writable when asked); TypeError naming `what` otherwise */
static int get_view(PyObject *o, Py_buffer *b, int writable, int itemsize, const char *fmts,
                    Py_ssize_t items, const char *what) {
    const char *f;
    if (PyObject_GetBuffer(o, b, (writable ? PyBUF_WRITABLE : 0) | PyBUF_FORMAT |
                                     PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (b->itemsize != itemsize || f[0] == '\0' || f[1] != '\0' || !strchr(fmts, f[0]) ||
        b->len != items * itemsize) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_TypeError, "run_steps: %s: a C-contiguous array of %zd %s expected",
                     what, items, itemsize == 4 && strchr(fmts, 'f') ? "float32" : "ints");
        return -1;
    }
    return 0;
}

/* steps = core.run_steps(invoke, args, token_in, state_in, logits, new_state, z0, limit, eos,
 *                        out)
 * Up to `limit` steps of the generation loop for every row, in C: the same ids, in the same
 * order, with the same coins and windows as `limit` rounds of (backend step, sample). The
 * backend's step is `invoke(*args)` over buffers it owns (LiteRT's arena views, onnxruntime's
 * IOBinding): token_in int32 [rows], state_in float32 [rows, S] (its input), logits float32
 * [rows, V] and new_state float32 [rows, S] (its output). The caller has written state_in (the
 * rows' state) and, when z0 is None, token_in (the ids they feed next); z0 (float32 [rows, V],
 * changed in place) is the logits of rows that were just primed: the first round samples from
 * them without a step. Each round after that: ids -> token_in, new_state -> state_in (the
 * first round after z0 feeds the state the caller wrote), invoke, sample from logits (in
 * place: the next invoke writes it anew); a signal's handler runs between rounds (Ctrl-C's
 * KeyboardInterrupt propagates). Stops after the round in which some row picks `eos`
 * (eos < 0: never) or after `limit` rounds; out int64 [limit, rows] receives the ids. Returns
 * the rounds done; the rows' state is then new_state if invoke ran, else what the caller
 * wrote. An Exception from invoke becomes on_error(exc) when on_error is given (the backend's
 * typed error); the rounds before it have drawn their coins, so a failed call leaves the rows
 * unusable. The GIL is released while a large round (rows x V >= 16384) samples. */
/* invoke(*args), and when it raises an Exception (not a BaseException such as
 * KeyboardInterrupt), on_error(exc)'s result is raised instead (None: as it is) */
static int call_invoke(PyObject *invoke, PyObject *iargs, PyObject *on_error) {
    PyObject *res = PyObject_Call(invoke, iargs, NULL), *t, *v, *tb, *mapped;
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    if (on_error == Py_None || !PyErr_ExceptionMatches(PyExc_Exception)) return -1;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v) PyException_SetTraceback(v, tb);
    mapped = PyObject_CallOneArg(on_error, v ? v : Py_None);
    if (!mapped) { /* on_error itself failed: that error stands */
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return -1;
    }
    if (PyExceptionInstance_Check(mapped)) {
        PyErr_SetObject((PyObject *)Py_TYPE(mapped), mapped);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(t, v, tb);
    }
    Py_DECREF(mapped);
    return -1;
}

static PyObject *core_run_steps(Core *self, PyObject *args) {
    PyObject *invoke, *iargs, *to, *so, *lo, *no, *zo, *oo, *on_error = Py_None, *r = NULL;
    Py_ssize_t limit, k = 0, rows = self->rows, i;
    long eos;
    int V = self->V, got = 0, stop;
    Py_buffer tb, sb, lb, nb, zb, ob;
    Py_ssize_t S;
    if (!PyArg_ParseTuple(args, "OO!OOOOOnlO|O", &invoke, &PyTuple_Type, &iargs, &to, &so, &lo,
                          &no, &zo, &limit, &eos, &oo, &on_error))
        return NULL;
    if (on_error != Py_None && !PyCallable_Check(on_error)) {
        PyErr_SetString(PyExc_TypeError, "run_steps: on_error must be callable or None");
        return NULL;
    }
    if (core_check_idle(self) < 0) return NULL;
    if (!PyCallable_Check(invoke)) {
        PyErr_SetString(PyExc_TypeError, "run_steps: invoke must be callable");
        return NULL;
    }
    if (rows < 1 || limit < 1 || limit > PY_SSIZE_T_MAX / 8 / rows) {
        PyErr_SetString(PyExc_ValueError, "run_steps: needs rows >= 1 and 1 <= limit <= "
                                          "what out can hold");
        return NULL;
    }
    if (get_view(to, &tb, 1, 4, "il", rows, "token_in") < 0) return NULL;
    got = 1;
    /* the state's width comes from state_in itself: [rows, S] */
    if (PyObject_GetBuffer(so, &sb, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    got = 2;
    if (sb.itemsize != 4 || !is_format(&sb, 'f') || sb.len % (rows * 4) != 0 || sb.len == 0) {
        PyErr_SetString(PyExc_TypeError, "run_steps: state_in: float32 [rows, S] expected");
        goto done;
    }
    S = sb.len / (rows * 4);
    if (get_view(lo, &lb, 1, 4, "f", rows * V, "logits") < 0) goto done;
    got = 3;
    if (get_view(no, &nb, 0, 4, "f", rows * S, "new_state") < 0) goto done;
    got = 4;
    if (zo != Py_None) {
        if (get_view(zo, &zb, 1, 4, "f", rows * V, "z0") < 0) goto done;
    }
    got = 5;
    if (get_view(oo, &ob, 1, 8, "ql", limit * rows, "out") < 0) goto done;
    got = 6;
    if (self->rows != rows) { /* changed by a __buffer__ callback */
        PyErr_SetString(PyExc_RuntimeError, "run_steps: the rows changed during the call");
        goto done;
    }
    {
        int32_t *tok = (int32_t *)tb.buf;
        float *z = zo != Py_None ? (float *)zb.buf : NULL;
        int64_t *out = (int64_t *)ob.buf;
        int fed = 1; /* state_in holds the state to feed: what the caller wrote */
        int release = (double)rows * (double)V >= 16384.0; /* as core_run: a large round */
        self->busy = 1;
        if (!z) {
            if (call_invoke(invoke, iargs, on_error) < 0) goto busy_fail;
            fed = 0;
        }
        for (;;) {
            float *zk = (k == 0 && z) ? z : (float *)lb.buf;
            int64_t *ids = out + (size_t)k * (size_t)rows;
            PyThreadState *ts = release ? PyEval_SaveThread() : NULL;
            stop = 0;
            for (i = 0; i < rows; i++) {
                int id = 0;
                cw_sample_row(&self->cfg, &self->row[i], zk + (size_t)i * (size_t)V, V, NULL,
                              self->scratch, &id);
                ids[i] = id;
                stop |= (eos >= 0 && id == eos);
            }
            if (release) PyEval_RestoreThread(ts);
            k++;
            if (stop || k == limit) break;
            for (i = 0; i < rows; i++) tok[i] = (int32_t)ids[i];
            if (!fed) memmove(sb.buf, nb.buf, (size_t)sb.len);
            fed = 0;
            if (PyErr_CheckSignals() < 0) goto busy_fail; /* Ctrl-C between two steps */
            if (call_invoke(invoke, iargs, on_error) < 0) goto busy_fail;
        }
        self->busy = 0;
        r = PyLong_FromSsize_t(k);
        goto done;
    busy_fail:
        self->busy = 0;
    }
done:
    if (got >= 6) PyBuffer_Release(&ob);
    if (got >= 5 && zo != Py_None) PyBuffer_Release(&zb);
    if (got >= 4) PyBuffer_Release(&nb);
    if (got >= 3) PyBuffer_Release(&lb);
    if (got >= 2) PyBuffer_Release(&sb);
    if (got >= 1) PyBuffer_Release(&tb);
    return r;
}

static int core_index(Core *self, PyObject *o, Py_ssize_t *i) {
    *i = PyNumber_AsSsize_t(o, PyExc_IndexError);
    if (*i == -1 && PyErr_Occurred()) return -1;
    if (*i < 0 || *i >= self->rows) {
        PyErr_Format(PyExc_IndexError, "row %zd: the sampler has %zd rows", *i, self->rows);
        return -1;
    }
    return 0;
}

static PyObject *core_row_state(Core *self, PyObject *arg) {
    Py_ssize_t i;
    PyObject *win;
    if (core_check_idle(self) < 0 || core_index(self, arg, &i) < 0) return NULL;
    if (self->win) {
        const cw_row *r = &self->row[i];
        int32_t k;
        win = PyList_New(r->count);
        if (!win) return NULL;
        for (k = 0; k < r->count; k++) {
            int32_t slot = r->head + k;
            PyObject *v = PyLong_FromLong(
                r->window[slot >= self->cfg.window ? slot - self->cfg.window : slot]);
            if (!v) {
                Py_DECREF(win);
                return NULL;
            }
            PyList_SET_ITEM(win, k, v);
        }
    } else {
        win = Py_NewRef(Py_None);
    }
    return Py_BuildValue("KKKN", (unsigned long long)self->seed[i],
                         (unsigned long long)self->rid[i],
                         (unsigned long long)self->row[i].drawn, win);
}

static PyObject *core_set_row_state(Core *self, PyObject *args) {
    PyObject *io, *wo;
    unsigned long long seed, rid;
    long long coins;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "OKKLO", &io, &seed, &rid, &coins, &wo)) return NULL;
    if (core_check_idle(self) < 0 || core_index(self, io, &i) < 0) return NULL;
    if (seed > 0x7FFFFFFFFFFFFFFFull) {
        PyErr_SetString(PyExc_ValueError, "seed outside 0..2**63-1");
        return NULL;
    }
    if (wo != Py_None && self->win) {
        Py_buffer wb;
        Py_ssize_t k;
        if (get_ints(wo, &wb, 4, 0, "window") < 0) return NULL;
        for (k = 0; k < wb.shape[0]; k++)
            if (((const int32_t *)wb.buf)[k] < 0 || ((const int32_t *)wb.buf)[k] >= self->V) {
                PyBuffer_Release(&wb);
                PyErr_SetString(PyExc_ValueError, "window: an id outside the vocabulary");
                return NULL;
            }
        cw_row_set_window(&self->cfg, &self->row[i], (const int32_t *)wb.buf, (long)wb.shape[0]);
        PyBuffer_Release(&wb);
    }
    self->seed[i] = seed;
    self->rid[i] = rid;
    self->row[i].key = cw_row_key(seed, rid);
    if (coins >= 0) self->row[i].drawn = (uint64_t)coins;
    Py_RETURN_NONE;
}

static PyObject *core_get_rows(Core *self, void *closure) {
    (void)closure;
    return PyLong_FromSsize_t(self->rows);
}

static PyMethodDef core_methods[] = {
    {"join", (PyCFunction)core_join, METH_VARARGS, "join(prompts, seeds, row_ids)"},
    {"take", (PyCFunction)core_take, METH_O, "take(keep)"},
    {"sample", (PyCFunction)core_sample, METH_VARARGS, "sample(z, out[, allowed])"},
    {"pick", (PyCFunction)core_pick, METH_O, "pick(z) -> ids int64 [rows] (set_fast first)"},
    {"run_steps", (PyCFunction)core_run_steps, METH_VARARGS,
     "run_steps(invoke, args, token_in, state_in, logits, new_state, z0, limit, eos, out"
     "[, on_error]) -> rounds done"},
    {"set_fast", (PyCFunction)core_set_fast, METH_VARARGS,
     "set_fast(numpy.empty, numpy.dtype('int64'), fallback(core, z))"},
    {"row_state", (PyCFunction)core_row_state, METH_O, "row_state(i)"},
    {"set_row_state", (PyCFunction)core_set_row_state, METH_VARARGS,
     "set_row_state(i, seed, row, coins, window)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef core_getset[] = {{"rows", (getter)core_get_rows, NULL, "rows", NULL},
                                    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "charwright.runtime.sampling._speedups.Core",
    .tp_basicsize = sizeof(Core),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C sampler (runtime/c/sampler.h) over a batch of rows.",
    .tp_methods = core_methods,
    .tp_getset = core_getset,
    .tp_init = (initproc)core_init,
    .tp_new = PyType_GenericNew,
};

/* the exp tables, for the test that checks them against rng.exp_tables(): bytes of float32 */
static PyObject *exp_tables(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    return Py_BuildValue("y#y#", (const char *)cw_exp_hi, (Py_ssize_t)sizeof cw_exp_hi,
                         (const char *)cw_exp_lo, (Py_ssize_t)sizeof cw_exp_lo);
}

static PyMethodDef module_methods[] = {
    {"exp_tables", exp_tables, METH_NOARGS, "(EXP_HI, EXP_LO) as float32 bytes"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "charwright's C sampler (runtime/c/sampler.h)", -1,
                                    module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m;
    if (PyType_Ready(&CoreType) < 0) return NULL;
    m = PyModule_Create(&module);
    if (!m) return NULL;
#ifndef CW_SOURCE_SHA256
#define CW_SOURCE_SHA256 "" /* built without setup.py */
#endif
    if (PyModule_AddStringConstant(m, "SOURCE_SHA256", CW_SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
