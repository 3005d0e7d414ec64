// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_rt.c - what the Rust object needs from its host: memory and a panic target.
 */
#include <linux/bug.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/preempt.h>
#include <linux/irqflags.h>
#include <linux/slab.h>

#include "ktap_stats.h"
#include "ktap_vm.h"

/*
 * The Rust global allocator. Only ktap_vm_load (an ioctl) allocates; a request with interrupts off
 * or in atomic context means something allocated on the probe path: warn once and fail it, which
 * the VM turns into an error instead of sleeping in a probe.
 */
void *ktap_kalloc(size_t size, size_t align)
{
	void *ptr;

	if (WARN_ON_ONCE(in_atomic() || irqs_disabled()))
		return NULL;
	if (align > PAGE_SIZE)
		return NULL;
	/* kmalloc aligns power-of-two sizes naturally; vmalloc (the fallback) aligns to pages */
	if (align > ARCH_KMALLOC_MINALIGN)
		size = roundup_pow_of_two(max(size, align));
	ptr = kvmalloc(size ? size : 1, GFP_KERNEL);
	if (ptr)
		ktap_stats_alloc();
	return ptr;
}

void ktap_kfree(void *ptr)
{
	/* kvfree may sleep (vfree); leaking is better than sleeping in atomic context */
	if (WARN_ON_ONCE(in_atomic() || irqs_disabled()))
		return;
	if (ptr)
		ktap_stats_free();
	kvfree(ptr);
}

/* Target of the Rust panic handler. A correct build never references it (the build checks). */
void __noreturn ktap_rust_panic(void)
{
	pr_emerg("ktap: Rust panic in the VM\n");
	BUG();
}
