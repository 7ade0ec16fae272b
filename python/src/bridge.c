/* bridge.c - shmstore._shmstore.Bridge: the C bridge (shmstore/bridge.h) as an object
 * whose run() releases the GIL; shmstore/bridge.py runs it in a thread. */
#include <string.h>

#include "ext.h"
#include "shmstore/bridge.h"

typedef struct {
    PyObject_HEAD
    shmstore_bridge_t *b; /* NULL once closed */
    StoreObject *store;   /* strong: the store outlives the bridge */
    modstate *st;
    int running;
} BridgeObject;

#define LIST_MAX 64

/* A list of str (or None) into C strings that live as long as `keep` (a list we hold). */
static int str_list(PyObject *seq, const char **out, size_t *n, const char *what, int allow_none)
{
    *n = 0;
    if (seq == Py_None)
        return 0;
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast)
        return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len > LIST_MAX) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "%s: at most %d", what, LIST_MAX);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(fast, i);
        if (allow_none && it == Py_None) {
            out[i] = NULL;
            continue;
        }
        if (!PyUnicode_Check(it) || !(out[i] = PyUnicode_AsUTF8(it))) {
            Py_DECREF(fast);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "%s must be str", what);
            return -1;
        }
    }
    *n = (size_t)len;
    Py_DECREF(fast); /* the items are kept alive by `seq`, which the caller holds */
    return 0;
}

static PyObject *opt_path(PyObject *o, const char **out)
{
    *out = NULL;
    if (o == Py_None)
        return o;
    PyObject *p = PyOS_FSPath(o);
    if (!p)
        return NULL;
    if (!PyUnicode_Check(p)) {
        Py_DECREF(p);
        PyErr_SetString(PyExc_TypeError, "key files must be str paths");
        return NULL;
    }
    *out = PyUnicode_AsUTF8(p);
    return p;
}

static PyObject *br_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"store", "mode", "endpoints", "prefixes", "objects", "key",
                             "server_key", "allow", "public", "hwm", "window", NULL};
    PyObject *store, *endpoints, *prefixes = Py_None, *objects = Py_None, *key = Py_None,
             *server_key = Py_None, *allow = Py_None;
    const char *mode;
    int public_bind = 0;
    unsigned int hwm = 0, window = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsO|OOOOOpII:Bridge", kwlist, &store, &mode,
                                     &endpoints, &prefixes, &objects, &key, &server_key, &allow,
                                     &public_bind, &hwm, &window))
        return NULL;
    PyObject *module = shm_module_of_type(type);
    modstate *st = module ? shm_state_of(module) : NULL;
    if (!st)
        return NULL;
    if (!PyObject_TypeCheck(store, st->Store_type)) {
        PyErr_SetString(PyExc_TypeError, "store must be a shmstore.Store");
        return NULL;
    }
    int serve = !strcmp(mode, "serve");
    if (!serve && strcmp(mode, "mirror")) {
        PyErr_SetString(PyExc_ValueError, "mode is 'serve' or 'mirror'");
        return NULL;
    }
    if (store_check_open((StoreObject *)store) < 0)
        return NULL;
    const char *eps[LIST_MAX], *pre[LIST_MAX], *globs[LIST_MAX], *allows[LIST_MAX];
    size_t n_eps, n_pre, n_globs, n_allow;
    if (str_list(endpoints, eps, &n_eps, "endpoints", 0) < 0 ||
        str_list(prefixes, pre, &n_pre, "prefixes", 1) < 0 ||
        str_list(objects, globs, &n_globs, "objects", 0) < 0 ||
        str_list(allow, allows, &n_allow, "allow", 0) < 0)
        return NULL;
    if (n_eps == 0 || (serve && n_eps != 1) || (n_pre && n_pre != n_eps)) {
        PyErr_SetString(PyExc_ValueError, "serve takes one endpoint; mirror one or more, and "
                                          "as many prefixes if any");
        return NULL;
    }
    shmstore_bridge_options_t o = {.objects = globs, .n_objects = n_globs, .allow = allows,
                                   .n_allow = n_allow, .public_bind = public_bind, .hwm = hwm,
                                   .queue_window = window};
    PyObject *kp = opt_path(key, &o.key_file);
    if (!kp)
        return NULL;
    PyObject *sp = opt_path(server_key, &o.server_key_file);
    if (!sp) {
        if (kp != Py_None)
            Py_DECREF(kp);
        return NULL;
    }
    shmstore_t *s = ((StoreObject *)store)->core->s;
    shmstore_bridge_t *b = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = serve ? shmstore_bridge_serve(s, eps[0], &o, &b)
               : shmstore_bridge_mirror(s, eps, n_pre ? pre : NULL, n_eps, &o, &b);
    Py_END_ALLOW_THREADS
    if (kp != Py_None)
        Py_DECREF(kp);
    if (sp != Py_None)
        Py_DECREF(sp);
    if (rc < 0)
        return shm_raise(st, rc), NULL;
    BridgeObject *self = (BridgeObject *)type->tp_alloc(type, 0);
    if (!self) {
        shmstore_bridge_close(b);
        return NULL;
    }
    self->b = b;
    self->st = st;
    Py_INCREF(store);
    self->store = (StoreObject *)store;
    return (PyObject *)self;
}

static int br_check(BridgeObject *self)
{
    if (!self->b) {
        PyErr_SetString(PyExc_ValueError, "the bridge is closed");
        return -1;
    }
    return 0;
}

static PyObject *br_run(BridgeObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:run", kwlist, &timeout) || br_check(self) < 0)
        return NULL;
    int64_t ns = -1;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        ns = t <= 0 ? 0 : (int64_t)(t * 1e9);
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the bridge is running in another thread");
        return NULL;
    }
    self->running = 1;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = shmstore_bridge_run(self->b, ns);
    Py_END_ALLOW_THREADS
    self->running = 0;
    if (rc < 0)
        return shm_raise(self->st, rc), NULL;
    Py_RETURN_NONE;
}

static PyObject *br_stop(BridgeObject *self, PyObject *noargs)
{
    (void)noargs;
    if (self->b)
        shmstore_bridge_stop(self->b);
    Py_RETURN_NONE;
}

static PyObject *br_stats(BridgeObject *self, PyObject *noargs)
{
    (void)noargs;
    if (br_check(self) < 0)
        return NULL;
    shmstore_bridge_stats_t s;
    shmstore_bridge_stats(self->b, &s);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsIsI}", "messages_sent", (unsigned long long)s.messages_sent,
        "messages_received", (unsigned long long)s.messages_received, "bytes_sent",
        (unsigned long long)s.bytes_sent, "bytes_received", (unsigned long long)s.bytes_received,
        "values", (unsigned long long)s.values, "entries", (unsigned long long)s.entries,
        "entries_acked", (unsigned long long)s.entries_acked, "entries_duplicate",
        (unsigned long long)s.entries_duplicate, "frames", (unsigned long long)s.frames,
        "frames_lost", (unsigned long long)s.frames_lost, "records", (unsigned long long)s.records,
        "records_lost", (unsigned long long)s.records_lost, "hwm_deferred",
        (unsigned long long)s.hwm_deferred, "bad_messages", (unsigned long long)s.bad_messages,
        "refused", (unsigned long long)s.refused, "peers", s.peers, "objects", s.objects);
}

static PyObject *br_close(BridgeObject *self, PyObject *noargs)
{
    (void)noargs;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "stop the bridge and wait for run() first");
        return NULL;
    }
    shmstore_bridge_t *b = self->b;
    self->b = NULL;
    Py_BEGIN_ALLOW_THREADS
    shmstore_bridge_close(b);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *br_get_endpoint(BridgeObject *self, void *closure)
{
    (void)closure;
    if (br_check(self) < 0)
        return NULL;
    char ep[256];
    shmstore_bridge_endpoint(self->b, ep, sizeof(ep));
    return PyUnicode_FromString(ep);
}

static int br_traverse(BridgeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->store);
    return 0;
}

static void br_dealloc(BridgeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->b && !self->running) /* a running one is stopped by its thread's exit */
        shmstore_bridge_close(self->b);
    Py_CLEAR(self->store);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *br_keygen(PyObject *cls, PyObject *arg)
{
    PyObject *module = shm_module_of_type((PyTypeObject *)cls);
    if (!module)
        return NULL;
    PyObject *p = PyOS_FSPath(arg);
    if (!p)
        return NULL;
    const char *path = PyUnicode_Check(p) ? PyUnicode_AsUTF8(p) : NULL;
    int rc = path ? shmstore_bridge_keygen(path) : 0;
    Py_DECREF(p);
    if (!path)
        return PyErr_Occurred() ? NULL : (PyErr_SetString(PyExc_TypeError, "a str path"), NULL);
    if (rc < 0)
        return shm_raise(shm_state_of(module), rc), NULL;
    Py_RETURN_NONE;
}

static PyMethodDef br_methods[] = {
    {"keygen", (PyCFunction)br_keygen, METH_O | METH_CLASS,
     "keygen(path)\n--\n\nMake a CURVE key pair: path (secret) and path.pub."},
    {"run", (PyCFunction)(void (*)(void))br_run, METH_VARARGS | METH_KEYWORDS,
     "run(timeout=None)\n--\n\nRun the bridge in this thread (the GIL released) until stop() "
     "or timeout seconds."},
    {"stop", (PyCFunction)br_stop, METH_NOARGS, "Make run() return soon (any thread)."},
    {"stats", (PyCFunction)br_stats, METH_NOARGS, "The counters, as a dict."},
    {"close", (PyCFunction)br_close, METH_NOARGS, "Close the sockets and free the bridge."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef br_getset[] = {
    {"endpoint", (getter)br_get_endpoint, NULL, "The endpoint bound (server) or the first "
     "connected (mirror).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot br_slots[] = {
    {Py_tp_new, br_new},
    {Py_tp_dealloc, br_dealloc},
    {Py_tp_traverse, br_traverse},
    {Py_tp_methods, br_methods},
    {Py_tp_getset, br_getset},
    {Py_tp_doc, (void *)"Bridge(store, mode, endpoints, prefixes=None, objects=None, key=None, "
                        "server_key=None, allow=None, public=False, hwm=0, window=0)\n--\n\n"
                        "The C bridge; use shmstore.bridge.serve() / mirror()."},
    {0, NULL},
};

PyType_Spec Bridge_spec = {
    .name = "shmstore._shmstore.Bridge",
    .basicsize = sizeof(BridgeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = br_slots,
};
