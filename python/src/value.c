/* value.c - Value handles: put, get, view, wait, trigger, in-place writes.
 *
 * A Value wraps one shmstore_value_t. Store's by-name methods use a cache of internal
 * Values (store.c); users get their own from Store.value(). Every operation starts with
 * value_ready(): in a fork child it re-opens the handle on the Store's re-attached Core,
 * so multiprocessing's fork start method just works.
 *
 * GIL: puts and gets of at least GIL_COPY_MIN bytes copy without the GIL; waits sleep
 * without it, in WAIT_SLICE_NS slices with PyErr_CheckSignals() between them (Ctrl-C).
 * A writer lock held across a GIL release (record puts, Store.write) is counted in
 * st->n_wlocks: while it is non-zero every put in this process waits for the lock
 * without the GIL, or a thread holding the lock could never get the GIL back to
 * release it.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "ext.h"

static int value_reopen(ValueObject *h);

int value_ready(ValueObject *h)
{
    if (!h->v) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shmstore.Value");
        return -1;
    }
    return h->core->gen == shm_fork_gen ? 0 : value_reopen(h);
}

const char *name_utf8(PyObject *name)
{
    Py_ssize_t n;
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "object names are str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (s && (size_t)n != strlen(s)) {
        PyErr_SetString(PyExc_ValueError, "object names cannot contain NUL characters");
        return NULL;
    }
    return s;
}

ValueObject *value_open(PyTypeObject *type, StoreObject *store, PyObject *name, int create,
                        int user)
{
    modstate *st = store->st;
    const char *cname = name_utf8(name);
    if (!cname)
        return NULL;
    shmstore_value_t *v = NULL;
    for (int tries = 0;; tries++) {
        if (store_check_open(store) < 0)
            return NULL;
        int r = shmstore_value_open(store->core->s, cname,
                                   create == 2 ? SHMSTORE_V_CREATE | SHMSTORE_V_EXCL
                                   : create    ? SHMSTORE_V_CREATE : 0, &v);
        if (r == SHMSTORE_ELEASES && tries == 0 && PyDict_GET_SIZE(store->cache)) {
            PyDict_Clear(store->cache); /* give back the cached handles' leases */
            continue;
        }
        if (r < 0)
            return shm_raise(st, r), NULL;
        break;
    }
    if (!type)
        type = st->Value_type;
    ValueObject *h = (ValueObject *)type->tp_alloc(type, 0); /* zeroed, GC-tracked */
    if (!h) {
        shmstore_value_close(v);
        return NULL;
    }
    h->v = v;
    h->core = store->core;
    Py_INCREF(h->core);
    h->store = store;
    if (user)
        Py_INCREF(store);
    h->name = Py_NewRef(name);
    h->st = st;
    /* Internal handles (user == 0) borrow the Store: the Store's cache owns them. */
    h->user = user;
    return h;
}

PyObject *value_open_args(PyTypeObject *type, StoreObject *store, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "create", "exclusive", NULL};
    PyObject *name;
    int create = 1, excl = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$pp:value", kwlist, &name, &create, &excl))
        return NULL;
    if (excl && !create) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    return (PyObject *)value_open(type, store, name, create ? (excl ? 2 : 1) : 0, 1);
}

/* Value(store, name, *, create=True, exclusive=False): as store.value(name, ...), and
 * the way a subclass (compat.shared_object.SharedObject) makes its instances. */
static PyObject *v_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    modstate *st = shm_state_of(shm_module_of_type(type));
    if (PyTuple_GET_SIZE(args) < 1 || !PyObject_TypeCheck(PyTuple_GET_ITEM(args, 0), st->Store_type)) {
        PyErr_SetString(PyExc_TypeError, "Value(store, name, *, create=True, exclusive=False): "
                        "the first argument must be a shmstore.Store");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (!rest)
        return NULL;
    PyObject *h = value_open_args(type, (StoreObject *)PyTuple_GET_ITEM(args, 0), rest, kw);
    Py_DECREF(rest);
    return h;
}

static int is_user(ValueObject *h)
{
    return h->user;
}

/* In a fork child: re-attach the Store (once per fork) and re-open the handle on it. */
static int value_reopen(ValueObject *h)
{
    StoreObject *store = h->store;
    if (store_check_open(store) < 0)
        return -1;
    const char *cname = PyUnicode_AsUTF8(h->name);
    shmstore_value_t *v;
    if (!cname)
        return -1;
    /* Without V_CREATE: a value deleted since the handle was opened is StaleError in the
     * child as in the parent, not silently re-created empty. */
    int r = shmstore_value_open(store->core->s, cname, 0, &v);
    if (r == -ENOENT || r == SHMSTORE_EKIND) {
        PyErr_Format(h->st->StaleError, "shmstore: value '%U' was deleted (handle opened "
                     "before fork()); open it again", h->name);
        return -1;
    }
    if (r < 0)
        return shm_raise(h->st, r);
    shmstore_value_close(h->v); /* in the child: frees the parent's handle memory only */
    h->v = v;
    h->reserving = 0;
    Py_SETREF(h->core, (CoreObject *)Py_NewRef(store->core));
    return 0;
}

/* ---- put ------------------------------------------------------------------------------ */

static int put_record(ValueObject *h, enc_t *e, unsigned flags)
{
    modstate *st = h->st;
    ValueObject *w = h;
    int r;
    if (h->reserving) {
        /* Another thread is mid-reserve on this handle: use a private one. */
        w = value_open(NULL, h->store, h->name, 1, 0);
        if (!w)
            return PYERR_SET;
    } else {
        Py_INCREF(w);
    }
    void *data;
    int others = st->n_wlocks > 0;
    st->n_wlocks++;
    w->reserving = 1;
    if (others || e->len >= GIL_COPY_MIN) {
        Py_BEGIN_ALLOW_THREADS
        r = shmstore_value_reserve(w->v, &e->d, e->len, flags, &data);
        Py_END_ALLOW_THREADS
    } else {
        r = shmstore_value_reserve(w->v, &e->d, e->len, flags, &data);
    }
    if (r == 0) {
        enc_record_fill(e, data);
        r = shmstore_value_commit(w->v);
        if (r == 0)
            h->seen = shmstore_value_published(w->v);
    }
    w->reserving = 0;
    st->n_wlocks--;
    Py_DECREF(w);
    return r;
}

int value_encode(modstate *st, PyObject *obj, PyObject *attrs, enc_t *e)
{
    char *abuf = NULL;
    uint32_t alen = 0;
    if (attrs && attrs != Py_None && attrs_encode(attrs, &abuf, &alen) < 0)
        return -1;
    if (enc_value(st, obj, e) < 0) {
        PyMem_Free(abuf);
        return -1;
    }
    e->d.attrs = abuf;
    e->d.attrs_len = alen;
    return 0;
}

void value_encoded_free(enc_t *e)
{
    PyMem_Free((void *)e->d.attrs);
    e->d.attrs = NULL;
    enc_free(e);
}

int value_put_encoded(ValueObject *h, enc_t *e, unsigned flags)
{
    modstate *st = h->st;
    int r;
    Py_INCREF(h);
    /* Encoding (pickle) and a GIL switch run Python code: another thread may have closed
     * h since the caller checked it. */
    if (value_ready(h) < 0) {
        r = PYERR_SET;
    } else if (e->rec) {
        r = put_record(h, e, flags);
    } else if (e->len >= GIL_COPY_MIN || st->n_wlocks > 0) {
        shmstore_value_t *v = h->v;
        h->busy++;
        Py_BEGIN_ALLOW_THREADS
        r = shmstore_value_put(v, &e->d, e->data, e->len, flags);
        Py_END_ALLOW_THREADS
        h->busy--;
    } else {
        r = shmstore_value_put(h->v, &e->d, e->data, e->len, flags);
    }
    if (r == 0 && !e->rec)
        h->seen = shmstore_value_published(h->v);
    Py_DECREF(h);
    if (r < 0 && r != PYERR_SET && !PyErr_Occurred())
        shm_raise(st, r);
    return r < 0 ? -1 : 0;
}

PyObject *value_put_obj(ValueObject *h, PyObject *obj, PyObject *attrs, unsigned flags)
{
    enc_t e;
    if (value_ready(h) < 0 || value_encode(h->st, obj, attrs, &e) < 0)
        return NULL;
    int r = value_put_encoded(h, &e, flags);
    value_encoded_free(&e);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- get / view ------------------------------------------------------------------------- */

/* A root Buffer leasing the current version (as bytes), which h has now seen. h must be
 * ready (value_ready). NULL with an exception set on failure. */
static BufferObject *leased_root(ValueObject *h)
{
    shmstore_view_t vw;
    int r = shmstore_value_view(h->v, &vw);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    BufferObject *root = buffer_root(h->st, h->core, &vw);
    if (!root) {
        shmstore_view_release(&vw);
        return NULL;
    }
    h->seen = vw.version;
    return root;
}

PyObject *value_get_obj(ValueObject *h, int view, uint64_t *version)
{
    modstate *st = h->st;
    if (value_ready(h) < 0)
        return NULL;
    int r = -ENOBUFS;
    if (!view) {
        /* Small values: one seqlock copy into the stack, no lease. */
        _Alignas(64) char stack[512];
        shmstore_datum_t d;
        size_t len;
        uint64_t ver;
        r = shmstore_value_get(h->v, &d, stack, sizeof(stack), &len, &ver);
        if (r == 0) {
            h->seen = ver;
            if (version)
                *version = ver;
            return dec_value(st, &d, stack, len, NULL);
        }
    }
    if (r != -ENOBUFS)
        return shm_raise(st, r), NULL;
    BufferObject *root = leased_root(h);
    if (!root)
        return NULL;
    if (version)
        *version = root->view.version;
    const shmstore_view_t *vw = &root->view;
    PyObject *o = dec_value(st, &vw->desc, vw->data, vw->len, view ? root : NULL);
    Py_DECREF(root);
    return o;
}

PyObject *value_attrs_obj(ValueObject *h)
{
    shmstore_view_t vw;
    if (value_ready(h) < 0)
        return NULL;
    int r = shmstore_value_view(h->v, &vw);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    PyObject *d = attrs_decode(vw.desc.attrs, vw.desc.attrs_len);
    shmstore_view_release(&vw);
    return d;
}

/* ---- wait ----------------------------------------------------------------------------- */

int shm_timeout_ns(PyObject *timeout, int64_t *out)
{
    if (!timeout || timeout == Py_None) {
        *out = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t) || t < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number or None");
        return -1;
    }
    *out = t > 9e9 ? -1 : (int64_t)(t * 1e9);
    return 0;
}

static int version_of(ValueObject *h, uint64_t *ver)
{
    int r = shmstore_value_version(h->v, ver);
    return r < 0 ? shm_raise(h->st, r) : 0;
}

/* The next sleep of a wait that started at t0 with timeout tmo ns (-1 = none): at most
 * WAIT_SLICE_NS, so that signals are checked between slices; 0 once the time is up. */
int64_t shm_next_slice(const struct timespec *t0, int64_t tmo)
{
    if (tmo < 0)
        return WAIT_SLICE_NS;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t left = tmo - ((int64_t)(t1.tv_sec - t0->tv_sec) * 1000000000 + (t1.tv_nsec - t0->tv_nsec));
    return left <= 0 ? 0 : left < WAIT_SLICE_NS ? left : WAIT_SLICE_NS;
}

PyObject *value_wait_obj(ValueObject *h, PyObject *after, PyObject *timeout)
{
    int64_t tmo;
    uint64_t aft, ver = 0;
    if (value_ready(h) < 0 || shm_timeout_ns(timeout, &tmo) < 0)
        return NULL;
    if (!after || after == Py_None) {
        if (version_of(h, &aft) < 0)
            return NULL;
    } else {
        aft = PyLong_AsUnsignedLongLong(after);
        if (aft == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r;
    Py_INCREF(h);
    for (;;) {
        /* Between slices other threads and signal handlers ran: h may be closed now. */
        if (value_ready(h) < 0) {
            Py_DECREF(h);
            return NULL;
        }
        int64_t slice = shm_next_slice(&t0, tmo);
        if (slice == 0) {
            r = shmstore_value_wait(h->v, aft, 0, &ver);
        } else {
            shmstore_value_t *v = h->v;
            h->busy++;
            Py_BEGIN_ALLOW_THREADS
            r = shmstore_value_wait(v, aft, slice, &ver);
            Py_END_ALLOW_THREADS
            h->busy--;
        }
        if (r == 0)
            break;
        if (r == -ETIMEDOUT && slice == 0 && tmo >= 0)
            break;
        if (r != -ETIMEDOUT && r != -EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            Py_DECREF(h);
            return NULL;
        }
    }
    Py_DECREF(h);
    if (r == -ETIMEDOUT) {
        PyErr_Format(PyExc_TimeoutError, "shmstore: no version of '%U' newer than %llu within %.3f s",
                     h->name, (unsigned long long)aft, (double)tmo / 1e9);
        return NULL;
    }
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    h->seen = ver;
    return PyLong_FromUnsignedLongLong(ver);
}

/* ---- Value methods ------------------------------------------------------------------- */

#define SELF ((ValueObject *)self)

PyDoc_STRVAR(v_put_doc,
"put(value, *, attrs=None, same_layout=False)\n--\n\n"
"Publish `value` as the new version (see Store.put). `attrs`: a dict of str -> None,\n"
"bool, int, float, complex, str or bytes kept with this version. `same_layout`: raise\n"
"LayoutError unless type, dtype, shape and size equal the current version's.");

/* put(value, *, attrs=None, same_layout=False), parsed by hand: it is the hot path, and
 * PyArg_ParseTupleAndKeywords costs about 100 ns a call, as much as the put itself. */
static PyObject *v_put(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *attrs = Py_None;
    int same = 0;
    if (nargs != 1)
        return PyErr_Format(PyExc_TypeError, "put() takes exactly one positional argument "
                            "(the value), %zd given", nargs);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i), *v = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(k, "attrs") == 0) {
            attrs = v;
        } else if (PyUnicode_CompareWithASCIIString(k, "same_layout") == 0) {
            if ((same = PyObject_IsTrue(v)) < 0)
                return NULL;
        } else {
            return PyErr_Format(PyExc_TypeError, "put() got an unexpected keyword argument '%U'",
                                k);
        }
    }
    return value_put_obj(SELF, args[0], attrs, same ? SHMSTORE_PUT_SAME_LAYOUT : 0);
}

PyDoc_STRVAR(v_get_doc,
"get()\n--\n\nA copy of the current version (see Store.get). Raises NoValueError if\n"
"the value was never written, StaleError if it was deleted.");

static PyObject *v_get(PyObject *self, PyObject *unused)
{
    (void)unused;
    return value_get_obj(SELF, 0, NULL);
}

PyDoc_STRVAR(v_get_versioned_doc,
"get_versioned()\n--\n\nA copy of the current version and its number, as (value, version):\n"
"the two always belong together.");

static PyObject *v_get_versioned(PyObject *self, PyObject *unused)
{
    (void)unused;
    uint64_t ver = 0;
    PyObject *o = value_get_obj(SELF, 0, &ver);
    if (!o)
        return NULL;
    PyObject *t = Py_BuildValue("(NK)", o, (unsigned long long)ver);
    return t;
}

PyDoc_STRVAR(v_view_doc,
"view()\n--\n\nThe current version without copying (see Store.view): numpy arrays are\n"
"read-only views over a leased block that stays valid while any of them is alive.");

static PyObject *v_view(PyObject *self, PyObject *unused)
{
    (void)unused;
    return value_get_obj(SELF, 1, NULL);
}

PyDoc_STRVAR(v_view_versioned_doc,
"view_versioned()\n--\n\nview() and the version it shows, as (value, version).");

static PyObject *v_view_versioned(PyObject *self, PyObject *unused)
{
    (void)unused;
    uint64_t ver = 0;
    PyObject *o = value_get_obj(SELF, 1, &ver);
    if (!o)
        return NULL;
    return Py_BuildValue("(NK)", o, (unsigned long long)ver);
}

PyDoc_STRVAR(v_buffer_doc,
"buffer()\n--\n\nThe leased bytes of the current version as a shmstore.Buffer (for\n"
"memoryview(), numpy.asarray() or explicit release()).");

static PyObject *v_buffer(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (value_ready(SELF) < 0)
        return NULL;
    BufferObject *b = leased_root(SELF);
    if (b && b->view.desc.type == SHMSTORE_T_ARRAY) /* else (or an exotic dtype): bytes */
        (void)buffer_set_array(b, b->view.desc.dtype, (int)b->view.desc.ndim, b->view.desc.shape);
    return (PyObject *)b;
}

PyDoc_STRVAR(v_attrs_doc, "attrs()\n--\n\nThe attrs dict of the current version ({} if none).");

static PyObject *v_attrs(PyObject *self, PyObject *unused)
{
    (void)unused;
    return value_attrs_obj(SELF);
}

PyDoc_STRVAR(v_wait_doc,
"wait(after=None, timeout=None)\n--\n\n"
"Block until a version newer than `after` (default: the current one) exists and return\n"
"its number. `timeout` in seconds (None = forever); raises TimeoutError. Releases the\n"
"GIL; Ctrl-C interrupts it.");

static PyObject *v_wait(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"after", "timeout", NULL};
    PyObject *after = Py_None, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:wait", kwlist, &after, &timeout))
        return NULL;
    return value_wait_obj(SELF, after, timeout);
}

typedef int (*vop_t)(shmstore_value_t *);

static PyObject *v_simple(ValueObject *h, vop_t op)
{
    if (value_ready(h) < 0)
        return NULL;
    int r = op(h->v);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(v_trigger_doc,
"trigger()\n--\n\nPublish a new version with the same data: version and mtime go up and\n"
"waiters wake (a start/stop signal between processes).");

static PyObject *v_trigger(PyObject *self, PyObject *unused)
{
    (void)unused;
    ValueObject *h = SELF;
    if (h->st->n_wlocks > 0) {
        /* a thread of ours may hold the writer lock: wait for it without the GIL */
        if (value_ready(h) < 0)
            return NULL;
        int r;
        shmstore_value_t *v = h->v;
        Py_INCREF(h);
        h->busy++;
        Py_BEGIN_ALLOW_THREADS
        r = shmstore_value_trigger(v);
        Py_END_ALLOW_THREADS
        h->busy--;
        Py_DECREF(h);
        if (r < 0)
            return shm_raise(h->st, r), NULL;
        Py_RETURN_NONE;
    }
    return v_simple(h, shmstore_value_trigger);
}

PyDoc_STRVAR(v_seal_doc, "seal()\n--\n\nMake the value immutable: later puts raise SealedError.");

static PyObject *v_seal(PyObject *self, PyObject *unused)
{
    (void)unused;
    return v_simple(SELF, shmstore_value_seal);
}

static PyObject *v_get_version(PyObject *self, void *c)
{
    (void)c;
    uint64_t ver;
    if (value_ready(SELF) < 0 || version_of(SELF, &ver) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(ver);
}

static PyObject *v_get_seen(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(SELF->seen);
}

static int v_set_seen(PyObject *self, PyObject *val, void *c)
{
    (void)c;
    if (!val) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete Value.seen");
        return -1;
    }
    uint64_t s = PyLong_AsUnsignedLongLong(val);
    if (s == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    SELF->seen = s;
    return 0;
}

/* modified and triggered are the polling loop of seed 000's users (`while not
 * so.modified`): a getter, one atomic load and a compare, no allocation. */
static PyObject *v_get_modified(PyObject *self, void *c)
{
    (void)c;
    uint64_t ver;
    if (value_ready(SELF) < 0 || version_of(SELF, &ver) < 0)
        return NULL;
    return Py_NewRef(ver != SELF->seen ? Py_True : Py_False);
}

static PyObject *v_get_triggered(PyObject *self, void *c)
{
    (void)c;
    uint64_t ver;
    if (value_ready(SELF) < 0 || version_of(SELF, &ver) < 0)
        return NULL;
    if (ver == SELF->seen)
        Py_RETURN_FALSE;
    SELF->seen = ver;
    Py_RETURN_TRUE;
}

static PyObject *v_get_mtime(PyObject *self, void *c)
{
    (void)c;
    ValueObject *h = SELF;
    uint64_t t;
    if (value_ready(h) < 0)
        return NULL;
    int r = shmstore_value_mtime(h->v, &t);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    return PyLong_FromUnsignedLongLong(t);
}

static const char *type_name(uint32_t t)
{
    static const char *names[] = {"none", "bool", "int64", "float64", "complex128", "bytes",
                                  "str", "array", "pickle", "record"};
    return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

PyObject *obj_info_dict(const shmstore_obj_info_t *in)
{
    PyObject *shape = NULL;
    if (in->desc.type == SHMSTORE_T_ARRAY) {
        shape = PyTuple_New(in->desc.ndim);
        if (!shape)
            return NULL;
        for (uint32_t i = 0; i < in->desc.ndim && i < SHMSTORE_NDIM_MAX; i++)
            PyTuple_SET_ITEM(shape, i, PyLong_FromUnsignedLongLong(in->desc.shape[i]));
    } else {
        shape = Py_NewRef(Py_None);
    }
    if (in->kind == SHMSTORE_KIND_QUEUE) {
        static const char *full[] = {"block", "drop_oldest", "error"};
        Py_DECREF(shape);
        return Py_BuildValue(
            "{s:s,s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:s,s:K,s:K,s:K,s:I,s:I,s:I}", "name", in->name,
            "kind", "queue", "mtime_ns", (unsigned long long)in->mtime_ns, "size",
            (unsigned long long)in->size, "footprint", (unsigned long long)in->footprint, "count",
            (unsigned long long)in->count, "capacity", (unsigned long long)in->capacity,
            "slot_size", (unsigned long long)in->slot_size, "full", full[in->full % 3],
            "first_index", (unsigned long long)in->first_index, "next_index",
            (unsigned long long)in->next_index, "dropped", (unsigned long long)in->dropped,
            "pinned", in->n_pinned, "producers_waiting", in->producers_waiting,
            "consumers_waiting", in->consumers_waiting);
    }
    if (in->kind == SHMSTORE_KIND_TABLE) {
        Py_DECREF(shape);
        return Py_BuildValue(
            "{s:s,s:s,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:I,s:O}", "name", in->name, "kind",
            "table", "size", (unsigned long long)in->size, "footprint",
            (unsigned long long)in->footprint, "count", (unsigned long long)in->count,
            "capacity", (unsigned long long)in->capacity, "record_size",
            (unsigned long long)in->record_size, "first_index",
            (unsigned long long)in->first_index, "next_index", (unsigned long long)in->next_index,
            "invalid", (unsigned long long)in->n_invalid, "fields", in->n_fields, "prioritized",
            in->is_prioritized ? Py_True : Py_False);
    }
    if (in->kind == SHMSTORE_KIND_SET) { /* array sets */
        Py_DECREF(shape);
        return Py_BuildValue("{s:s,s:s,s:O,s:K,s:K,s:K,s:K,s:O,s:O,s:O,s:i}", "name", in->name,
                             "kind", "set", "sealed", in->is_sealed ? Py_True : Py_False,
                             "mtime_ns", (unsigned long long)in->mtime_ns, "size",
                             (unsigned long long)in->size, "footprint",
                             (unsigned long long)in->footprint, "members",
                             (unsigned long long)in->count, "loading",
                             in->set_loading ? Py_True : Py_False, "tied",
                             in->set_flags & SHMSTORE_SET_TIED ? Py_True : Py_False, "writable",
                             in->set_flags & SHMSTORE_SET_WRITABLE ? Py_True : Py_False,
                             "owner_pid", (int)in->set_owner_pid);
    }
    if (in->kind == SHMSTORE_KIND_RING) /* the frame's dtype and shape, and the counters */
        return Py_BuildValue(
            "{s:s,s:s,s:K,s:K,s:s,s:N,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:I}", "name", in->name, "kind",
            "ring", "generation", (unsigned long long)in->version, "mtime_ns",
            (unsigned long long)in->mtime_ns, "dtype", in->version ? in->desc.dtype : "",
            "frame_shape", shape, "frame_nbytes", (unsigned long long)in->size, "capacity",
            (unsigned long long)in->capacity, "frames_written", (unsigned long long)in->next_index,
            "oldest", (unsigned long long)in->first_index, "held", (unsigned long long)in->count,
            "footprint", (unsigned long long)in->footprint, "has_writer",
            in->producers_waiting ? Py_True : Py_False, "readers_waiting", in->consumers_waiting);
    return Py_BuildValue("{s:s,s:s,s:O,s:K,s:K,s:K,s:K,s:s,s:s,s:N}", "name", in->name, "kind",
                         shmstore_kind_name(in->kind), "sealed",
                         in->is_sealed ? Py_True : Py_False, "version",
                         (unsigned long long)in->version, "mtime_ns",
                         (unsigned long long)in->mtime_ns, "size", (unsigned long long)in->size,
                         "footprint", (unsigned long long)in->footprint, "type",
                         in->version ? type_name(in->desc.type) : "none", "dtype",
                         in->desc.type == SHMSTORE_T_ARRAY ? in->desc.dtype : "", "shape", shape);
}

PyDoc_STRVAR(v_info_doc,
"info()\n--\n\nA dict describing the value: name, kind, sealed, version, mtime_ns, size,\n"
"footprint, type, dtype, shape.");

static PyObject *v_info(PyObject *self, PyObject *unused)
{
    (void)unused;
    ValueObject *h = SELF;
    shmstore_obj_info_t info;
    if (value_ready(h) < 0)
        return NULL;
    int r = shmstore_value_info(h->v, &info);
    if (r < 0)
        return shm_raise(h->st, r), NULL;
    return obj_info_dict(&info);
}

PyDoc_STRVAR(v_write_doc,
"write(timeout=None)\n--\n\nContext manager for an in-place update (see Store.write).");

static PyObject *v_write(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:write", kwlist, &timeout))
        return NULL;
    if (value_ready(SELF) < 0)
        return NULL;
    if (!SELF->store) {
        PyErr_SetString(PyExc_RuntimeError, "handle has no store");
        return NULL;
    }
    ValueObject *w = value_open(NULL, SELF->store, SELF->name, 0, 1);
    if (!w)
        return NULL;
    PyObject *ctx = write_ctx_new(w, timeout);
    Py_DECREF(w);
    return ctx;
}

static void value_close_now(ValueObject *h)
{
    if (h->v) {
        shmstore_value_close(h->v);
        h->v = NULL;
    }
}

PyDoc_STRVAR(v_close_doc,
"close()\n--\n\nClose the handle (views taken through it stay valid). Idempotent.");

static PyObject *v_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (SELF->reserving || SELF->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot close a Value while another thread uses it "
                        "(a wait, a put or a write is in progress)");
        return NULL;
    }
    value_close_now(SELF);
    Py_RETURN_NONE;
}

static PyObject *v_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *v_exit(PyObject *self, PyObject *args)
{
    (void)args;
    if (!SELF->reserving && !SELF->busy)
        value_close_now(SELF);
    Py_RETURN_FALSE;
}

static PyObject *v_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (!SELF->store) {
        PyErr_SetString(PyExc_TypeError, "cannot pickle an internal handle");
        return NULL;
    }
    /* N: the bound method is a new reference (O leaked one per pickle). */
    PyObject *meth = PyObject_GetAttrString((PyObject *)SELF->store, "value");
    if (!meth)
        return NULL;
    return Py_BuildValue("(N(O))", meth, SELF->name);
}

static PyObject *v_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<shmstore.Value %R%s>", SELF->name, SELF->v ? "" : " closed");
}

/* GC: a user handle holds its Store, and a Store subclass (or a SharedObject's dict)
 * may hold the handle: such cycles are collected. */
static int v_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(SELF->core);
    if (is_user(SELF))
        Py_VISIT(SELF->store);
    return 0;
}

static int v_clear(PyObject *self)
{
    ValueObject *h = SELF;
    if (h->busy || h->reserving)
        return 0; /* a GIL-released call uses it: its frame holds a reference anyway */
    value_close_now(h);
    if (is_user(h))
        Py_CLEAR(h->store);
    Py_CLEAR(h->core);
    return 0;
}

static void v_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    ValueObject *h = SELF;
    PyObject_GC_UnTrack(self);
    value_close_now(h);
    Py_CLEAR(h->core);
    if (is_user(h))
        Py_CLEAR(h->store);
    Py_CLEAR(h->name);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *v_get_name(PyObject *self, void *c)
{
    (void)c;
    return Py_NewRef(SELF->name);
}

static PyObject *v_get_closed(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(SELF->v == NULL);
}

static PyMethodDef v_methods[] = {
    {"put", METH(v_put), METH_FASTCALL | METH_KEYWORDS, v_put_doc},
    {"get", v_get, METH_NOARGS, v_get_doc},
    {"get_versioned", v_get_versioned, METH_NOARGS, v_get_versioned_doc},
    {"view", v_view, METH_NOARGS, v_view_doc},
    {"view_versioned", v_view_versioned, METH_NOARGS, v_view_versioned_doc},
    {"buffer", v_buffer, METH_NOARGS, v_buffer_doc},
    {"attrs", v_attrs, METH_NOARGS, v_attrs_doc},
    {"wait", METH(v_wait), METH_VARARGS | METH_KEYWORDS, v_wait_doc},
    {"trigger", v_trigger, METH_NOARGS, v_trigger_doc},
    {"seal", v_seal, METH_NOARGS, v_seal_doc},
    {"info", v_info, METH_NOARGS, v_info_doc},
    {"write", METH(v_write), METH_VARARGS | METH_KEYWORDS, v_write_doc},
    {"close", v_close, METH_NOARGS, v_close_doc},
    {"__enter__", v_enter, METH_NOARGS, NULL},
    {"__exit__", v_exit, METH_VARARGS, NULL},
    {"__reduce__", v_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef v_getset[] = {
    {"name", v_get_name, NULL, "The object's name.", NULL},
    {"version", v_get_version, NULL, "The latest version number (0 = never written).", NULL},
    {"mtime", v_get_mtime, NULL, "Time of the latest version, ns since the epoch (0 = never).", NULL},
    {"closed", v_get_closed, NULL, "True after close().", NULL},
    {"seen", v_get_seen, v_set_seen,
     "The latest version this handle has seen: read (get, view), published (put: so right\n"
     "after a put it is that put's version, whatever other writers did since) or waited\n"
     "for (wait). 0 at first. Writable, e.g. to forget what was seen.", NULL},
    {"modified", v_get_modified, NULL,
     "True if the value has a version newer than `seen` (does not change `seen`).", NULL},
    {"triggered", v_get_triggered, NULL,
     "True once per change: if the value has a version newer than `seen`, set `seen` to it\n"
     "and return True, else False. trigger() by this handle is seen too.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(v_doc,
"Value(store, name, *, create=True, exclusive=False)\n--\n\n"
"A handle on one value: the fast path (no name lookup per call).\n\n"
"The same as store.value(name, ...); subclasses may add state and methods. Keeps\n"
"working in a fork child (re-opened transparently).\n"
"If the value is deleted, its operations raise StaleError, even if a value of the same\n"
"name is created again: open a new handle.");

static PyType_Slot v_slots[] = {
    {Py_tp_new, v_new},
    {Py_tp_dealloc, v_dealloc},
    {Py_tp_traverse, v_traverse},
    {Py_tp_clear, v_clear},
    {Py_tp_repr, v_repr},
    {Py_tp_methods, v_methods},
    {Py_tp_getset, v_getset},
    {Py_tp_doc, (void *)v_doc},
    {0, NULL},
};

PyType_Spec Value_spec = {
    .name = "shmstore.Value",
    .basicsize = sizeof(ValueObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_HAVE_GC,
    .slots = v_slots,
};

/* ---- the in-place write context -------------------------------------------------------
 *
 * __enter__ takes the value's writer lock (shmstore_value_lock: a new block pre-filled
 * with the current version) and hands out a *private* writable copy of that block: a
 * numpy array (memoryview over a bytearray for bytes). __exit__ copies it back into the
 * block and publishes it (or discards the block if the with-body raised).
 *
 * Why not hand out the block itself: numpy slices, reshapes and memoryviews taken inside
 * the with-body do not count as exports of our Buffer, so nothing could stop them from
 * writing into the block after it is published (readers would see a version change
 * under them), and the block has no lease once published: after a few newer versions it
 * is freed and reused by other objects while those arrays still point at it. With a
 * private copy, whatever survives the block only ever touches private memory. */

typedef struct {
    PyObject_HEAD
    ValueObject *h;   /* private handle */
    PyObject *timeout;
    PyObject *priv;   /* the private copy (ndarray or bytearray) */
    PyObject *out;    /* what __enter__ returned */
    char *data;       /* the locked block */
    size_t len;
    int locked;
} WriteObject;

#define WSELF ((WriteObject *)self)

PyObject *write_ctx_new(ValueObject *h, PyObject *timeout)
{
    WriteObject *w = PyObject_GC_New(WriteObject, h->st->Write_type);
    if (!w)
        return NULL;
    w->h = (ValueObject *)Py_NewRef(h);
    w->timeout = Py_NewRef(timeout);
    w->priv = NULL;
    w->out = NULL;
    w->data = NULL;
    w->len = 0;
    w->locked = 0;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

/* Copy the private copy back into the locked block. 0 or -1 (exception set). */
static int w_copy_back(WriteObject *w)
{
    Py_buffer pb;
    if (PyObject_GetBuffer(w->priv, &pb, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if ((size_t)pb.len != w->len) {
        PyBuffer_Release(&pb);
        PyErr_Format(PyExc_BufferError, "Store.write(): the array of '%U' changed size "
                     "(%zd bytes, the value has %zu); nothing was published",
                     w->h->name, pb.len, w->len);
        return -1;
    }
    if (w->len >= GIL_COPY_MIN) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(w->data, pb.buf, w->len);
        Py_END_ALLOW_THREADS
    } else if (w->len) {
        memcpy(w->data, pb.buf, w->len);
    }
    PyBuffer_Release(&pb);
    return 0;
}

/* Publish (commit) or discard the locked block. Returns -1 with an exception set when
 * the commit failed (then the block was discarded). Never calls into Python with
 * commit == 0, so it is safe in tp_dealloc. */
static int w_unlock(WriteObject *w, int commit)
{
    if (!w->locked)
        return 0;
    w->locked = 0; /* claimed: another thread's __exit__ now does nothing */
    if (w->h->core->gen != shm_fork_gen) {
        /* A fork child leaving a block entered before fork(): the lock and the block are
         * the parent's; copying into it would change the parent's pending version. */
        w->data = NULL;
        w->h->reserving = 0;
        w->h->st->n_wlocks--;
        if (!commit)
            return 0;
        PyErr_SetString(PyExc_RuntimeError, "shmstore: this write block was entered before "
                        "fork(); its lock belongs to the parent process, nothing was written");
        return -1;
    }
    int rc = 0;
    if (commit && w_copy_back(w) < 0) {
        commit = 0;
        rc = -1;
    }
    if (commit) {
        int r = shmstore_value_unlock(w->h->v);
        (void)r; /* only fails when nothing is locked */
    } else {
        shmstore_value_abort(w->h->v);
    }
    w->data = NULL;
    w->h->reserving = 0;
    w->h->st->n_wlocks--;
    return rc;
}

static PyObject *w_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    WriteObject *w = WSELF;
    ValueObject *h = w->h;
    modstate *st = h->st;
    int64_t tmo;
    if (w->locked || w->out) {
        PyErr_SetString(PyExc_RuntimeError, "this write context was already entered");
        return NULL;
    }
    if (value_ready(h) < 0 || shm_timeout_ns(w->timeout, &tmo) < 0)
        return NULL;
    void *data;
    size_t len;
    shmstore_datum_t d;
    int r;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st->n_wlocks++;
    h->reserving = 1;
    for (;;) {
        int64_t slice = shm_next_slice(&t0, tmo);
        shmstore_value_t *v = h->v;
        Py_BEGIN_ALLOW_THREADS
        r = shmstore_value_lock(v, slice, &data, &len, &d);
        Py_END_ALLOW_THREADS
        if (r != -ETIMEDOUT || slice == 0)
            break;
        if (PyErr_CheckSignals() < 0) {
            h->reserving = 0;
            st->n_wlocks--;
            return NULL;
        }
    }
    if (r < 0) {
        h->reserving = 0;
        st->n_wlocks--;
        if (PyErr_Occurred())
            return NULL;
        return shm_raise(st, r), NULL;
    }
    w->locked = 1;
    w->data = data;
    w->len = len;
    if (d.type != SHMSTORE_T_ARRAY && d.type != SHMSTORE_T_BYTES) {
        w_unlock(w, 0);
        PyErr_Format(PyExc_TypeError, "Store.write() needs a numpy array or bytes value; '%U' "
                     "holds a %s", h->name, type_name(d.type));
        return NULL;
    }
    PyObject *priv, *out;
    if (d.type == SHMSTORE_T_ARRAY) {
        d.attrs = NULL;
        d.attrs_len = 0;
        priv = dec_value(st, &d, data, len, NULL); /* a new, writable, C-ordered copy */
        out = priv ? Py_NewRef(priv) : NULL;
    } else {
        priv = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)len);
        if (priv && len)
            memcpy(PyByteArray_AS_STRING(priv), data, len);
        out = priv ? PyMemoryView_FromObject(priv) : NULL;
    }
    if (!out) {
        Py_XDECREF(priv);
        w_unlock(w, 0);
        return NULL;
    }
    w->priv = priv;
    w->out = out;
    return Py_NewRef(out);
}

static PyObject *w_exit(PyObject *self, PyObject *args)
{
    PyObject *et = Py_None, *ev = Py_None, *tb = Py_None;
    WriteObject *w = WSELF;
    if (!PyArg_UnpackTuple(args, "__exit__", 0, 3, &et, &ev, &tb))
        return NULL;
    int failed = w_unlock(w, et == Py_None) < 0;
    /* The array stays a private copy: mark it read-only to flag writes that would be
     * lost (slices taken inside the block stay writable, but only to private memory). */
    if (w->out && w->priv == w->out) {
        PyObject *et2, *ev2, *tb2;
        PyErr_Fetch(&et2, &ev2, &tb2);
        PyObject *r = PyObject_CallMethod(w->out, "setflags", "(O)", Py_False);
        if (!r)
            PyErr_Clear();
        Py_XDECREF(r);
        PyErr_Restore(et2, ev2, tb2);
    }
    if (failed)
        return NULL;
    Py_RETURN_FALSE;
}

static int w_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(WSELF->h);
    Py_VISIT(WSELF->timeout);
    Py_VISIT(WSELF->priv);
    Py_VISIT(WSELF->out);
    return 0;
}

static int w_clear(PyObject *self)
{
    WriteObject *w = WSELF;
    w_unlock(w, 0); /* never exited: discard (no Python calls, no exception) */
    Py_CLEAR(w->out);
    Py_CLEAR(w->priv);
    Py_CLEAR(w->h);
    Py_CLEAR(w->timeout);
    return 0;
}

static void w_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    w_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef w_methods[] = {
    {"__enter__", w_enter, METH_NOARGS, "Lock the value; return a writable array (or memoryview) "
                                        "pre-filled with the current version."},
    {"__exit__", w_exit, METH_VARARGS, "Publish the change (or discard it on an exception)."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(w_doc,
"Context manager of Store.write(): in-place update of an array or bytes value.\n\n"
"__enter__ takes the value's writer lock and returns a writable numpy array (memoryview\n"
"for bytes) holding a private copy of the current version; readers keep reading the\n"
"previous version meanwhile. __exit__ copies it into a new version and publishes it, or\n"
"discards it if the block raised. The array is read-only after the block; arrays or\n"
"memoryviews taken from it inside the block stay private copies: writing to them later\n"
"never changes the store.");

static PyType_Slot w_slots[] = {
    {Py_tp_dealloc, w_dealloc},
    {Py_tp_traverse, w_traverse},
    {Py_tp_clear, w_clear},
    {Py_tp_methods, w_methods},
    {Py_tp_doc, (void *)w_doc},
    {0, NULL},
};

PyType_Spec Write_spec = {
    .name = "shmstore.WriteContext",
    .basicsize = sizeof(WriteObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION |
             Py_TPFLAGS_HAVE_GC,
    .slots = w_slots,
};
