"""Mirror objects of a store to stores on other hosts over ZeroMQ.

The same C code as ``shmstore bridge serve|mirror`` (see shmstore/bridge.h for what
each kind gets: values conflated to the latest, queues moved with acknowledgements,
rings at the source's positions with losses counted, tables' appends), run in a
background thread of this process::

    with shmstore.bridge.serve(store, "tcp://127.0.0.1:5555") as server:
        ...                                   # the store's objects are published
    with shmstore.bridge.mirror(far_store, "tcp://robot:5555", prefix="robot/"):
        ...                                   # far_store gets robot/<name> objects

Keys: ``shmstore bridge keygen FILE`` (or :func:`keygen`) makes FILE and FILE.pub;
the server takes ``key=FILE`` (and ``allow=[mirror.pub, ...]``), a mirror
``server_key=server.pub`` (and its own ``key=``).
"""
import threading

from . import _shmstore

__all__ = ["Bridge", "serve", "mirror", "keygen"]


class Bridge:
    """A running server or mirror. stop() (or leaving the ``with``) stops and frees it;
    an error the bridge stopped on is raised there."""

    def __init__(self, native):
        self._b = native
        self._error = None
        self._thread = threading.Thread(target=self._run, name="shmstore-bridge", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._b.run()
        except BaseException as e:  # handed to stop()
            self._error = e

    @property
    def endpoint(self):
        """The endpoint bound (a server on port 0 gets a free one) or connected to."""
        return self._b.endpoint

    @property
    def running(self):
        return self._thread.is_alive()

    def stats(self):
        """The counters (messages, values, entries, frames, records, losses, refusals)."""
        return self._b.stats()

    def stop(self, timeout=10.0):
        """Stop the bridge, wait for its thread, free it; raise what it failed with."""
        self._b.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the bridge did not stop in time")
        self._b.close()
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _opts(objects, key, allow, hwm, window):
    import os
    return dict(objects=None if objects is None else [objects] if isinstance(objects, str) else list(objects),
                key=key, allow=None if allow is None else [os.fspath(a) for a in allow],
                hwm=hwm, window=window)


def serve(store, bind, *, objects=None, key=None, allow=None, public=False, hwm=0, window=0):
    """Publish the objects of `store` whose names match `objects` (globs; None = all) on
    `bind` (loopback unless public=True). Returns a running :class:`Bridge`."""
    b = _shmstore.Bridge(store, "serve", [bind], public=bool(public),
                         **_opts(objects, key, allow, hwm, window))
    return Bridge(b)


def mirror(store, endpoints, *, prefix=None, objects=None, key=None, server_key=None, hwm=0):
    """Write into `store` what the servers at `endpoints` publish (one endpoint, a list,
    or a list of (endpoint, prefix) pairs); names get `prefix` (or the pair's).
    Returns a running :class:`Bridge`."""
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    eps, pres = [], []
    for e in endpoints:
        if isinstance(e, (tuple, list)):
            eps.append(e[0])
            pres.append(e[1])
        else:
            eps.append(e)
            pres.append(prefix)
    b = _shmstore.Bridge(store, "mirror", eps, pres, server_key=server_key,
                         **_opts(objects, key, None, hwm, 0))
    return Bridge(b)


def keygen(path):
    """Make a CURVE key pair: `path` (secret, mode 0600) and `path`.pub (public).
    FileExistsError if either exists."""
    _shmstore.Bridge.keygen(str(path))
