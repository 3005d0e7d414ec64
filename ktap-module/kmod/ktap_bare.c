// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_bare.c - a benchmark baseline, not part of ktap.ko: one kprobe whose pre_handler does
 * nothing. `cargo xtask bench --parts kprobe` loads it to measure what the kernel's kprobe path costs
 * per hit on its own (trap, kprobe lookup, single-step of the probed instruction), so ktap's own cost
 * (the shim's guard and lock plus the VM) can be set against it.
 *
 *   insmod ktap_bare.ko symbol=vfs_read
 */
#include <linux/kprobes.h>
#include <linux/module.h>

static char *symbol = "vfs_read";
module_param(symbol, charp, 0444);
MODULE_PARM_DESC(symbol, "kernel function to put the empty kprobe on");

static int ktap_bare_pre(struct kprobe *kp, struct pt_regs *regs)
{
	return 0;
}
NOKPROBE_SYMBOL(ktap_bare_pre);

static struct kprobe ktap_bare_kp = {
	.pre_handler = ktap_bare_pre,
};

static int __init ktap_bare_init(void)
{
	ktap_bare_kp.symbol_name = symbol;
	return register_kprobe(&ktap_bare_kp);
}

static void __exit ktap_bare_exit(void)
{
	unregister_kprobe(&ktap_bare_kp);
}

module_init(ktap_bare_init);
module_exit(ktap_bare_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ktap benchmark baseline: an empty kprobe");
