/* tree.c - array sets from Python: Store.put_tree / get_tree / get_tree_attrs /
 * delete_tree / load_hdf5 / save_hdf5.
 *
 * put_tree flattens a nested dict into members "a", "b/b1", ... (keys are str without
 * '/'), encodes every leaf with the value codec (arrays are not copied until they go
 * into the set's block), creates the set (shmstore_set_create: all-or-nothing), fills it
 * with the GIL released for large members, and commits. get_tree opens the set and
 * returns the same nesting of zero-copy numpy arrays, each over a Buffer that holds a
 * lease of the set's one block: they stay valid whatever else the caller drops, the
 * Store included, and even if the set is deleted. Members of a shared-writable set
 * (seal=False) are writable arrays. A record dataset loaded from HDF5 (bytes with a
 * "__dtype__" attr) comes back viewed as its numpy structured dtype.
 */
#include "ext.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct leaf {
    char name[SHMSTORE_NAME_MAX + 1];
    PyObject *obj; /* borrowed: the caller's dict holds it */
    enc_t e;       /* encoded once every leaf is found (enc_t may point into itself) */
};

struct flat {
    struct leaf *v;
    size_t n, cap;
    size_t n_enc; /* leaves encoded so far (enc_free'd on the way out) */
};

static int flatten(modstate *st, PyObject *d, const char *path, struct flat *out, int depth)
{
    PyObject *k, *val;
    Py_ssize_t pos = 0;
    if (depth > 64) {
        PyErr_SetString(PyExc_ValueError, "put_tree: nesting deeper than 64 levels");
        return -1;
    }
    while (PyDict_Next(d, &pos, &k, &val)) {
        if (!PyUnicode_Check(k)) {
            PyErr_Format(PyExc_TypeError, "put_tree: key %R under '%s' is not a str", k, path);
            return -1;
        }
        const char *ks = PyUnicode_AsUTF8(k);
        if (!ks)
            return -1;
        if (!ks[0] || strchr(ks, '/')) {
            PyErr_Format(PyExc_ValueError, "put_tree: key '%s' under '%s' is empty or has a '/'",
                         ks, path);
            return -1;
        }
        char name[2 * SHMSTORE_NAME_MAX + 2];
        snprintf(name, sizeof(name), "%s%s%s", path, path[0] ? "/" : "", ks);
        if (strlen(name) > SHMSTORE_NAME_MAX) {
            PyErr_Format(PyExc_ValueError, "put_tree: member name '%.60s...' is longer than %d "
                         "bytes", name, SHMSTORE_NAME_MAX);
            return -1;
        }
        if (PyDict_Check(val)) {
            if (flatten(st, val, name, out, depth + 1) < 0)
                return -1;
            continue;
        }
        if (st->ndarray || shm_numpy(st) == 0) {
            PyObject *dt = PyObject_TypeCheck(val, (PyTypeObject *)st->ndarray)
                               ? PyObject_GetAttrString(val, "dtype")
                               : NULL;
            PyObject *hasobj = dt ? PyObject_GetAttrString(dt, "hasobject") : NULL;
            int is_obj = hasobj && PyObject_IsTrue(hasobj);
            Py_XDECREF(dt);
            Py_XDECREF(hasobj);
            PyErr_Clear();
            if (is_obj) {
                PyErr_Format(PyExc_TypeError, "put_tree: '%s' is an array of Python objects "
                             "(dtype object): its items are pointers, which no other process "
                             "can read; convert it to a numeric or string dtype", name);
                return -1;
            }
        } else {
            PyErr_Clear();
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 32;
            void *p = PyMem_Realloc(out->v, cap * sizeof(*out->v));
            if (!p) {
                PyErr_NoMemory();
                return -1;
            }
            out->v = p;
            out->cap = cap;
        }
        struct leaf *l = &out->v[out->n];
        memset(l, 0, sizeof(*l));
        snprintf(l->name, sizeof(l->name), "%s", name);
        l->obj = val;
        out->n++;
    }
    return 0;
}

static void flat_free(struct flat *f)
{
    for (size_t i = 0; i < f->n_enc; i++)
        enc_free(&f->v[i].e);
    PyMem_Free(f->v);
}

PyObject *tree_put(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prefix", "nested", "seal", "overwrite", "persistent", NULL};
    const char *prefix;
    PyObject *nested;
    int seal = 1, overwrite = 0, persistent = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!|$ppp:put_tree", kwlist, &prefix, &PyDict_Type,
                                     &nested, &seal, &overwrite, &persistent))
        return NULL;
    if (store_check_open(self) < 0)
        return NULL;
    shmstore_t *s = self->core->s;
    modstate *st = self->st;
    struct flat f = {0};
    shmstore_set_member_t *m = NULL;
    shmstore_set_t *set = NULL;
    PyObject *ret = NULL;
    if (flatten(st, nested, "", &f, 0) < 0)
        goto out;
    for (; f.n_enc < f.n; f.n_enc++) /* the array no longer moves */
        if (enc_value(st, f.v[f.n_enc].obj, &f.v[f.n_enc].e) < 0)
            goto out;
    m = PyMem_Calloc(f.n ? f.n : 1, sizeof(*m));
    if (!m) {
        PyErr_NoMemory();
        goto out;
    }
    for (size_t i = 0; i < f.n; i++) {
        m[i].name = f.v[i].name;
        m[i].desc = f.v[i].e.d;
        m[i].len = f.v[i].e.len;
    }
    unsigned flags = (seal ? 0 : SHMSTORE_SET_WRITABLE) | (overwrite ? SHMSTORE_SET_OVERWRITE : 0) |
                     (persistent ? 0 : SHMSTORE_SET_TIED);
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = shmstore_set_create(s, prefix, flags, m, f.n, &set);
    Py_END_ALLOW_THREADS
    if (r < 0) {
        shm_raise(st, r);
        goto out;
    }
    for (size_t i = 0; i < f.n; i++) {
        size_t k;
        shmstore_set_find(set, f.v[i].name, &k);
        char *dst = shmstore_set_data(set, k);
        enc_t *e = &f.v[i].e;
        if (e->rec) {
            enc_record_fill(e, dst);
        } else if (e->len >= GIL_COPY_MIN) {
            Py_BEGIN_ALLOW_THREADS
            shmstore_set_write(set, k, 0, e->data, e->len);
            Py_END_ALLOW_THREADS
        } else if (e->len) {
            memcpy(dst, e->data, e->len);
        }
    }
    r = shmstore_set_commit(set);
    if (r < 0) {
        shm_raise(st, r);
        goto out;
    }
    ret = Py_None;
    Py_INCREF(ret);
out:
    if (set) {
        if (ret)
            shmstore_set_close(set);
        else
            shmstore_set_abort(set);
    }
    PyMem_Free(m);
    flat_free(&f);
    return ret;
}

/* The dict at path `name`'s parent in `root`, creating the levels. Borrowed. */
static PyObject *parent_dict(PyObject *root, char *name, const char **leaf)
{
    PyObject *d = root;
    char *p = name, *slash;
    while ((slash = strchr(p, '/'))) {
        *slash = '\0';
        PyObject *sub = PyDict_GetItemString(d, p);
        if (!sub) {
            sub = PyDict_New();
            if (!sub || PyDict_SetItemString(d, p, sub) < 0) {
                Py_XDECREF(sub);
                return NULL;
            }
            Py_DECREF(sub);
        }
        *slash = '/';
        d = sub;
        p = slash + 1;
    }
    *leaf = p;
    return d;
}

/* Attrs as a dict, with array attrs (stored as .npy images) as numpy arrays. */
static PyObject *attrs_obj(modstate *st, const shmstore_set_member_t *m)
{
    PyObject *d = attrs_decode(m->desc.attrs, m->desc.attrs_len);
    PyObject *k, *v, *io = NULL;
    Py_ssize_t pos = 0;
    while (d && PyDict_Next(d, &pos, &k, &v)) {
        if (!PyBytes_Check(v) || PyBytes_GET_SIZE(v) < 10 ||
            memcmp(PyBytes_AS_STRING(v), "\x93NUMPY", 6) != 0)
            continue;
        if (!io && !(io = PyImport_ImportModule("io")))
            Py_CLEAR(d);
        PyObject *f = d ? PyObject_CallMethod(io, "BytesIO", "O", v) : NULL;
        PyObject *a = f ? PyObject_CallMethod(st->np, "load", "O", f) : NULL;
        Py_XDECREF(f);
        if (!a || PyDict_SetItem(d, k, a) < 0) /* same key: the dict does not resize */
            Py_CLEAR(d);
        Py_XDECREF(a);
    }
    Py_XDECREF(io);
    return d;
}

/* numpy's structured dtype of a record member ("__dtype__" attr), applied by view(). */
static PyObject *as_record(modstate *st, PyObject *arr, const shmstore_set_member_t *m)
{
    shmstore_type_t t;
    const void *v;
    uint32_t l;
    if (!m->desc.attrs_len ||
        shmstore_attrs_get(m->desc.attrs, m->desc.attrs_len, "__dtype__", &t, &v, &l) != 0 ||
        t != SHMSTORE_T_STR)
        return arr;
    PyObject *ast = PyImport_ImportModule("ast");
    PyObject *spec = ast ? PyObject_CallMethod(ast, "literal_eval", "s#", (const char *)v, (Py_ssize_t)l)
                         : NULL;
    PyObject *dt = spec ? PyObject_CallMethod(st->np, "dtype", "O", spec) : NULL;
    PyObject *out = dt ? PyObject_CallMethod(arr, "view", "O", dt) : NULL;
    Py_XDECREF(ast);
    Py_XDECREF(spec);
    Py_XDECREF(dt);
    Py_DECREF(arr);
    return out;
}

/* A root Buffer owning view `v` of a set (its lease), or NULL with the view released. */
static BufferObject *leased_root(modstate *st, CoreObject *core, int r, shmstore_view_t *v)
{
    if (r < 0)
        return shm_raise(st, r), NULL;
    BufferObject *root = buffer_root(st, core, v);
    if (!root)
        shmstore_view_release(v);
    return root;
}

static PyObject *member_obj(modstate *st, CoreObject *core, shmstore_set_t *set, size_t i,
                            int writable)
{
    shmstore_view_t v;
    shmstore_set_member_t m;
    int r = shmstore_set_member(set, i, &m);
    if (r == 0)
        r = shmstore_set_view(set, i, &v);
    BufferObject *root = leased_root(st, core, r, &v);
    if (!root)
        return NULL;
    PyObject *o;
    if (v.desc.type == SHMSTORE_T_ARRAY) {
        BufferObject *b = buffer_child(st, root, (char *)v.data, (Py_ssize_t)v.len, v.desc.dtype,
                                       (int)v.desc.ndim, v.desc.shape, !writable);
        o = b ? PyObject_CallOneArg(st->np_asarray, (PyObject *)b) : NULL;
        Py_XDECREF(b);
        if (o)
            o = as_record(st, o, &m);
    } else {
        o = dec_value(st, &v.desc, v.data, v.len, root);
    }
    Py_DECREF(root);
    return o;
}

/* An ndarray of member `m` over `whole` (the uint8 array of every member's payload, over
 * the set's one lease): numpy.ndarray(shape, dtype, whole, offset), whose base is `whole`.
 * One lease and one buffer export for the whole set, and a small object per member: a
 * new process building a set's arrays makes no per-member Buffer (each ~1 KiB, which in a
 * fresh process meant a page fault every few members). */
static PyObject *member_array(modstate *st, PyObject *whole, const shmstore_set_member_t *m)
{
    PyObject *dt = np_dtype_of(st, m->desc.dtype);
    PyObject *sh = dt ? shape_tuple((int)m->desc.ndim, m->desc.shape) : NULL;
    PyObject *off = sh ? PyLong_FromUnsignedLongLong(m->offset) : NULL;
    PyObject *o = off ? PyObject_CallFunctionObjArgs(st->ndarray, sh, dt, whole, off, NULL) : NULL;
    Py_XDECREF(dt);
    Py_XDECREF(sh);
    Py_XDECREF(off);
    return o ? as_record(st, o, m) : NULL;
}

/* The uint8 array over every member's payload of `set` (one lease), or NULL. */
static PyObject *whole_array(modstate *st, CoreObject *core, shmstore_set_t *set, int writable)
{
    shmstore_view_t v;
    BufferObject *root = leased_root(st, core, shmstore_set_view_all(set, &v), &v);
    if (!root)
        return NULL;
    root->readonly = !writable;
    PyObject *whole = PyObject_CallOneArg(st->np_asarray, (PyObject *)root);
    Py_DECREF(root);
    return whole;
}

PyObject *tree_get(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prefix", "attrs", NULL};
    const char *prefix;
    int with_attrs = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$p:get_tree", kwlist, &prefix, &with_attrs))
        return NULL;
    if (store_check_open(self) < 0 || shm_numpy(self->st) < 0)
        return NULL;
    modstate *st = self->st;
    shmstore_set_t *set;
    int r = shmstore_set_open(self->core->s, prefix, &set);
    if (r < 0)
        return shm_raise(st, r), NULL;
    PyObject *root = PyDict_New(), *whole = NULL;
    size_t n = shmstore_set_count(set);
    shmstore_obj_info_t info;
    int writable = shmstore_set_info(set, &info) == 0 && (info.set_flags & SHMSTORE_SET_WRITABLE);
    if (!with_attrs && root && !(whole = whole_array(st, self->core, set, writable)))
        Py_CLEAR(root);
    for (size_t i = 0; root && i < n; i++) {
        shmstore_set_member_t m;
        shmstore_set_member(set, i, &m);
        char name[SHMSTORE_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%s", m.name);
        const char *leaf;
        PyObject *d = parent_dict(root, name, &leaf);
        PyObject *o = NULL;
        if (d && with_attrs) {
            o = attrs_obj(st, &m);
        } else if (d && strcmp(leaf, ".attrs") == 0 && m.desc.type == SHMSTORE_T_NONE) {
            continue; /* group attributes: get_tree(prefix, attrs=True) */
        } else if (d && m.desc.type == SHMSTORE_T_ARRAY) {
            o = member_array(st, whole, &m);
        } else if (d) {
            o = member_obj(st, self->core, set, i, writable);
        }
        if (!o || PyDict_SetItemString(d, leaf, o) < 0)
            Py_CLEAR(root);
        Py_XDECREF(o);
    }
    Py_XDECREF(whole);
    shmstore_set_close(set);
    return root;
}

PyObject *tree_member(StoreObject *self, PyObject *name, int view)
{
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb); /* the caller's NotFoundError, kept aside while we look */
    const char *cname = PyUnicode_AsUTF8(name);
    shmstore_set_t *set;
    size_t i;
    int r = cname ? shmstore_set_open_member(self->core->s, cname, &set, &i) : -ENOENT;
    if (r == -ENOENT) {
        PyErr_Restore(et, ev, tb); /* no set holds it: the caller's error stands */
        return NULL;
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    if (r < 0)
        return shm_raise(self->st, r), NULL;
    if (shm_numpy(self->st) < 0) {
        shmstore_set_close(set);
        return NULL;
    }
    shmstore_obj_info_t info;
    int writable = shmstore_set_info(set, &info) == 0 && (info.set_flags & SHMSTORE_SET_WRITABLE);
    PyObject *o = member_obj(self->st, self->core, set, i, writable);
    shmstore_set_close(set);
    if (o && !view) { /* a copy, as Store.get() of a value */
        PyObject *c = PyMemoryView_Check(o) ? PyBytes_FromObject(o)
                      : PyObject_TypeCheck(o, (PyTypeObject *)self->st->ndarray)
                          ? PyObject_CallMethod(o, "copy", NULL)
                          : Py_NewRef(o);
        Py_SETREF(o, c);
    }
    return o;
}

PyObject *tree_delete(StoreObject *self, PyObject *prefix)
{
    const char *p = name_utf8(prefix);
    if (!p || store_check_open(self) < 0)
        return NULL;
    uint64_t n = 0;
    int r = shmstore_delete_prefix(self->core->s, p, &n);
    PyDict_Clear(self->cache); /* cached handles of deleted values */
    if (r < 0)
        return shm_raise(self->st, r), NULL;
    return PyLong_FromUnsignedLongLong(n);
}

/* ---- HDF5 ---------------------------------------------------------------------------- */

struct prog {
    PyObject *fn; /* callable(path, done, total) or NULL: print a bar on stderr */
    struct timespec t0;
    int failed;
};

static int on_progress(const char *path, uint64_t done, uint64_t total, void *arg)
{
    struct prog *p = arg;
    if (p->fn) {
        PyGILState_STATE g = PyGILState_Ensure();
        PyObject *r = PyObject_CallFunction(p->fn, "sKK", path ? path : "", (unsigned long long)done,
                                            (unsigned long long)total);
        int stop = !r;
        if (r)
            stop = PyObject_IsTrue(r) == 1;
        else
            p->failed = 1; /* the exception stays set; the load cancels */
        Py_XDECREF(r);
        PyGILState_Release(g);
        return stop;
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double el = (double)(t.tv_sec - p->t0.tv_sec) + (double)(t.tv_nsec - p->t0.tv_nsec) * 1e-9;
    double rate = el > 0 ? (double)done / el : 0, frac = total ? (double)done / (double)total : 1;
    int w = 30, fill = (int)(frac * w);
    fprintf(stderr, "\r[%.*s%*s] %3d%% %.1f/%.1f MiB %.0f MiB/s ETA %.0fs ", fill,
            "##############################", w - fill, "", (int)(frac * 100),
            (double)done / 1048576.0, (double)total / 1048576.0, rate / 1048576.0,
            rate > 0 ? (double)(total - done) / rate : 0.0);
    if (!path)
        fputc('\n', stderr);
    return 0;
}

PyObject *tree_load_hdf5(StoreObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "prefix", "progress", "overwrite", "persistent",
                             "writable", "skip_unsupported", NULL};
    PyObject *path_obj, *progress = Py_False;
    const char *prefix;
    int overwrite = 0, persistent = 1, writable = 0, skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&s|$Opppp:load_hdf5", kwlist,
                                     PyUnicode_FSConverter, &path_obj, &prefix, &progress,
                                     &overwrite, &persistent, &writable, &skip))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_obj);
    if (store_check_open(self) < 0) {
        Py_DECREF(path_obj);
        return NULL;
    }
    unsigned flags = (overwrite ? SHMSTORE_H5_OVERWRITE : 0) | (persistent ? 0 : SHMSTORE_H5_TIED) |
                     (writable ? SHMSTORE_H5_WRITABLE : 0) |
                     (skip ? SHMSTORE_H5_SKIP_UNSUPPORTED : 0);
    struct prog p = {PyCallable_Check(progress) ? progress : NULL, {0, 0}, 0};
    int show = p.fn || PyObject_IsTrue(progress) == 1;
    clock_gettime(CLOCK_MONOTONIC, &p.t0);
    uint64_t n = 0;
    int r;
    shmstore_t *s = self->core->s;
    Py_BEGIN_ALLOW_THREADS
    r = shmstore_hdf5_load(s, path, prefix, flags, show ? on_progress : NULL, &p, &n);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (p.failed)
        return NULL;
    if (r < 0)
        return shm_raise(self->st, r), NULL;
    return PyLong_FromUnsignedLongLong(n);
}

PyObject *tree_save_hdf5(StoreObject *self, PyObject *args)
{
    const char *prefix;
    PyObject *path_obj;
    if (!PyArg_ParseTuple(args, "sO&:save_hdf5", &prefix, PyUnicode_FSConverter, &path_obj))
        return NULL;
    if (store_check_open(self) < 0) {
        Py_DECREF(path_obj);
        return NULL;
    }
    shmstore_t *s = self->core->s;
    const char *path = PyBytes_AS_STRING(path_obj);
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = shmstore_hdf5_save(s, prefix, path);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (r < 0)
        return shm_raise(self->st, r), NULL;
    Py_RETURN_NONE;
}
