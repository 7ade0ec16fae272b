/* store.c - Core (one attached store) and Store (the user object).
 *
 * Store keeps a reference to its current Core. Every object that points into the
 * mapping (Value handles, leased Buffers) keeps a reference to the Core it came from,
 * so closing a Store only drops the Store's reference: the store is detached when the
 * last view over it is gone, and views stay valid after their Store is closed.
 *
 * fork(): the library's handles of the parent are invalid in the child. Every Core
 * records the fork generation it was attached in (module.c); store_check_open(), which
 * every operation calls first, sees an older generation and attaches this process again
 * by name (new slot, new lock) and drops the cached handles; Value handles re-open
 * themselves on the new Core (value_ready). Nothing is ever registered with
 * multiprocessing's resource_tracker and nothing is unlinked when a process exits.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "ext.h"

/* ---- Core ----------------------------------------------------------------------------- */

CoreObject *core_open(modstate *st, PyObject *module, const char *name, const char *dir,
                      unsigned flags, const shmstore_options_t *opt)
{
    shmstore_t *s = NULL;
    shmstore_options_t o = *opt;
    o.dir = dir;
    int r;
    Py_BEGIN_ALLOW_THREADS /* may wait briefly for another process creating the store */
    r = shmstore_open(name, flags, &o, &s);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return shm_raise(st, r), NULL;
    CoreObject *c = PyObject_New(CoreObject, st->Core_type);
    if (!c) {
        shmstore_close(s);
        return NULL;
    }
    c->s = s;
    c->module = Py_NewRef(module);
    c->st = st;
    c->gen = shm_fork_gen;
    return c;
}

static void core_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    CoreObject *c = (CoreObject *)self;
    shmstore_close(c->s); /* in a fork child: only unmaps */
    Py_CLEAR(c->module);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot core_slots[] = {
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_doc, (void *)"Internal: one attachment of this process to a store."},
    {0, NULL},
};

PyType_Spec Core_spec = {
    .name = "shmstore._Core",
    .basicsize = sizeof(CoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = core_slots,
};

/* ---- Store: lifecycle -------------------------------------------------------------------- */

#define SSELF ((StoreObject *)self)

static const char *cdir_of(StoreObject *self)
{
    return self->dir == Py_None ? NULL : PyUnicode_AsUTF8(self->dir);
}

/* In a fork child: attach this process by name and drop the handles of the parent. */
static int store_reattach(StoreObject *self)
{
    CoreObject *c = core_open(self->st, self->core->module, PyUnicode_AsUTF8(self->name),
                              cdir_of(self), self->create ? SHMSTORE_O_CREATE : 0, &self->opt);
    if (!c)
        return -1;
    PyDict_Clear(self->cache);
    Py_SETREF(self->core, c);
    return 0;
}

int store_check_open(StoreObject *self)
{
    if (!self->core) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed shmstore.Store");
        return -1;
    }
    return self->core->gen == shm_fork_gen ? 0 : store_reattach(self);
}

static PyObject *store_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "create", "exclusive", "capacity", "group", "dir", NULL};
    PyObject *name, *dir = Py_None, *capacity = Py_None, *group = Py_None;
    int create = 1, excl = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$ppOOO:Store", kwlist, &name, &create, &excl,
                                     &capacity, &group, &dir))
        return NULL;
    PyObject *module = shm_module_of_type(type);
    if (!module)
        return NULL;
    modstate *st = shm_state_of(module);
    shmstore_options_t opt;
    memset(&opt, 0, sizeof(opt));
    if (capacity != Py_None) {
        opt.capacity = PyLong_AsUnsignedLongLong(capacity);
        if (opt.capacity == (uint64_t)-1 && PyErr_Occurred())
            return NULL;
    }
    if (group != Py_None) {
        if (PyLong_Check(group)) {
            opt.group = PyLong_AsLongLong(group);
            if (opt.group == -1 && PyErr_Occurred())
                return NULL;
        } else if (PyUnicode_Check(group)) {
            PyObject *grp = PyImport_ImportModule("grp");
            PyObject *ent = grp ? PyObject_CallMethod(grp, "getgrnam", "O", group) : NULL;
            PyObject *gid = ent ? PyObject_GetAttrString(ent, "gr_gid") : NULL;
            Py_XDECREF(grp);
            Py_XDECREF(ent);
            if (!gid)
                return NULL;
            opt.group = PyLong_AsLongLong(gid);
            Py_DECREF(gid);
        } else {
            PyErr_SetString(PyExc_TypeError, "group must be a gid (int), a group name or None");
            return NULL;
        }
    }
    if (dir != Py_None && !PyUnicode_Check(dir)) {
        PyErr_SetString(PyExc_TypeError, "dir must be a str or None");
        return NULL;
    }
    const char *cname = PyUnicode_AsUTF8(name);
    const char *cdir = dir == Py_None ? NULL : PyUnicode_AsUTF8(dir);
    if (!cname || (dir != Py_None && !cdir))
        return NULL;
    if (excl && !create) {
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    unsigned flags = (create ? SHMSTORE_O_CREATE : 0) | (excl ? SHMSTORE_O_EXCL : 0);
    CoreObject *core = core_open(st, module, cname, cdir, flags, &opt);
    if (!core)
        return NULL;
    StoreObject *self = (StoreObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(core);
        return NULL;
    }
    self->core = core;
    self->name = Py_NewRef(name);
    self->dir = Py_NewRef(dir);
    self->cache = PyDict_New();
    self->opt = opt;
    self->create = create; /* a fork child re-attaches without EXCL */
    self->st = st;
    self->weakrefs = NULL;
    if (!self->cache) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void store_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (SSELF->weakrefs)
        PyObject_ClearWeakRefs(self);
    Py_CLEAR(SSELF->cache);
    Py_CLEAR(SSELF->core);
    Py_CLEAR(SSELF->name);
    Py_CLEAR(SSELF->dir);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyDoc_STRVAR(store_close_doc,
"close()\n--\n\nDetach from the store. Views (arrays) taken from it stay valid: the\n"
"store is unmapped when the last of them is gone. Nothing is deleted. Idempotent.");

static PyObject *store_close(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (SSELF->cache)
        PyDict_Clear(SSELF->cache);
    Py_CLEAR(SSELF->core);
    Py_RETURN_NONE;
}

static PyObject *store_enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (store_check_open(SSELF) < 0)
        return NULL;
    return Py_NewRef(self);
}

static PyObject *store_exit(PyObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = store_close(self, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

/* ---- by-name handles --------------------------------------------------------------------- */

static int cache_add(StoreObject *self, PyObject *name, ValueObject *v)
{
    if (PyDict_GET_SIZE(self->cache) >= HANDLE_CACHE_MAX)
        PyDict_Clear(self->cache);
    return PyDict_SetItem(self->cache, name, (PyObject *)v);
}

/* A cached internal handle for `name` (new reference). */
static ValueObject *store_handle(StoreObject *self, PyObject *name, int create)
{
    if (store_check_open(self) < 0)
        return NULL;
    PyObject *h = PyDict_GetItemWithError(self->cache, name);
    if (h)
        return (ValueObject *)Py_NewRef(h);
    if (PyErr_Occurred())
        return NULL;
    ValueObject *v = value_open(NULL, self, name, create, 0);
    if (v && cache_add(self, name, v) < 0)
        Py_CLEAR(v);
    return v;
}

/* After an operation on a cached handle failed: retry once if the object was deleted
 * (and maybe re-created) since the handle was cached. */
static int stale_retry(StoreObject *self, PyObject *name, int *tries)
{
    if ((*tries)++ > 0 || !PyErr_ExceptionMatches(self->st->StaleError))
        return 0;
    PyErr_Clear();
    if (PyDict_DelItem(self->cache, name) < 0)
        PyErr_Clear();
    return 1;
}

typedef PyObject *(*hop_t)(ValueObject *h, void *arg);

static PyObject *by_name(StoreObject *self, PyObject *name, int create, hop_t op, void *arg)
{
    int tries = 0;
    if (!name_utf8(name)) /* before the cache lookup: a list name is no "unhashable" error */
        return NULL;
    for (;;) {
        ValueObject *h = store_handle(self, name, create);
        if (!h)
            return NULL;
        PyObject *r = op(h, arg);
        Py_DECREF(h);
        if (r || !stale_retry(self, name, &tries))
            return r;
    }
}

/* ---- Store: values -------------------------------------------------------------------------- */

struct put_args {
    enc_t *e;
    unsigned flags;
};

static PyObject *op_put(ValueObject *h, void *arg)
{
    struct put_args *a = arg;
    if (value_put_encoded(h, a->e, a->flags) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Create `name` and put: exclusively, so that this call knows the value is its own and
 * removes it again if the store refuses the put (full, too large) before anybody wrote a
 * version, as shmstore_put() does in C. */
static PyObject *put_new(StoreObject *self, PyObject *name, struct put_args *a)
{
    ValueObject *h = value_open(NULL, self, name, 2, 0);
    if (!h) {
        if (!PyErr_ExceptionMatches(PyExc_FileExistsError))
            return NULL;
        /* Another process created it meanwhile: an ordinary put. Or the name is an array
         * set's member (immutable): then that first error is the one to see. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *r = by_name(self, name, 0, op_put, a);
        if (!r && PyErr_ExceptionMatches(self->st->NotFoundError)) {
            PyErr_Restore(et, ev, tb);
            return NULL;
        }
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
        return r;
    }
    PyObject *r = op_put(h, a);
    uint64_t ver = 1;
    if (r) {
        if (cache_add(self, name, h) < 0)
            PyErr_Clear(); /* only a cache miss later */
    } else if (shmstore_value_version(h->v, &ver) == 0 && ver == 0) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb); /* keep the put's error */
        shmstore_delete(h->core->s, PyUnicode_AsUTF8(name));
        PyErr_Restore(et, ev, tb);
    }
    Py_DECREF(h);
    return r;
}

/* store.put(name, value) and store[name] = value. The value is encoded before anything
 * is created, so a value the codec refuses (an array of dtype object, bad attrs) leaves
 * no empty object behind for names() to list and get() to find without a version. */
static PyObject *put_by_name(StoreObject *self, PyObject *name, PyObject *value,
                             PyObject *attrs, unsigned flags)
{
    enc_t e;
    if (!name_utf8(name) || value_encode(self->st, value, attrs, &e) < 0)
        return NULL;
    struct put_args a = {&e, flags};
    PyObject *r = by_name(self, name, 0, op_put, &a);
    if (!r && PyErr_ExceptionMatches(self->st->NotFoundError)) {
        PyErr_Clear();
        r = put_new(self, name, &a);
    }
    value_encoded_free(&e);
    return r;
}

PyDoc_STRVAR(store_put_doc,
"put(name, value, *, attrs=None, same_layout=False)\n--\n\n"
"Publish `value` as the new version of the value `name` (created if needed): readers\n"
"see it at once and waiters wake. None, bool, int (int64), float, complex, str, bytes\n"
"and numpy arrays of fixed-size dtypes are stored natively (non-contiguous arrays are\n"
"copied to C order); dict/list/tuple/set/frozenset/bytearray trees are stored as one\n"
"record whose arrays view() returns without copying; anything else is pickled. Arrays\n"
"of dtype object raise TypeError. A put that fails creates nothing. Copies of 16 KiB or\n"
"more release the GIL.");

static PyObject *store_put(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "value", "attrs", "same_layout", NULL};
    PyObject *name, *value, *attrs = Py_None;
    int same = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UO|$Op:put", kwlist, &name, &value, &attrs, &same))
        return NULL;
    return put_by_name(SSELF, name, value, attrs, same ? SHMSTORE_PUT_SAME_LAYOUT : 0);
}

static PyObject *op_get(ValueObject *h, void *arg)
{
    return value_get_obj(h, arg != NULL, NULL);
}

PyDoc_STRVAR(store_get_doc,
"get(name, default=<raise>)\n--\n\n"
"A copy of the current version of `name`. Raises NotFoundError (a KeyError and a\n"
"FileNotFoundError) if there is no such value, unless `default` is given, and\n"
"NoValueError if it was never written. Large copies release the GIL.");

static PyObject *store_get(PyObject *self, PyObject *args)
{
    PyObject *name, *dflt = NULL;
    if (!PyArg_ParseTuple(args, "U|O:get", &name, &dflt))
        return NULL;
    PyObject *r = by_name(SSELF, name, 0, op_get, NULL);
    if (!r && PyErr_ExceptionMatches(SSELF->st->NotFoundError))
        r = tree_member(SSELF, name, 0);
    if (!r && dflt && (PyErr_ExceptionMatches(SSELF->st->NotFoundError) ||
                       PyErr_ExceptionMatches(SSELF->st->NoValueError))) {
        PyErr_Clear();
        return Py_NewRef(dflt);
    }
    return r;
}

PyDoc_STRVAR(store_view_doc,
"view(name)\n--\n\n"
"The current version of `name` without copying. Arrays (at the top or inside a\n"
"dict/list/tuple) are read-only numpy arrays over one leased block, top-level bytes a\n"
"read-only memoryview; other types are copies. The block stays valid and unchanged while\n"
"any of those arrays is alive, even after newer versions, delete() or Store.close().\n"
"A view inherited through os.fork() is leased by the child too (right after the fork),\n"
"so it stays valid after the parent lets it go.");

static PyObject *store_view(PyObject *self, PyObject *name)
{
    PyObject *r = by_name(SSELF, name, 0, op_get, (void *)1);
    if (!r && PyErr_ExceptionMatches(SSELF->st->NotFoundError))
        r = tree_member(SSELF, name, 1);
    return r;
}

static PyObject *op_version(ValueObject *h, void *arg)
{
    (void)arg;
    return PyObject_GetAttrString((PyObject *)h, "version");
}

PyDoc_STRVAR(store_version_doc,
"version(name)\n--\n\nThe latest version number of `name` (0 = never written). Never blocks.");

static PyObject *store_version(PyObject *self, PyObject *name)
{
    return by_name(SSELF, name, 0, op_version, NULL);
}

static PyObject *op_mtime(ValueObject *h, void *arg)
{
    (void)arg;
    return PyObject_GetAttrString((PyObject *)h, "mtime");
}

PyDoc_STRVAR(store_mtime_doc,
"mtime(name)\n--\n\nTime of the latest version of `name`, ns since the epoch (0 = never).");

static PyObject *store_mtime(PyObject *self, PyObject *name)
{
    return by_name(SSELF, name, 0, op_mtime, NULL);
}

struct wait_args {
    PyObject *after, *timeout;
};

static PyObject *op_wait(ValueObject *h, void *arg)
{
    struct wait_args *a = arg;
    return value_wait_obj(h, a->after, a->timeout);
}

PyDoc_STRVAR(store_wait_doc,
"wait(name, after=None, timeout=None)\n--\n\n"
"Block until `name` has a version newer than `after` (default: its current version)\n"
"and return that version. A value that does not exist yet is created empty, so a reader\n"
"may wait for a writer that has not started. `timeout` in seconds (None = forever):\n"
"raises TimeoutError. Releases the GIL; Ctrl-C interrupts it.");

static PyObject *store_wait(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "after", "timeout", NULL};
    PyObject *name;
    struct wait_args a = {Py_None, Py_None};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|OO:wait", kwlist, &name, &a.after, &a.timeout))
        return NULL;
    return by_name(SSELF, name, 1, op_wait, &a);
}

static PyObject *op_call(ValueObject *h, void *arg)
{
    return PyObject_CallMethod((PyObject *)h, (const char *)arg, NULL);
}

PyDoc_STRVAR(store_trigger_doc,
"trigger(name)\n--\n\nPublish a new version of `name` with the same data (created as None if\n"
"needed): version and mtime go up and waiters wake. Returns the new version.");

static PyObject *store_trigger(PyObject *self, PyObject *name)
{
    PyObject *r = by_name(SSELF, name, 1, op_call, "trigger");
    if (!r)
        return NULL;
    Py_DECREF(r);
    return by_name(SSELF, name, 0, op_version, NULL);
}

PyDoc_STRVAR(store_seal_doc, "seal(name)\n--\n\nMake `name` immutable: later puts raise SealedError.");

static PyObject *store_seal(PyObject *self, PyObject *name)
{
    return by_name(SSELF, name, 0, op_call, "seal");
}

PyDoc_STRVAR(store_attrs_doc, "attrs(name)\n--\n\nThe attrs dict stored with the current version of `name`.");

static PyObject *store_attrs(PyObject *self, PyObject *name)
{
    return by_name(SSELF, name, 0, op_call, "attrs");
}

/* The attached store (re-attached after fork), or NULL with an exception set. */
static shmstore_t *store_s(StoreObject *self)
{
    return store_check_open(self) < 0 ? NULL : self->core->s;
}

PyDoc_STRVAR(store_info_doc,
"info(name)\n--\n\nA dict describing object `name`: name, kind, sealed, version, mtime_ns,\n"
"size, footprint, type, dtype, shape.");

static PyObject *store_info(PyObject *self, PyObject *name)
{
    const char *cname;
    shmstore_obj_info_t info;
    int r;
    if (!(cname = name_utf8(name)))
        return NULL;
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return NULL;
    r = shmstore_info(s, cname, &info);
    if (r < 0)
        return shm_raise(SSELF->st, r), NULL;
    return obj_info_dict(&info);
}

PyDoc_STRVAR(store_delete_doc,
"delete(name)\n--\n\nRemove the object `name`. Handles on it raise StaleError; views of it stay\n"
"valid until released. Raises NotFoundError if there is no such object.");

static PyObject *store_delete(PyObject *self, PyObject *name)
{
    const char *cname;
    int r;
    if (!(cname = name_utf8(name)))
        return NULL;
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return NULL;
    r = shmstore_delete(s, cname);
    if (PyDict_DelItem(SSELF->cache, name) < 0)
        PyErr_Clear();
    if (r < 0)
        return shm_raise(SSELF->st, r), NULL;
    Py_RETURN_NONE;
}

static int names_cb(const shmstore_obj_info_t *info, void *arg)
{
    PyObject *s = PyUnicode_DecodeUTF8(info->name, (Py_ssize_t)strlen(info->name), "replace");
    if (!s)
        return PYERR_SET;
    int r = PyList_Append((PyObject *)arg, s);
    Py_DECREF(s);
    return r < 0 ? PYERR_SET : 0;
}

PyDoc_STRVAR(store_names_doc,
"names(prefix=None)\n--\n\nSorted names of the objects whose name starts with `prefix`.");

static PyObject *store_names(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prefix", NULL};
    const char *prefix = NULL;
    int r;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|z:names", kwlist, &prefix))
        return NULL;
    shmstore_t *s = store_s(SSELF);
    PyObject *out = s ? PyList_New(0) : NULL;
    if (!out)
        return NULL;
    r = shmstore_list(s, prefix, names_cb, out);
    if (r < 0) {
        Py_DECREF(out);
        return shm_raise(SSELF->st, r), NULL;
    }
    if (PyList_Sort(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(store_value_doc,
"value(name, *, create=True, exclusive=False)\n--\n\n"
"A Value handle on `name` (created empty if needed unless create=False; exclusive=True:\n"
"FileExistsError if it exists, so exactly one of racing creators wins): the fast path\n"
"for repeated put/get/view/wait, with no name lookup per call.");

static PyObject *store_value(PyObject *self, PyObject *args, PyObject *kw)
{
    return value_open_args(NULL, SSELF, args, kw);
}

PyDoc_STRVAR(store_queue_doc,
"queue(name, *, capacity=None, full='block', slot_size=None, create=True, exclusive=False)\n--\n\n"
"A shmstore.Queue: a bounded FIFO of entries, shared by every process.\n\n"
"Created if needed (create=True), with `capacity` entries (None: 1024) and what a\n"
"full queue does with a push: 'block' (wait for room, up to the push's timeout),\n"
"'drop_oldest' (the oldest entry leaves; views of it stay valid) or 'error' (raise\n"
"FullError). `slot_size`: the largest entry in bytes (None: any size). An existing\n"
"queue keeps its creator's options. Raises NotFoundError (create=False and none),\n"
"FileExistsError (exclusive=True and it exists), TypeError (another kind of object).");

static PyObject *store_queue(PyObject *self, PyObject *args, PyObject *kw)
{
    return queue_open_args(SSELF, args, kw);
}

PyDoc_STRVAR(store_table_doc,
"table(name, *, fields=None, capacity=None, prioritized=False, create=True, exclusive=False)\n--\n\n"
"A shmstore.Table: a ring of `capacity` fixed records shared by every process (a replay\n"
"buffer). fields: dict name -> dtype or (dtype, shape), in record order; with fields and\n"
"capacity the table is created if needed (an existing one must have the same schema),\n"
"with fields=None an existing table is opened. prioritized=True keeps a priority per\n"
"record for sample(k, prioritized=True). Raises NotFoundError (no such table),\n"
"FileExistsError (exclusive), MemoryError (does not fit the store: nothing is made),\n"
"ValueError (bad schema), TypeError (another kind under that name).");

static PyObject *store_table(PyObject *self, PyObject *args, PyObject *kw)
{
    return table_open_args(SSELF, args, kw);
}

PyDoc_STRVAR(store_ring_doc,
"ring(name, *, dtype=None, frame_shape=(), capacity=None, attrs=None, create=True,\n"
"     exclusive=False, writer=False)\n--\n\n"
"A shmstore.Ring: a circular buffer of time-series frames (one writer, readers with a\n"
"cursor). A layout (dtype, frame_shape, capacity in frames, default 1024; attrs such as\n"
"{'srate': 30000.0}) configures a ring that has none and must match one that has\n"
"(LayoutError; change it with Ring.reconfigure). Without a dtype the ring is opened as it\n"
"is (created without a layout if missing, for a writer to configure). writer=True takes\n"
"the writer role now. Raises NotFoundError (create=False and none), FileExistsError\n"
"(exclusive and it exists), TypeError (another kind), OSError EBUSY (another writer).");

static PyObject *store_ring(PyObject *self, PyObject *args, PyObject *kw)
{
    return ring_open_args(SSELF, args, kw);
}

PyDoc_STRVAR(store_write_doc,
"write(name, *, timeout=None)\n--\n\n"
"In-place update of the array (or bytes) value `name`:\n\n"
"    with store.write('frame') as arr:\n"
"        arr[10:20] = 0\n\n"
"`arr` is a private, writable copy of the current version (a memoryview for bytes)\n"
"taken under the value's writer lock; readers keep seeing the previous version until the\n"
"block ends, then the change is published as a new version (discarded if the block\n"
"raised). Afterwards `arr` is read-only, and slices of it taken inside the block only\n"
"ever write to private memory. Waits up to `timeout` s for other writers.");

static PyObject *store_write(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "timeout", NULL};
    PyObject *name, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|$O:write", kwlist, &name, &timeout))
        return NULL;
    ValueObject *h = value_open(NULL, SSELF, name, 0, 1);
    if (!h)
        return NULL;
    PyObject *ctx = write_ctx_new(h, timeout);
    Py_DECREF(h);
    return ctx;
}

PyDoc_STRVAR(store_stat_doc,
"stat()\n--\n\nFigures about the store as a dict: capacity, committed, used, n_blocks,\n"
"n_objects, n_procs, n_slots, layout_version, uid, ctime_ns.");

static PyObject *store_stat(PyObject *self, PyObject *unused)
{
    (void)unused;
    shmstore_stat_t sb;
    int r;
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return NULL;
    r = shmstore_stat(s, &sb);
    if (r < 0)
        return shm_raise(SSELF->st, r), NULL;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:I,s:I,s:I,s:I,s:K}", "capacity",
                         (unsigned long long)sb.capacity, "committed", (unsigned long long)sb.committed,
                         "used", (unsigned long long)sb.used, "n_blocks", (unsigned long long)sb.n_blocks,
                         "n_objects", (unsigned long long)sb.n_objects, "n_procs", sb.n_procs,
                         "n_slots", sb.n_slots, "layout_version", sb.layout_version, "uid", sb.uid,
                         "ctime_ns", (unsigned long long)sb.ctime_ns);
}

PyDoc_STRVAR(store_gc_doc,
"gc()\n--\n\nReclaim what dead processes left (leases, writer locks, half-written\n"
"versions, unreachable blocks). Returns a dict of what was freed.");

static PyObject *store_gc(PyObject *self, PyObject *unused)
{
    (void)unused;
    shmstore_gc_stats_t g;
    int r;
    memset(&g, 0, sizeof(g));
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return NULL;
    r = shmstore_gc(s, &g);
    if (r < 0)
        return shm_raise(SSELF->st, r), NULL;
    return Py_BuildValue("{s:I,s:I,s:I,s:I,s:K}", "dead_procs", g.dead_procs, "leases_dropped",
                         g.leases_dropped, "locks_released", g.locks_released, "blocks_freed",
                         g.blocks_freed, "bytes_freed", (unsigned long long)g.bytes_freed);
}

PyDoc_STRVAR(store_check_doc,
"check()\n--\n\nCheck the whole store. Returns '' when consistent, else a report of the\n"
"problems found (one per line).");

static PyObject *store_check(PyObject *self, PyObject *unused)
{
    (void)unused;
    char report[4096];
    int r;
    report[0] = 0;
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return NULL;
    r = shmstore_check(s, report, sizeof(report));
    if (r < 0 && r != SHMSTORE_ECORRUPT)
        return shm_raise(SSELF->st, r), NULL;
    if (r == SHMSTORE_ECORRUPT && !report[0])
        strcpy(report, "corrupt");
    return PyUnicode_DecodeUTF8(report, (Py_ssize_t)strlen(report), "replace");
}

static int procs_cb(const shmstore_proc_info_t *p, void *arg)
{
    PyObject *d = Py_BuildValue("{s:I,s:i,s:O,s:O,s:I,s:K}", "slot", p->slot, "pid", p->pid,
                                "alive", p->is_alive ? Py_True : Py_False, "self",
                                p->is_self ? Py_True : Py_False, "n_leases", p->n_leases,
                                "attach_ns", (unsigned long long)p->attach_ns);
    if (!d)
        return PYERR_SET;
    int r = PyList_Append((PyObject *)arg, d);
    Py_DECREF(d);
    return r < 0 ? PYERR_SET : 0;
}

PyDoc_STRVAR(store_procs_doc,
"procs()\n--\n\nThe processes attached to the store: a list of dicts (slot, pid, alive,\n"
"self, n_leases, attach_ns).");

static PyObject *store_procs(PyObject *self, PyObject *unused)
{
    (void)unused;
    int r;
    shmstore_t *s = store_s(SSELF);
    PyObject *out = s ? PyList_New(0) : NULL;
    if (!out)
        return NULL;
    r = shmstore_procs(s, procs_cb, out);
    if (r < 0) {
        Py_DECREF(out);
        return shm_raise(SSELF->st, r), NULL;
    }
    return out;
}

/* ---- mapping protocol ---------------------------------------------------------------------- */

static PyObject *store_getitem(PyObject *self, PyObject *name)
{
    return by_name(SSELF, name, 0, op_get, NULL);
}

static int store_setitem(PyObject *self, PyObject *name, PyObject *value)
{
    PyObject *r;
    if (!value) {
        r = store_delete(self, name);
    } else {
        r = put_by_name(SSELF, name, value, Py_None, 0);
    }
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int store_contains(PyObject *self, PyObject *name)
{
    const char *cname;
    shmstore_obj_info_t info;
    if (!PyUnicode_Check(name))
        return 0;
    if (!(cname = PyUnicode_AsUTF8(name)))
        return -1;
    shmstore_t *s = store_s(SSELF);
    if (!s)
        return -1;
    int r = shmstore_info(s, cname, &info);
    if (r == 0)
        return 1;
    if (r == -ENOENT || r == SHMSTORE_ENAME)
        return 0;
    return shm_raise(SSELF->st, r);
}

static Py_ssize_t store_len(PyObject *self)
{
    PyObject *args = PyTuple_New(0);
    PyObject *n = args ? store_names(self, args, NULL) : NULL;
    Py_XDECREF(args);
    if (!n)
        return -1;
    Py_ssize_t len = PyList_GET_SIZE(n);
    Py_DECREF(n);
    return len;
}

static PyObject *store_iter(PyObject *self)
{
    PyObject *args = PyTuple_New(0);
    if (!args)
        return NULL;
    PyObject *n = store_names(self, args, NULL);
    Py_DECREF(args);
    if (!n)
        return NULL;
    PyObject *it = PyObject_GetIter(n);
    Py_DECREF(n);
    return it;
}

static PyObject *store_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<shmstore.Store %R%s>", SSELF->name, SSELF->core ? "" : " closed");
}

static PyObject *store_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *kw = Py_BuildValue("{s:O,s:O}", "dir", SSELF->dir, "create", SSELF->create ? Py_True : Py_False);
    if (!kw)
        return NULL;
    /* functools.partial(Store, name, **kw)() re-attaches by name in the unpickler */
    PyObject *functools = PyImport_ImportModule("functools");
    PyObject *partial = functools ? PyObject_GetAttrString(functools, "partial") : NULL;
    Py_XDECREF(functools);
    if (!partial) {
        Py_DECREF(kw);
        return NULL;
    }
    PyObject *args = PyTuple_Pack(2, (PyObject *)Py_TYPE(self), SSELF->name);
    PyObject *p = args ? PyObject_Call(partial, args, kw) : NULL;
    Py_XDECREF(args);
    Py_DECREF(partial);
    Py_DECREF(kw);
    if (!p)
        return NULL;
    return Py_BuildValue("(N())", p);
}

static PyObject *store_get_name(PyObject *self, void *c)
{
    (void)c;
    return Py_NewRef(SSELF->name);
}

static PyObject *store_get_dir(PyObject *self, void *c)
{
    (void)c;
    if (SSELF->core)
        return PyUnicode_DecodeFSDefault(shmstore_dir(SSELF->core->s));
    return Py_NewRef(SSELF->dir);
}

static PyObject *store_get_closed(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(SSELF->core == NULL);
}

static PyMethodDef store_methods[] = {
    {"close", store_close, METH_NOARGS, store_close_doc},
    {"__enter__", store_enter, METH_NOARGS, NULL},
    {"__exit__", store_exit, METH_VARARGS, NULL},
    {"__reduce__", store_reduce, METH_NOARGS, NULL},
    {"put", METH(store_put), METH_VARARGS | METH_KEYWORDS, store_put_doc},
    {"get", store_get, METH_VARARGS, store_get_doc},
    {"view", store_view, METH_O, store_view_doc},
    {"version", store_version, METH_O, store_version_doc},
    {"mtime", store_mtime, METH_O, store_mtime_doc},
    {"wait", METH(store_wait), METH_VARARGS | METH_KEYWORDS, store_wait_doc},
    {"trigger", store_trigger, METH_O, store_trigger_doc},
    {"seal", store_seal, METH_O, store_seal_doc},
    {"attrs", store_attrs, METH_O, store_attrs_doc},
    {"info", store_info, METH_O, store_info_doc},
    {"delete", store_delete, METH_O, store_delete_doc},
    {"names", METH(store_names), METH_VARARGS | METH_KEYWORDS, store_names_doc},
    {"value", METH(store_value), METH_VARARGS | METH_KEYWORDS, store_value_doc},
    {"queue", METH(store_queue), METH_VARARGS | METH_KEYWORDS, store_queue_doc},
    {"table", METH(store_table), METH_VARARGS | METH_KEYWORDS, store_table_doc},
    {"ring", METH(store_ring), METH_VARARGS | METH_KEYWORDS, store_ring_doc},
    {"write", METH(store_write), METH_VARARGS | METH_KEYWORDS, store_write_doc},
    {"stat", store_stat, METH_NOARGS, store_stat_doc},
    {"gc", store_gc, METH_NOARGS, store_gc_doc},
    {"check", store_check, METH_NOARGS, store_check_doc},
    {"procs", store_procs, METH_NOARGS, store_procs_doc},
    {"put_tree", METH(tree_put), METH_VARARGS | METH_KEYWORDS,
     "put_tree(prefix, nested, *, seal=True, overwrite=False, persistent=True)\n--\n\n"
     "Store a nested dict of arrays, scalars and strings as the array set `prefix`,\n"
     "all-or-nothing. seal=False makes the members shared-writable (every process\n"
     "writes them in place, unsynchronized); persistent=False removes the set when\n"
     "this process closes the store or dies. FileExistsError without overwrite;\n"
     "TypeError for arrays of Python objects; MemoryError/OSError when full."},
    {"get_tree", METH(tree_get), METH_VARARGS | METH_KEYWORDS,
     "get_tree(prefix, *, attrs=False)\n--\n\n"
     "The set `prefix` as the nested dict it was stored as, of zero-copy arrays that\n"
     "hold a lease (valid whatever else is dropped). attrs=True: the same nesting of\n"
     "each member's attrs dicts, group attributes under the key '.attrs'."},
    {"delete_tree", METH(tree_delete), METH_O,
     "delete_tree(prefix)\n--\n\nRemove every object named prefix or under prefix/; "
     "returns how many."},
    {"load_hdf5", METH(tree_load_hdf5), METH_VARARGS | METH_KEYWORDS,
     "load_hdf5(path, prefix, *, progress=False, overwrite=False, persistent=True,\n"
     "          writable=False, skip_unsupported=False)\n--\n\n"
     "Load an HDF5 file as the array set `prefix` (all-or-nothing); progress=True\n"
     "draws a bar on stderr, a callable gets (path, done, total) and may return True\n"
     "to cancel. Returns the number of datasets."},
    {"save_hdf5", METH(tree_save_hdf5), METH_VARARGS,
     "save_hdf5(prefix, path)\n--\n\nWrite the array set `prefix` to an HDF5 file."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef store_getset[] = {
    {"name", store_get_name, NULL, "The store's name.", NULL},
    {"dir", store_get_dir, NULL, "The directory of the store's file.", NULL},
    {"closed", store_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef store_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(StoreObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(store_doc,
"Store(name, *, create=True, exclusive=False, capacity=None, group=None, dir=None)\n--\n\n"
"A store of named values in shared memory: the file shmstore.<name> in `dir` (default\n"
"$SHMSTORE_DIR or /dev/shm), mapped once by every process that opens it.\n\n"
"create=True opens the store or creates it (create=False: FileNotFoundError if it does\n"
"not exist; exclusive=True: FileExistsError if it does). capacity: bytes (default: the\n"
"size of the filesystem; memory is committed only as values are written). group: a gid\n"
"or group name allowed to open it (mode 0660). A Store is a context manager and a\n"
"mapping of names to values (store[name], store[name] = v, del store[name], name in\n"
"store). It keeps working in fork children (it re-attaches by name) and pickles by\n"
"name for spawn/forkserver children. Closing or exiting never deletes anything: use\n"
"delete() for values and shmstore.unlink() for the store.");

static PyType_Slot store_slots[] = {
    {Py_tp_new, store_new},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_repr, store_repr},
    {Py_tp_iter, store_iter},
    {Py_tp_methods, store_methods},
    {Py_tp_getset, store_getset},
    {Py_tp_members, store_members},
    {Py_tp_doc, (void *)store_doc},
    {Py_mp_subscript, store_getitem},
    {Py_mp_ass_subscript, store_setitem},
    {Py_mp_length, store_len},
    {Py_sq_contains, store_contains},
    {0, NULL},
};

PyType_Spec Store_spec = {
    .name = "shmstore.Store",
    .basicsize = sizeof(StoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_BASETYPE,
    .slots = store_slots,
};
