/* queue.c - Queue handles: push, pop, read, delete, and zero-copy reserve.
 *
 * A Queue wraps one shmstore_queue_t and holds its Store. Entries are encoded like
 * values (codec.c: arrays zero-copy, compounds as records, anything else pickled).
 *
 * GIL: a call that may wait (a pop on an empty queue, a push on a full queue with the
 * "block" policy) tries once without waiting, then waits without the GIL in
 * WAIT_SLICE_NS slices with PyErr_CheckSignals() between them (Ctrl-C works), as
 * Value.wait does. Copies of at least GIL_COPY_MIN bytes run without the GIL.
 *
 * Zero-copy writing: reserve() returns a context whose __enter__ reserves an entry and
 * hands out a writable numpy array over its block. The array's Buffer owns the
 * reservation: if the block ends with an exception, or is never exited, the entry is
 * aborted when the last array over it is gone (not before: an array that outlives the
 * block never points at freed memory). On a normal exit the entry is committed and the
 * Buffer keeps a lease on it (shmstore_queue_commit_keep), so the same holds after the
 * commit; the array is made read-only then (a slice taken inside the block stays
 * writable: writing through it changes a published entry, don't).
 *
 * fork(): like Values, a Queue re-opens itself on the Store's new attachment on first
 * use in a child.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ext.h"

#define QSELF ((QueueObject *)self)

/* ---- open / ready ------------------------------------------------------------------- */

static int queue_reopen(QueueObject *h)
{
    if (store_check_open(h->store) < 0)
        return -1;
    const char *cname = name_utf8(h->name);
    shmstore_queue_t *q = NULL;
    int r = cname ? shmstore_queue_open(h->store->core->s, cname, 0, NULL, &q) : PYERR_SET;
    if (r < 0)
        return shm_raise(h->st, r);
    /* The inherited handle: closing it in the child only frees its memory; one that an
     * inherited reservation still names is left (it would be used by its abort). */
    if (!h->reserving)
        shmstore_queue_close(h->q);
    h->q = q;
    Py_SETREF(h->core, (CoreObject *)Py_NewRef(h->store->core));
    return 0;
}

static int queue_ready(QueueObject *h)
{
    if (!h->q) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shmstore.Queue");
        return -1;
    }
    return h->core->gen == shm_fork_gen ? 0 : queue_reopen(h);
}

static int full_policy(PyObject *o, uint32_t *out)
{
    const char *s = o && o != Py_None ? PyUnicode_AsUTF8(o) : "block";
    if (!s)
        return -1;
    if (strcmp(s, "block") == 0)
        *out = SHMSTORE_QUEUE_BLOCK;
    else if (strcmp(s, "drop_oldest") == 0)
        *out = SHMSTORE_QUEUE_DROP_OLDEST;
    else if (strcmp(s, "error") == 0)
        *out = SHMSTORE_QUEUE_ERROR;
    else {
        PyErr_Format(PyExc_ValueError, "full must be 'block', 'drop_oldest' or 'error', not %R", o);
        return -1;
    }
    return 0;
}

static int opt_u64(PyObject *o, const char *what, uint64_t *out)
{
    if (!o || o == Py_None)
        return 0;
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v <= 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive int or None", what);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

PyObject *queue_open_args(StoreObject *store, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "capacity", "full", "slot_size", "create", "exclusive", NULL};
    PyObject *name, *cap = Py_None, *full = Py_None, *slot = Py_None;
    int create = 1, excl = 0;
    shmstore_queue_options_t o = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$OOOpp:queue", kwlist, &name, &cap, &full,
                                     &slot, &create, &excl) ||
        opt_u64(cap, "capacity", &o.capacity) < 0 || opt_u64(slot, "slot_size", &o.slot_size) < 0 ||
        full_policy(full, &o.full) < 0)
        return NULL;
    if (excl && !create) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    const char *cname = name_utf8(name);
    if (!cname || store_check_open(store) < 0)
        return NULL;
    modstate *st = store->st;
    shmstore_queue_t *q = NULL;
    unsigned flags = (create ? SHMSTORE_Q_CREATE : 0) | (excl ? SHMSTORE_Q_EXCL : 0);
    int r = shmstore_queue_open(store->core->s, cname, flags, &o, &q);
    if (r < 0)
        return shm_raise(st, r), NULL;
    QueueObject *h = (QueueObject *)st->Queue_type->tp_alloc(st->Queue_type, 0);
    if (!h) {
        shmstore_queue_close(q);
        return NULL;
    }
    h->q = q;
    h->core = (CoreObject *)Py_NewRef(store->core);
    h->store = (StoreObject *)Py_NewRef(store);
    h->name = Py_NewRef(name);
    h->st = st;
    shmstore_obj_info_t info;
    if ((r = shmstore_queue_info(q, &info)) < 0) {
        Py_DECREF(h);
        return shm_raise(st, r), NULL;
    }
    h->full = info.full; /* fixed at creation */
    return (PyObject *)h;
}

static PyObject *q_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    modstate *st = shm_state_of(shm_module_of_type(type));
    if (PyTuple_GET_SIZE(args) < 1 || !PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), st->Store_type)) {
        PyErr_SetString(PyExc_TypeError, "Queue(store, name, ...): the first argument must be a "
                        "shmstore.Store (or use store.queue(name, ...))");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (!rest)
        return NULL;
    PyObject *h = queue_open_args((StoreObject *)PyTuple_GET_ITEM(args, 0), rest, kw);
    Py_DECREF(rest);
    return h;
}

/* ---- calls that may wait --------------------------------------------------------------- */

/* One attempt of a blocking call, waiting up to `timeout_ns` (0: not at all). Returns 0,
 * -ETIMEDOUT to go on waiting, or another negative code. Runs without the GIL when
 * `timeout_ns` > 0 (or `nogil`), so it must not touch Python objects. */
typedef int (*attempt_fn)(shmstore_queue_t *q, void *arg, int64_t timeout_ns);

/* Run `fn` as the Python-level timeout says: once without waiting (with the GIL, unless
 * `nogil`: a big copy), then in slices without the GIL until it succeeds, fails or the
 * time is up. 0, -ENOBUFS as is (no exception: a pop_copy whose entry stayed), or -1
 * with an exception set (TimeoutError with `what` when the time ran out). `would_block`
 * (0: none) is what `fn` returns instead of -ETIMEDOUT when it did not wait (a full
 * "block" queue says -EAGAIN). */
static int run_waiting(QueueObject *h, PyObject *timeout, attempt_fn fn, void *arg, int nogil,
                       int would_block, const char *what)
{
    int64_t tmo;
    if (shm_timeout_ns(timeout, &tmo) < 0)
        return -1;
    /* The clock starts after the first attempt, which does not wait: an attempt that
     * succeeds at once (the common case) reads no clock. */
    struct timespec t0 = {0, 0};
    int r, first = 1;
    Py_INCREF(h);
    for (;;) {
        if (queue_ready(h) < 0) { /* other threads ran between slices: h may be closed */
            Py_DECREF(h);
            return -1;
        }
        int64_t slice = first ? 0 : shm_next_slice(&t0, tmo);
        shmstore_queue_t *q = h->q;
        if (slice == 0 && !nogil) {
            r = fn(q, arg, 0);
        } else {
            h->busy++;
            Py_BEGIN_ALLOW_THREADS
            r = fn(q, arg, slice);
            Py_END_ALLOW_THREADS
            h->busy--;
        }
        if (would_block && r == would_block && slice == 0) {
            if (tmo == 0)
                break; /* may not wait: FullError */
            r = -ETIMEDOUT;
        }
        if (r != -ETIMEDOUT && r != -EINTR)
            break;
        if ((!first && slice == 0) || tmo == 0)
            break; /* the time is up */
        if (first)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        first = 0;
        if (PyErr_CheckSignals() < 0) {
            Py_DECREF(h);
            return -1;
        }
    }
    Py_DECREF(h);
    if (r == -ETIMEDOUT || r == -EINTR) {
        PyErr_Format(PyExc_TimeoutError, "shmstore: queue '%U' %s", h->name, what);
        return -1;
    }
    return r == -ENOBUFS ? r : r < 0 ? shm_raise(h->st, r) : 0;
}

/* ---- push ------------------------------------------------------------------------------ */

/* Records up to this size are laid out in process memory and pushed by copy (into the
 * cell's spare block); bigger ones are written straight into a reserved block. */
#define RECORD_COPY_MAX (64 * 1024)

/* A full "block" queue answers a push that may not wait with -EAGAIN: for run_waiting,
 * "would block"; the other policies mean it (FullError). */
static int would_block(const QueueObject *h)
{
    return h->full == SHMSTORE_QUEUE_BLOCK ? -EAGAIN : 0;
}

struct push_arg {
    enc_t *e;
    shmstore_queue_res_t *res; /* records: a filled reservation to commit */
    uint64_t index;
};

static int push_attempt(shmstore_queue_t *q, void *arg, int64_t timeout_ns)
{
    struct push_arg *a = arg;
    if (a->res)
        return shmstore_queue_commit(q, a->res, timeout_ns, &a->index);
    return shmstore_queue_push(q, &a->e->d, a->e->data, a->e->len, timeout_ns, &a->index);
}

PyDoc_STRVAR(q_push_doc,
"push(obj, timeout=None, *, attrs=None) -> int\n--\n\n"
"Append `obj` (a copy) and return its index. Entries are what values are: numpy arrays\n"
"(read back zero-copy), dicts/lists/tuples of them, scalars, str, bytes; anything else is\n"
"pickled. On a full 'block' queue wait up to `timeout` seconds (None: forever; 0: not at\n"
"all) and raise TimeoutError; a full 'error' queue raises FullError; 'drop_oldest' never\n"
"waits. `attrs`: a dict of str -> scalar, str or bytes kept with the entry.");

/* push, pop and read are the per-entry calls: METH_FASTCALL, no argument tuple or dict. */
static PyObject *q_push(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"obj", "timeout", "attrs"};
    PyObject *av[3] = {NULL, Py_None, Py_None};
    QueueObject *h = QSELF;
    enc_t e;
    if (shm_fast_args("push", args, nargs, kwnames, names, 3, 2, 1, av) < 0 || queue_ready(h) < 0)
        return NULL;
    PyObject *obj = av[0], *timeout = av[1], *attrs = av[2];
    if (value_encode(h->st, obj, attrs, &e) < 0)
        return NULL;
    shmstore_queue_res_t res = {0};
    struct push_arg a = {&e, NULL, 0};
    int rc = 0;
    _Alignas(64) char stack[1024];
    char *tmp = NULL;
    if (e.rec && e.len <= RECORD_COPY_MAX &&
        (tmp = e.len <= sizeof(stack) ? stack : PyMem_Malloc(e.len))) {
        /* A small record: laid out here, then pushed into the cell's spare block like
         * any small entry (no allocation in the store, no lock). */
        enc_record_fill(&e, tmp);
        e.data = tmp;
    } else if (e.rec) { /* a record is written straight into its reserved block */
        int r = shmstore_queue_reserve(h->q, &e.d, e.len, &res);
        if (r < 0) {
            rc = shm_raise(h->st, r);
        } else {
            enc_record_fill(&e, res.data);
            a.res = &res;
        }
    }
    if (rc == 0)
        rc = run_waiting(h, timeout, push_attempt, &a, e.len >= GIL_COPY_MIN, would_block(h),
                         "stayed full for the whole timeout");
    if (a.res && h->q)
        shmstore_queue_abort(h->q, &res); /* no-op once committed */
    if (tmp != stack)
        PyMem_Free(tmp);
    value_encoded_free(&e);
    return rc < 0 ? NULL : PyLong_FromUnsignedLongLong(a.index);
}

/* ---- pop / read ---------------------------------------------------------------------- */

/* A popped or read entry as a Python object: a copy, or arrays over its lease. The view
 * is consumed (its lease goes with the returned object, or now). */
static PyObject *entry_obj(QueueObject *h, shmstore_view_t *vw, int copy)
{
    BufferObject *root = buffer_root(h->st, h->core, vw);
    if (!root) {
        shmstore_view_release(vw);
        return NULL;
    }
    PyObject *o = dec_value(h->st, &root->view.desc, root->view.data, root->view.len,
                            copy ? NULL : root);
    Py_DECREF(root);
    return o;
}

struct pop_arg {
    shmstore_view_t view;
    char *buf; /* copy into buf (cap), else a view */
    size_t cap, len;
    shmstore_datum_t d;
    uint64_t index;
};

static int pop_attempt(shmstore_queue_t *q, void *arg, int64_t timeout_ns)
{
    struct pop_arg *a = arg;
    if (a->buf)
        return shmstore_queue_pop_copy(q, timeout_ns, &a->d, a->buf, a->cap, &a->len, &a->index);
    return shmstore_queue_pop(q, timeout_ns, &a->view);
}

PyDoc_STRVAR(q_pop_doc,
"pop(timeout=None, *, copy=True)\n--\n\n"
"Take the oldest entry out of the queue (each entry goes to exactly one consumer) and\n"
"return it. Waits up to `timeout` seconds for one (None: forever; 0: not at all) and\n"
"raises TimeoutError when the queue stayed empty. copy=False returns numpy arrays over\n"
"the entry's bytes, read-only, that keep it alive until they are gone.");

static PyObject *q_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout", "copy"};
    PyObject *av[2] = {Py_None, Py_True};
    QueueObject *h = QSELF;
    if (shm_fast_args("pop", args, nargs, kwnames, names, 2, 1, 0, av) < 0)
        return NULL;
    PyObject *timeout = av[0];
    int copy = PyObject_IsTrue(av[1]);
    if (copy < 0 || queue_ready(h) < 0)
        return NULL;
    _Alignas(64) char stack[512];
    struct pop_arg a;
    memset(&a, 0, sizeof(a));
    if (copy) {
        /* Small entries: a copy into the stack, and the block stays the cell's spare. */
        a.buf = stack;
        a.cap = sizeof(stack);
        int r = run_waiting(h, timeout, pop_attempt, &a, 0, 0, "stayed empty");
        if (r == 0)
            return dec_value(h->st, &a.d, stack, a.len, NULL);
        if (r != -ENOBUFS)
            return NULL;
        a.buf = NULL; /* too big for the stack, and it stayed: take it as a view, copy it */
    }
    if (run_waiting(h, timeout, pop_attempt, &a, 0, 0, "stayed empty") < 0)
        return NULL;
    return entry_obj(h, &a.view, copy);
}

PyDoc_STRVAR(q_read_doc,
"read(index, *, copy=True)\n--\n\n"
"Entry `index`, left in the queue (entries may be read many times). Raises\n"
"NotFoundError when the queue does not hold it (popped, deleted, dropped, or not yet\n"
"committed). copy=False: zero-copy arrays, as pop().");

static PyObject *q_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"index", "copy"};
    PyObject *a[2] = {NULL, Py_True};
    QueueObject *h = QSELF;
    shmstore_view_t vw;
    if (shm_fast_args("read", args, nargs, kwnames, names, 2, 1, 1, a) < 0)
        return NULL;
    if (!PyLong_Check(a[0])) {
        PyErr_SetString(PyExc_TypeError, "read(): index must be an int");
        return NULL;
    }
    unsigned long long index = PyLong_AsUnsignedLongLongMask(a[0]); /* as the "K" format */
    int copy = PyObject_IsTrue(a[1]);
    if ((index == (unsigned long long)-1 && PyErr_Occurred()) || copy < 0 || queue_ready(h) < 0)
        return NULL;
    int r = shmstore_queue_read(h->q, index, &vw);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    return entry_obj(h, &vw, copy);
}

PyDoc_STRVAR(q_read_latest_doc,
"read_latest(*, copy=True)\n--\n\n"
"The newest entry in the queue, left there. Raises NotFoundError when it is empty.");

static PyObject *q_read_latest(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"copy", NULL};
    int copy = 1;
    QueueObject *h = QSELF;
    shmstore_view_t vw;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$p:read_latest", kwlist, &copy) ||
        queue_ready(h) < 0)
        return NULL;
    int r = shmstore_queue_read_latest(h->q, &vw);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    return entry_obj(h, &vw, copy);
}

PyDoc_STRVAR(q_read_batch_doc,
"read_batch(indices, *, copy=True) -> list\n--\n\n"
"The entries at `indices`, all or none: NotFoundError if the queue lacks any of them.");

static PyObject *q_read_batch(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"indices", "copy", NULL};
    PyObject *seq;
    int copy = 1;
    QueueObject *h = QSELF;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$p:read_batch", kwlist, &seq, &copy) ||
        queue_ready(h) < 0)
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "read_batch() takes a sequence of indices");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    uint64_t *idx = PyMem_New(uint64_t, n ? n : 1);
    shmstore_view_t *vw = PyMem_New(shmstore_view_t, n ? n : 1);
    PyObject *out = NULL;
    if (!idx || !vw) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        idx[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (idx[i] == (uint64_t)-1 && PyErr_Occurred())
            goto done;
    }
    int r = shmstore_queue_read_batch(h->q, idx, (size_t)n, vw);
    if (r < 0) {
        shm_raise(h->st, r);
        goto done;
    }
    out = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = out ? entry_obj(h, &vw[i], copy) : NULL;
        if (!o) {
            Py_CLEAR(out);
            shmstore_view_release(&vw[i]); /* the rest: their leases go now */
            continue;
        }
        PyList_SET_ITEM(out, i, o);
    }
done:
    PyMem_Free(idx);
    PyMem_Free(vw);
    Py_DECREF(fast);
    return out;
}

PyDoc_STRVAR(q_delete_doc,
"delete(index, force=False)\n--\n\n"
"Remove entry `index` without popping it. An entry a reader's view holds is removed only\n"
"with force=True (the view stays valid); otherwise OSError (EBUSY). NotFoundError when\n"
"the queue does not hold it.");

static PyObject *q_delete(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"index", "force", NULL};
    unsigned long long index;
    int force = 0;
    QueueObject *h = QSELF;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "K|p:delete", kwlist, &index, &force) ||
        queue_ready(h) < 0)
        return NULL;
    int r = shmstore_queue_delete(h->q, index, force);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(q_indices_doc,
"indices() -> list\n--\n\nThe indices of the entries in the queue, oldest first (a snapshot).");

static PyObject *q_indices(PyObject *self, PyObject *unused)
{
    (void)unused;
    QueueObject *h = QSELF;
    if (queue_ready(h) < 0)
        return NULL;
    size_t cap = 256, n = 0;
    for (;;) {
        uint64_t *buf = PyMem_New(uint64_t, cap);
        if (!buf)
            return PyErr_NoMemory();
        int r = shmstore_queue_indices(h->q, buf, cap, &n);
        if (r == -ENOBUFS) {
            PyMem_Free(buf);
            cap = n + 64;
            continue;
        }
        if (r < 0) {
            PyMem_Free(buf);
            return shm_raise(h->st, r), NULL;
        }
        PyObject *out = PyList_New((Py_ssize_t)n);
        for (size_t i = 0; out && i < n; i++) {
            PyObject *v = PyLong_FromUnsignedLongLong(buf[i]);
            if (!v) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, (Py_ssize_t)i, v);
        }
        PyMem_Free(buf);
        return out;
    }
}

static Py_ssize_t q_len(PyObject *self)
{
    QueueObject *h = QSELF;
    uint64_t n = 0;
    if (queue_ready(h) < 0)
        return -1;
    int r = shmstore_queue_count(h->q, &n);
    return r < 0 ? shm_raise(h->st, r) : (Py_ssize_t)n;
}

static int q_contains(PyObject *self, PyObject *key)
{
    QueueObject *h = QSELF;
    unsigned long long i = PyLong_AsUnsignedLongLong(key);
    if (i == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* not an index: not in the queue */
        return 0;
    }
    if (queue_ready(h) < 0)
        return -1;
    int r = shmstore_queue_contains(h->q, i);
    return r < 0 ? shm_raise(h->st, r) : r;
}

static int q_info_raw(QueueObject *h, shmstore_obj_info_t *info)
{
    if (queue_ready(h) < 0)
        return -1;
    int r = shmstore_queue_info(h->q, info);
    return r < 0 ? shm_raise(h->st, r) : 0;
}

PyDoc_STRVAR(q_info_doc,
"info()\n--\n\nA dict describing the queue: name, kind, count, capacity, slot_size, full,\n"
"first_index, next_index, dropped, pinned, producers_waiting, consumers_waiting, size,\n"
"footprint, mtime_ns.");

static PyObject *q_info(PyObject *self, PyObject *unused)
{
    (void)unused;
    shmstore_obj_info_t info;
    return q_info_raw(QSELF, &info) < 0 ? NULL : obj_info_dict(&info);
}

static PyObject *q_get_capacity(PyObject *self, void *c)
{
    (void)c;
    shmstore_obj_info_t info;
    return q_info_raw(QSELF, &info) < 0 ? NULL : PyLong_FromUnsignedLongLong(info.capacity);
}

static PyObject *q_get_full(PyObject *self, void *c)
{
    (void)c;
    static const char *full[] = {"block", "drop_oldest", "error"};
    shmstore_obj_info_t info;
    return q_info_raw(QSELF, &info) < 0 ? NULL : PyUnicode_FromString(full[info.full % 3]);
}

static PyObject *q_get_slot_size(PyObject *self, void *c)
{
    (void)c;
    shmstore_obj_info_t info;
    if (q_info_raw(QSELF, &info) < 0)
        return NULL;
    return info.slot_size ? PyLong_FromUnsignedLongLong(info.slot_size) : Py_NewRef(Py_None);
}

static PyObject *q_get_name(PyObject *self, void *c)
{
    (void)c;
    return Py_NewRef(QSELF->name);
}

static PyObject *q_get_closed(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(QSELF->q == NULL);
}

/* ---- zero-copy reserve ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    QueueObject *h;
    PyObject *dtype;   /* numpy dtype */
    PyObject *shape;   /* tuple */
    PyObject *attrs;
    PyObject *timeout;
    BufferObject *root; /* the reserved block's Buffer, between enter and exit */
    PyObject *arr;
    uint64_t index;
    int entered;
} ReserveObject;

#define RSELF ((ReserveObject *)self)

static PyObject *r_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    ReserveObject *rv = RSELF;
    QueueObject *h = rv->h;
    modstate *st = h->st;
    if (rv->entered) {
        PyErr_SetString(PyExc_RuntimeError, "this reserve() context was already entered");
        return NULL;
    }
    if (queue_ready(h) < 0 || shm_numpy(st) < 0)
        return NULL;
    PyObject *s = PyObject_GetAttrString(rv->dtype, "str");
    const char *ds = s ? PyUnicode_AsUTF8(s) : NULL;
    char dt[SHMSTORE_DTYPE_MAX];
    if (!ds || strlen(ds) >= sizeof(dt) || ds[0] == '>' || shmstore_dtype_itemsize(ds) <= 0) {
        if (ds)
            PyErr_Format(PyExc_TypeError, "reserve(): dtype %R cannot be stored zero-copy (a "
                         "fixed-size, little-endian numpy dtype is needed)", rv->dtype);
        Py_XDECREF(s);
        return NULL;
    }
    snprintf(dt, sizeof(dt), "%s", ds);
    Py_DECREF(s);
    Py_ssize_t nd = PyTuple_GET_SIZE(rv->shape);
    uint64_t shape[SHMSTORE_NDIM_MAX];
    if (nd > SHMSTORE_NDIM_MAX) {
        PyErr_Format(PyExc_ValueError, "reserve(): at most %d dimensions", SHMSTORE_NDIM_MAX);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nd; i++) {
        long long x = PyLong_AsLongLong(PyTuple_GET_ITEM(rv->shape, i));
        if (x < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "reserve(): negative extent in shape");
            return NULL;
        }
        shape[i] = (uint64_t)x;
    }
    shmstore_datum_t d;
    int r = shmstore_datum_init_array(&d, dt, (uint32_t)nd, shape);
    if (r < 0)
        return shm_raise(st, r), NULL;
    size_t len = (size_t)shmstore_dtype_itemsize(dt);
    for (Py_ssize_t i = 0; i < nd; i++)
        len *= (size_t)shape[i];
    char *abuf = NULL;
    uint32_t alen = 0;
    if (rv->attrs != Py_None && attrs_encode(rv->attrs, &abuf, &alen) < 0)
        return NULL;
    d.attrs = abuf;
    d.attrs_len = alen;
    BufferObject *root = buffer_root(st, h->core, NULL);
    if (!root) {
        PyMem_Free(abuf);
        return NULL;
    }
    r = shmstore_queue_reserve(h->q, &d, len, &root->res);
    PyMem_Free(abuf);
    if (r < 0) {
        Py_DECREF(root);
        return shm_raise(st, r), NULL;
    }
    root->resq = (QueueObject *)Py_NewRef(h);
    h->reserving++;
    root->ptr = root->res.data;
    root->len = (Py_ssize_t)len;
    root->readonly = 0;
    if (buffer_set_array(root, dt, (int)nd, shape) < 0) {
        Py_DECREF(root); /* aborts the reservation */
        PyErr_Format(PyExc_TypeError, "reserve(): dtype %R has no buffer format", rv->dtype);
        return NULL;
    }
    PyObject *arr = PyObject_CallOneArg(st->np_asarray, (PyObject *)root);
    if (!arr) {
        Py_DECREF(root);
        return NULL;
    }
    rv->root = root;
    rv->arr = arr;
    rv->entered = 1;
    return Py_NewRef(arr);
}

static int commit_attempt(shmstore_queue_t *q, void *arg, int64_t timeout_ns)
{
    BufferObject *root = arg;
    shmstore_view_t vw;
    int r = shmstore_queue_commit_keep(q, &root->res, timeout_ns, &vw);
    if (r == 0)
        root->view = vw; /* the reservation's lease goes on as the Buffer's view */
    return r;
}

static PyObject *r_exit(PyObject *self, PyObject *args)
{
    PyObject *et = Py_None, *ev = Py_None, *tb = Py_None;
    ReserveObject *rv = RSELF;
    if (!PyArg_UnpackTuple(args, "__exit__", 0, 3, &et, &ev, &tb))
        return NULL;
    BufferObject *root = rv->root;
    if (!root)
        Py_RETURN_FALSE;
    rv->root = NULL;
    int rc = 0;
    if (et == Py_None && root->core->gen != shm_fork_gen) {
        PyErr_SetString(PyExc_RuntimeError, "shmstore: this reserve() block was entered "
                        "before fork(); its entry belongs to the parent, nothing was pushed");
        rc = -1;
    } else if (et == Py_None) {
        rc = run_waiting(rv->h, rv->timeout, commit_attempt, root, 0, would_block(rv->h),
                         "stayed full for the whole timeout");
        if (rc == 0) {
            rv->index = root->view.version;
            root->resq->reserving--;
            Py_CLEAR(root->resq);
            buffer_take_view(root, &root->view); /* released with the Buffer */
        }
    }
    /* Not committed: the Buffer still owns the reservation and aborts it when the last
     * array over it goes. Either way the array is read-only from here. */
    PyObject *et2, *ev2, *tb2;
    PyErr_Fetch(&et2, &ev2, &tb2);
    PyObject *r = rv->arr ? PyObject_CallMethod(rv->arr, "setflags", "(O)", Py_False) : NULL;
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
    PyErr_Restore(et2, ev2, tb2);
    Py_DECREF(root);
    if (rc < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *r_get_index(PyObject *self, void *c)
{
    (void)c;
    if (!RSELF->entered || RSELF->root) {
        PyErr_SetString(PyExc_AttributeError, "the entry's index is known once the block ends");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(RSELF->index);
}

static int r_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(RSELF->h);
    Py_VISIT(RSELF->dtype);
    Py_VISIT(RSELF->shape);
    Py_VISIT(RSELF->attrs);
    Py_VISIT(RSELF->timeout);
    Py_VISIT(RSELF->root);
    Py_VISIT(RSELF->arr);
    return 0;
}

static int r_clear(PyObject *self)
{
    Py_CLEAR(RSELF->root); /* never exited: the reservation goes with its last array */
    Py_CLEAR(RSELF->arr);
    Py_CLEAR(RSELF->h);
    Py_CLEAR(RSELF->dtype);
    Py_CLEAR(RSELF->shape);
    Py_CLEAR(RSELF->attrs);
    Py_CLEAR(RSELF->timeout);
    return 0;
}

static void r_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    r_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef r_methods[] = {
    {"__enter__", r_enter, METH_NOARGS, "Reserve the entry; return a writable array over it."},
    {"__exit__", r_exit, METH_VARARGS, "Commit the entry (or abort it on an exception)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef r_getset[] = {
    {"index", r_get_index, NULL, "The committed entry's index (after the block).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot r_slots[] = {
    {Py_tp_dealloc, r_dealloc},
    {Py_tp_traverse, r_traverse},
    {Py_tp_clear, r_clear},
    {Py_tp_methods, r_methods},
    {Py_tp_getset, r_getset},
    {Py_tp_doc, (void *)"Context manager of Queue.reserve(): a zero-copy push."},
    {0, NULL},
};

PyType_Spec Reserve_spec = {
    .name = "shmstore.QueueReservation",
    .basicsize = sizeof(ReserveObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_GC,
    .slots = r_slots,
};

PyDoc_STRVAR(q_reserve_doc,
"reserve(dtype, shape, *, attrs=None, timeout=None)\n--\n\n"
"Zero-copy push of one array:\n\n"
"    with q.reserve(np.float32, (4, 84, 84)) as arr:\n"
"        arr[...] = frames          # written straight into the entry's block\n\n"
"The entry is invisible until the block ends; then it is committed (waiting up to\n"
"`timeout` on a full 'block' queue) and its index is the context's `index`. An\n"
"exception in the block aborts it. The array is read-only after the block and keeps\n"
"the entry's bytes alive as long as it exists.");

static PyObject *q_reserve(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"dtype", "shape", "attrs", "timeout", NULL};
    PyObject *dtype, *shape, *attrs = Py_None, *timeout = Py_None;
    QueueObject *h = QSELF;
    modstate *st = h->st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$OO:reserve", kwlist, &dtype, &shape, &attrs,
                                     &timeout) ||
        queue_ready(h) < 0 || shm_numpy(st) < 0)
        return NULL;
    PyObject *np_dtype = PyObject_GetAttrString(st->np, "dtype");
    PyObject *dt = np_dtype ? PyObject_CallOneArg(np_dtype, dtype) : NULL;
    Py_XDECREF(np_dtype);
    PyObject *shp = dt ? (PyLong_Check(shape) ? PyTuple_Pack(1, shape) : PySequence_Tuple(shape))
                       : NULL;
    if (!shp) {
        Py_XDECREF(dt);
        return NULL;
    }
    ReserveObject *rv = PyObject_GC_New(ReserveObject, st->Reserve_type);
    if (!rv) {
        Py_DECREF(dt);
        Py_DECREF(shp);
        return NULL;
    }
    rv->h = (QueueObject *)Py_NewRef(h);
    rv->dtype = dt;
    rv->shape = shp;
    rv->attrs = Py_NewRef(attrs);
    rv->timeout = Py_NewRef(timeout);
    rv->root = NULL;
    rv->arr = NULL;
    rv->index = 0;
    rv->entered = 0;
    PyObject_GC_Track(rv);
    return (PyObject *)rv;
}

/* ---- the Queue type --------------------------------------------------------------------- */

static void queue_close_now(QueueObject *h)
{
    if (h->q && !h->reserving) {
        shmstore_queue_close(h->q);
        h->q = NULL;
    }
}

static PyObject *q_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (QSELF->busy || QSELF->reserving) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close a Queue while another thread uses it "
                        "or an entry reserved through it is not committed yet");
        return NULL;
    }
    queue_close_now(QSELF);
    Py_RETURN_NONE;
}

static PyObject *q_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *q_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (!QSELF->busy)
        queue_close_now(QSELF);
    Py_RETURN_FALSE;
}

static PyObject *q_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    /* Pickled as "this store's queue of this name" (multiprocessing spawn). */
    PyObject *meth = PyObject_GetAttrString((PyObject *)QSELF->store, "queue");
    if (!meth)
        return NULL;
    return Py_BuildValue("(N(O))", meth, QSELF->name);
}

static PyObject *q_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<shmstore.Queue %R%s>", QSELF->name, QSELF->q ? "" : " closed");
}

static int q_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(QSELF->core);
    Py_VISIT(QSELF->store);
    return 0;
}

static int q_clear(PyObject *self)
{
    if (QSELF->busy || QSELF->reserving)
        return 0;
    queue_close_now(QSELF);
    Py_CLEAR(QSELF->store);
    Py_CLEAR(QSELF->core);
    return 0;
}

static void q_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    QSELF->reserving = 0; /* no Buffer holds us any more (each holds a reference) */
    queue_close_now(QSELF);
    Py_CLEAR(QSELF->core);
    Py_CLEAR(QSELF->store);
    Py_CLEAR(QSELF->name);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef q_methods[] = {
    {"push", METH(q_push), METH_FASTCALL | METH_KEYWORDS, q_push_doc},
    {"pop", METH(q_pop), METH_FASTCALL | METH_KEYWORDS, q_pop_doc},
    {"read", METH(q_read), METH_FASTCALL | METH_KEYWORDS, q_read_doc},
    {"read_latest", METH(q_read_latest), METH_VARARGS | METH_KEYWORDS, q_read_latest_doc},
    {"read_batch", METH(q_read_batch), METH_VARARGS | METH_KEYWORDS, q_read_batch_doc},
    {"delete", METH(q_delete), METH_VARARGS | METH_KEYWORDS, q_delete_doc},
    {"indices", q_indices, METH_NOARGS, q_indices_doc},
    {"reserve", METH(q_reserve), METH_VARARGS | METH_KEYWORDS, q_reserve_doc},
    {"info", q_info, METH_NOARGS, q_info_doc},
    {"close", q_close, METH_NOARGS, "close()\n--\n\nClose the handle. Idempotent."},
    {"__enter__", q_enter, METH_NOARGS, NULL},
    {"__exit__", q_exit, METH_VARARGS, NULL},
    {"__reduce__", q_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef q_getset[] = {
    {"name", q_get_name, NULL, "The queue's name.", NULL},
    {"capacity", q_get_capacity, NULL, "Entries the queue holds at most.", NULL},
    {"full", q_get_full, NULL, "What a full queue does: 'block', 'drop_oldest' or 'error'.", NULL},
    {"slot_size", q_get_slot_size, NULL, "Largest entry in bytes, or None (any size).", NULL},
    {"closed", q_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(q_doc,
"Queue(store, name, *, capacity=None, full='block', slot_size=None, create=True,\n"
"      exclusive=False)\n--\n\n"
"A bounded FIFO of entries in a store, shared by every process that opens it: many\n"
"producers push, many consumers pop, each entry goes to exactly one consumer; readers\n"
"may also read entries by index without taking them. No server and no lock: a process\n"
"killed at any moment leaves no entry half-visible and none stuck. The same as\n"
"store.queue(name, ...). len(q) is the number of entries; `i in q` whether the queue\n"
"holds entry i now.");

static PyType_Slot q_slots[] = {
    {Py_tp_new, q_new},
    {Py_tp_dealloc, q_dealloc},
    {Py_tp_traverse, q_traverse},
    {Py_tp_clear, q_clear},
    {Py_tp_repr, q_repr},
    {Py_tp_methods, q_methods},
    {Py_tp_getset, q_getset},
    {Py_sq_length, q_len},
    {Py_sq_contains, q_contains},
    {Py_mp_length, q_len},
    {Py_tp_doc, (void *)q_doc},
    {0, NULL},
};

PyType_Spec Queue_spec = {
    .name = "shmstore.Queue",
    .basicsize = sizeof(QueueObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_HAVE_GC,
    .slots = q_slots,
};
