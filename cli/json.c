/* json.c - JSON output of the CLI (`ls --json`, `info --json`): string literals that
 * are always valid JSON whatever bytes a name holds, and the members describing
 * datums, objects and stores. Sizes are bytes, times ns since the epoch.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t need, i;
    uint32_t c;

    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        need = 2, c = p[0] & 0x1f;
    else if ((p[0] & 0xf0) == 0xe0)
        need = 3, c = p[0] & 0x0f;
    else if ((p[0] & 0xf8) == 0xf0)
        need = 4, c = p[0] & 0x07;
    else
        return 0;
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    /* Reject overlong forms, surrogates and code points beyond U+10FFFF. */
    if ((need == 2 && c < 0x80) || (need == 3 && c < 0x800) || (need == 4 && c < 0x10000) ||
        (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
        return 0;
    return need;
}

void cli_json_str(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;

    fputc('"', f);
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if ((n = utf8_len(p + i, len - i)) == 0) {
            fputs("\\ufffd", f);
            i++;
        } else {
            fwrite(p + i, 1, n, f);
            i += n;
        }
    }
    fputc('"', f);
}

void cli_json_desc(FILE *f, const shmstore_datum_t *d)
{
    uint32_t i;

    fprintf(f, "\"type\": \"%s\"", cli_type_name(d->type));
    if (d->type != SHMSTORE_T_ARRAY)
        return;
    fputs(", \"dtype\": ", f);
    cli_json_str(f, d->dtype, strnlen(d->dtype, sizeof d->dtype));
    fputs(", \"shape\": [", f);
    for (i = 0; i < d->ndim && i < SHMSTORE_NDIM_MAX; i++)
        fprintf(f, "%s%" PRIu64, i ? ", " : "", d->shape[i]);
    fputc(']', f);
}

void cli_json_obj(FILE *f, const shmstore_obj_info_t *o)
{
    fputc('{', f);
    cli_json_obj_members(f, o);
    fputc('}', f);
}

void cli_json_obj_members(FILE *f, const shmstore_obj_info_t *o)
{
    fputs("\"name\": ", f);
    cli_json_str(f, o->name, strnlen(o->name, sizeof o->name));
    fprintf(f,
            ", \"kind\": \"%s\", \"sealed\": %s, \"version\": %" PRIu64
            ", \"mtime_ns\": %" PRIu64 ", \"size\": %" PRIu64 ", \"footprint\": %" PRIu64 ", ",
            shmstore_kind_name(o->kind), o->is_sealed ? "true" : "false", o->version, o->mtime_ns,
            o->size, o->footprint);
    if (o->kind == SHMSTORE_KIND_QUEUE)
        fprintf(f, "\"type\": null, \"count\": %" PRIu64 ", \"capacity\": %" PRIu64
                   ", \"slot_size\": %" PRIu64 ", \"full\": \"%s\", \"first_index\": %" PRIu64
                   ", \"next_index\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"pinned\": %" PRIu32
                   ", \"producers_waiting\": %" PRIu32 ", \"consumers_waiting\": %" PRIu32,
                o->count, o->capacity, o->slot_size, cli_queue_full_name(o->full), o->first_index,
                o->next_index, o->dropped, o->n_pinned, o->producers_waiting,
                o->consumers_waiting);
    else if (o->kind == SHMSTORE_KIND_TABLE)
        fprintf(f, "\"type\": null, \"count\": %" PRIu64 ", \"capacity\": %" PRIu64
                   ", \"record_size\": %" PRIu64 ", \"fields\": %" PRIu32 ", \"appended\": %" PRIu64
                   ", \"first_index\": %" PRIu64 ", \"invalid\": %" PRIu64 ", \"prioritized\": %s",
                o->count, o->capacity, o->record_size, o->n_fields, o->next_index, o->first_index,
                o->n_invalid, o->is_prioritized ? "true" : "false");
    else if (o->kind == SHMSTORE_KIND_RING && o->version == 0)
        fputs("\"type\": null, \"generation\": 0, \"frames_written\": 0", f);
    else if (o->kind == SHMSTORE_KIND_RING) {
        cli_json_desc(f, &o->desc); /* the frame's dtype and shape */
        fprintf(f, ", \"generation\": %" PRIu64 ", \"capacity\": %" PRIu64 ", \"frame_bytes\": %"
                   PRIu64 ", \"frames_written\": %" PRIu64 ", \"oldest\": %" PRIu64
                   ", \"held\": %" PRIu64 ", \"has_writer\": %s, \"readers_waiting\": %" PRIu32,
                o->version, o->capacity, o->size, o->next_index, o->first_index, o->count,
                o->producers_waiting ? "true" : "false", o->consumers_waiting);
    } else if (o->version == 0)
        fputs("\"type\": null", f); /* never written: there is no descriptor yet */
    else
        cli_json_desc(f, &o->desc);
}

void cli_json_stat(FILE *f, const shmstore_stat_t *st)
{
    fprintf(f,
            "\"capacity\": %" PRIu64 ", \"committed\": %" PRIu64 ", \"used\": %" PRIu64
            ", \"blocks\": %" PRIu64 ", \"objects\": %" PRIu64 ", \"proc_slots\": %" PRIu32
            ", \"layout_version\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"ctime_ns\": %" PRIu64,
            st->capacity, st->committed, st->used, st->n_blocks, st->n_objects, st->n_slots,
            st->layout_version, st->uid, st->ctime_ns);
}
