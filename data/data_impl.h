/* ddn — internals shared by the data module (image.c, transform.c, dataset.c, loader.c).
 *
 * The loader's prefetch thread must not touch the context (ddn_ctx_set_error is not thread-safe),
 * so every function here reports into a caller-owned message buffer instead; the public wrappers
 * in dataset.h copy that message onto the context on the caller's thread. Not installed.
 */
#ifndef DDN_DATA_IMPL_H
#define DDN_DATA_IMPL_H

#include <stddef.h>

#include "dataset.h"

#define DDN_DATA_MSG 512 /* bytes of one error message */

/* printf into msg (always terminated); returns s. */
ddn_status ddn_data_err(char *msg, ddn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* image.c: ddn_image_load without a context. */
ddn_status ddn_data_image_read(const char *path, int channels, int64_t max_pixels, ddn_image *out,
                               char *msg);

/* transform.c */
ddn_status ddn_data_tf_check(const ddn_transform *tf, int n, int c, int h, int w, int *oc,
                             int *oh, int *ow, char *msg);
ddn_status ddn_data_tf_apply(const ddn_transform *tf, int n, uint64_t item_seed, ddn_image *img,
                             char *msg);
/* SplitMix64's finaliser: a bijective 64-bit mix. */
uint64_t ddn_data_mix64(uint64_t x);

/* dataset.c: item i (untransformed) and its label; safe to call from the prefetch thread while
 * the owner thread only reads the dataset. */
ddn_status ddn_data_item(const ddn_dataset *ds, int64_t i, ddn_image *out, char *msg);
ddn_dataset *ddn_data_ref(ddn_dataset *ds); /* one more reference; returns ds */

#endif
