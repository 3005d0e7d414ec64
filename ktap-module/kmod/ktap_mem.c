// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_mem.c - what the VM may read besides its own memory: kernel and user memory through the
 * no-fault copies (a bad address is an error, never an oops), and the kernel stack of a hit. Safe in
 * any context the probes run in (pagefault_disable() inside the nofault helpers), never allocates.
 */
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/ptrace.h>
#include <linux/stacktrace.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "ktap.h"

#ifdef KTAP_UNWIND_FROM_ENTRY
#include <asm/unwind.h>
#endif

/* Return addresses looked at to find the first one that is not ours. */
#define KTAP_STACK_SCAN	48

static bool ktap_addr_ok(u64 addr)
{
	/*
	 * 32-bit boards: argument registers reach the VM sign-extended (0xffffffffc1960000) while a
	 * pointer loaded with ldk is zero-extended; both name the same 32-bit address. Any other value
	 * above 4 GiB names nothing.
	 */
	return addr == (unsigned long)addr || addr == (u64)(s64)(long)(unsigned long)addr;
}

int ktap_read_kernel(u64 addr, u8 *dst, u32 len)
{
	if (!ktap_addr_ok(addr))
		return -EFAULT;
	return copy_from_kernel_nofault(dst, (const void *)(unsigned long)addr, len) ? -EFAULT : 0;
}

/*
 * The NUL-terminated string at addr, at most max bytes: its length, or -EFAULT. The kernel exports
 * no strncpy_*_nofault to modules, so this copies with copy_from_{kernel,user}_nofault one page piece
 * at a time (a string that ends inside a page never reads the next one) and looks for the NUL.
 */
int ktap_read_str(int user, u64 addr, u8 *dst, u32 max)
{
	u32 got = 0;

	if (!ktap_addr_ok(addr))
		return -EFAULT;
	while (got < max) {
		unsigned long a = (unsigned long)addr + got;
		u32 chunk = min_t(u32, max - got, PAGE_SIZE - offset_in_page(a));
		const u8 *nul;
		long err;

		if (user)
			err = copy_from_user_nofault(dst + got, (const void __user *)a, chunk);
		else
			err = copy_from_kernel_nofault(dst + got, (const void *)a, chunk);
		if (err)
			return -EFAULT;
		nul = memchr(dst + got, 0, chunk);
		if (nul)
			return nul - dst;
		got += chunk;
	}
	return max;
}

#if defined(CONFIG_STACKTRACE) && defined(KTAP_UNWIND_FROM_ENTRY)
/*
 * The return addresses above ktap_run(), from the entry it noted: ORC starts at that instruction
 * with its stack and frame registers (given as registers of kernel code) and never meets the VM's
 * Rust frames, which it has no tables for.
 */
static unsigned int ktap_save_stack(struct ktap_hit *hit, unsigned long *buf, unsigned int max)
{
	struct pt_regs regs = {
		.ip = hit->entry.ip,
		.sp = hit->entry.sp,
		.bp = hit->entry.bp,
		.cs = __KERNEL_CS,
	};
	struct unwind_state state;
	unsigned int n = 0;

	for (unwind_start(&state, current, &regs, NULL); !unwind_done(&state) && n < max;
	     unwind_next_frame(&state)) {
		unsigned long addr = unwind_get_return_address(&state);

		if (!addr)
			break;
		buf[n++] = addr;
	}
	return n;
}
#elif defined(CONFIG_STACKTRACE)
static unsigned int ktap_save_stack(struct ktap_hit *hit, unsigned long *buf, unsigned int max)
{
	return stack_trace_save(buf, max, 0);
}
#endif

/*
 * The kernel return addresses of this hit, innermost first, without ktap's own frames: the stack is
 * unwound from here (on x86_64 from where ktap_run() entered the VM), the frames inside this module
 * (the shim and the VM) are dropped, and when the hit has the registers of interrupted kernel code
 * (a kprobe's trap, a timer's interrupt) the walk starts at that instruction if the unwinder went
 * through the trap frame, else it is put first.
 */
u32 ktap_hit_stack(void *opaque, u64 *out, u32 max)
{
#ifdef CONFIG_STACKTRACE
	struct ktap_hit *hit = opaque;
	unsigned long buf[KTAP_STACK_SCAN];
	unsigned int n = ktap_save_stack(hit, buf, ARRAY_SIZE(buf));
	unsigned int i = 0, j;
	u32 o = 0;

	while (i < n && within_module_core(buf[i], THIS_MODULE))
		i++;
	if (hit->regs && !user_mode(hit->regs)) {
		unsigned long ip = instruction_pointer(hit->regs);

		for (j = i; j < n && buf[j] != ip; j++)
			;
		if (j < n)
			i = j;
		else if (o < max)
			out[o++] = ip;
	}
	for (; i < n && o < max; i++)
		out[o++] = buf[i];
	return o;
#else
	return 0;
#endif
}
