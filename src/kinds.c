/* kinds.c - the table of object kinds: the one place that lists them.
 *
 * The core (store, proc, index, check) reaches an object's kind only through the
 * operations registered here (internal.h, struct shmstore__kind_ops), so a new kind is
 * its own file plus one line below. */
#include "internal.h"

static const struct shmstore__kind_ops *const kinds[] = {
    [SHMSTORE_KIND_VALUE] = &shmstore__value_ops,
    [SHMSTORE_KIND_QUEUE] = &shmstore__queue_ops,
    [SHMSTORE_KIND_RING] = &shmstore__ring_ops,
    [SHMSTORE_KIND_TABLE] = &shmstore__table_ops,
    [SHMSTORE_KIND_SET] = &shmstore__set_ops,
};

const struct shmstore__kind_ops *shmstore__kind(uint32_t kind)
{
    return kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[kind] : NULL;
}

SHMSTORE_API const char *shmstore_kind_name(uint32_t kind)
{
    const struct shmstore__kind_ops *k = shmstore__kind(kind);
    return k ? k->name : "unknown";
}
