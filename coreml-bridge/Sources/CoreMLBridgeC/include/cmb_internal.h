/* cmb_internal.h - helpers private to the Swift bridge; not part of the C contract. */
#ifndef CMB_INTERNAL_H
#define CMB_INTERNAL_H

#include <stdint.h>
#include <Foundation/Foundation.h>

/* Runs block; returns 0, or 1 when it raised an Objective-C exception, with a malloc'ed
 * description in *message (free with free()). */
int32_t cmb_internal_catch(NS_NOESCAPE void (^block)(void), char **message);

#endif
