/* ddn — internal accessors of the parameter registry (layers/params.c) for the optimizers and
 * gradient clipping, which take a ddn_params* and need its context even when it declares no
 * tensor, and whether it has been finalised. Not installed.
 */
#ifndef DDN_PARAMS_IMPL_H
#define DDN_PARAMS_IMPL_H

#include "params.h"

ddn_ctx *ddn_params_ctx(const ddn_params *p);
bool ddn_params_finalized(const ddn_params *p);

#endif
