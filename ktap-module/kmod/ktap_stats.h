/* SPDX-License-Identifier: GPL-2.0 */
/* ktap_stats.h - leak-check counters (ktap_stats.c), bumped by the Rust allocator in ktap_rt.c. */
#ifndef KTAP_STATS_H
#define KTAP_STATS_H

void ktap_stats_alloc(void);
void ktap_stats_free(void);

#endif
