// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_stats.c - read-only counters for leak checks: the number of allocations the Rust VM holds
 * right now, as /sys/module/ktap/parameters/outstanding_allocs. With no program loaded it must be 0;
 * the end-to-end load/unload cycle test compares it against that baseline after every cycle.
 */
#include <linux/atomic.h>
#include <linux/moduleparam.h>
#include <linux/sysfs.h>

#include "ktap_stats.h"

static atomic_long_t ktap_outstanding_allocs = ATOMIC_LONG_INIT(0);

void ktap_stats_alloc(void)
{
	atomic_long_inc(&ktap_outstanding_allocs);
}

void ktap_stats_free(void)
{
	atomic_long_dec(&ktap_outstanding_allocs);
}

static int ktap_outstanding_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%ld\n", atomic_long_read(&ktap_outstanding_allocs));
}

static const struct kernel_param_ops ktap_outstanding_ops = {
	.get = ktap_outstanding_get,
};

/* 0444 and no .set: user space can read it, nobody can write it */
module_param_cb(outstanding_allocs, &ktap_outstanding_ops, NULL, 0444);
MODULE_PARM_DESC(outstanding_allocs, "allocations the VM holds now (0 with no program loaded)");
