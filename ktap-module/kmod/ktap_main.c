// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_main.c - module init/exit. ktap runs verified bytecode (the Rust VM in rust_vm.o) on
 * kprobe, kretprobe and tracepoint hits and hands ids and raw values to user space through
 * /dev/ktap; all text formatting happens on the host.
 */
#include <linux/module.h>

#include "ktap.h"

static int __init ktap_init(void)
{
	int ret;

	ktap_session_init(&ktap_session);
	ret = ktap_dev_register();
	if (ret)
		return ret;
	pr_info("ktap: /dev/ktap ready\n");
	return 0;
}

/* The device holds a module reference while open, so no program is loaded here. */
static void __exit ktap_exit_module(void)
{
	ktap_dev_unregister();
	irq_work_sync(&ktap_session.wake_work);
}

module_init(ktap_init);
module_exit(ktap_exit_module);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ktap: verified bytecode on kprobes, kretprobes and tracepoints");
