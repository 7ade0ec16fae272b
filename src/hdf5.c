/* hdf5.c - HDF5 import and export (see shmstore.h). Built with libhdf5 when CMake finds it
 * (SHMSTORE_HAVE_HDF5); otherwise every call reports that this build has no HDF5. */
#include <errno.h>

#include "internal.h"

#ifndef SHMSTORE_HAVE_HDF5
SHMSTORE_API int shmstore_hdf5_available(void)
{
    return 0;
}

static int no_hdf5(void)
{
    return shmstore__seterr(-ENOSYS, "shmstore was built without HDF5 (install libhdf5-dev and "
                            "rebuild)");
}

SHMSTORE_API int shmstore_hdf5_load(shmstore_t *s, const char *path, const char *prefix,
                                    unsigned flags, shmstore_progress_fn progress, void *arg,
                                    uint64_t *n_loaded)
{
    (void)s, (void)path, (void)prefix, (void)flags, (void)progress, (void)arg, (void)n_loaded;
    return no_hdf5();
}

SHMSTORE_API int shmstore_hdf5_save(shmstore_t *s, const char *prefix, const char *path)
{
    (void)s, (void)prefix, (void)path;
    return no_hdf5();
}
#endif
