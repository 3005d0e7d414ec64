// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_run.c - the probe path: the recursion guard and lock around each VM run, and the callbacks
 * the VM makes (context fields, comm, records). Nothing here allocates, sleeps or prints.
 */
#include <linux/cpumask.h>
#include <linux/cred.h>
#include <linux/preempt.h>
#include <linux/irq_work.h>
#include <linux/percpu.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/timekeeping.h>
#include <linux/uidgid.h>
#include <asm/unaligned.h>

#include "ktap.h"

/* Set while this CPU is inside ktap_enter()..ktap_exit(). */
static DEFINE_PER_CPU(int, ktap_in_vm);

/*
 * Lock order and deadlock freedom.
 *
 * s->lock is a raw spinlock taken only here, always with local interrupts disabled and only after
 * this CPU's ktap_in_vm flag was found clear and set. While holding it a CPU runs the VM (bounded
 * by the instruction budget, no allocation, no sleeping, no other lock: the ring is protected by
 * the same lock, irq_work_queue() is lock-free) or copies ring/counter bytes; then it releases it.
 *
 * - Same CPU re-entry: with interrupts off, the only ways back into ktap_enter() on this CPU are an
 *   NMI, or a probe firing inside code we call while holding the lock (a kprobe on memcpy or
 *   ktime_get_mono_fast_ns, a tracepoint in irq_work_queue, ...). Both find ktap_in_vm set and
 *   return without touching the lock (the hit is counted as recursion_skipped). So a CPU never
 *   spins on a lock it holds.
 * - Other CPUs: a CPU spinning here holds nothing of ours, and the holder finishes in bounded time
 *   without waiting for anyone, so the spin ends.
 * - Process context (BEGIN/END runs, read copy-out, stats) uses the same entry; there the flag is
 *   always clear: it is set only with interrupts off, and cleared before they are restored.
 *
 * No sleeping lock is taken under s->lock; s->mutex (process context) may be held around it.
 */

/*
 * The guard and lock, inlined into ktap_run() (the probe path) so that `flags` stays in a register:
 * as an out-of-line call with &flags the compiler adds a call each way and a stack-protector check.
 */
static __always_inline bool __ktap_enter(struct ktap_session *s, unsigned long *flags)
{
	local_irq_save(*flags);
	if (unlikely(__this_cpu_read(ktap_in_vm))) {
		local_irq_restore(*flags);
		atomic64_inc(&s->recursion_skipped);
		return false;
	}
	__this_cpu_write(ktap_in_vm, 1);
	raw_spin_lock(&s->lock);
	return true;
}

static __always_inline void __ktap_exit(struct ktap_session *s, unsigned long flags)
{
	raw_spin_unlock(&s->lock);
	__this_cpu_write(ktap_in_vm, 0);
	local_irq_restore(flags);
}

bool ktap_enter(struct ktap_session *s, unsigned long *flags)
{
	return __ktap_enter(s, flags);
}

void ktap_exit(struct ktap_session *s, unsigned long flags)
{
	__ktap_exit(s, flags);
}

/* Run handler `func` for one hit. Safe in any context, NMI included. */
void ktap_run(struct ktap_session *s, u16 func, struct ktap_hit *hit)
{
	unsigned long flags;

	if (!__ktap_enter(s, &flags))
		return;
#ifdef KTAP_UNWIND_FROM_ENTRY
	/* an instruction of this function and the stack and frame registers there (see ktap.h) */
	asm volatile("lea (%%rip), %0\n\t"
		     "mov %%rsp, %1\n\t"
		     "mov %%rbp, %2"
		     : "=r" (hit->entry.ip), "=r" (hit->entry.sp), "=r" (hit->entry.bp));
#endif
	if (likely(s->vm))
		ktap_vm_run(s->vm, func, hit);
	/* never wake_up() here: the probed function may hold scheduler locks */
	if (hit->wrote)
		irq_work_queue(&s->wake_work);
	__ktap_exit(s, flags);
}

/* Argument n of the probed function, by the calling convention; 0 beyond the register arguments. */
static long ktap_regs_arg(struct pt_regs *regs, unsigned int n)
{
#if defined(CONFIG_ARM)
	return n < 4 ? (long)regs->uregs[n] : 0;			/* r0-r3 */
#elif defined(CONFIG_ARM64)
	return n < 8 ? (long)regs->regs[n] : 0;				/* x0-x7 */
#elif defined(CONFIG_MIPS) && defined(CONFIG_64BIT)
	return n < 8 ? (long)regs->regs[4 + n] : 0;			/* n64: $a0-$a7 */
#elif defined(CONFIG_MIPS)
	return n < 4 ? (long)regs->regs[4 + n] : 0;			/* o32: $a0-$a3 */
#elif defined(CONFIG_PPC)
	return n < 8 ? (long)regs->gpr[3 + n] : 0;			/* r3-r10 */
#elif defined(CONFIG_X86_64)
	switch (n) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->cx;
	case 4: return regs->r8;
	case 5: return regs->r9;
	default: return 0;
	}
#else
	return 0;
#endif
}

s64 ktap_hit_ctx(void *opaque, u32 field)
{
	struct ktap_hit *hit = opaque;

	switch (field) {
	case KTAP_CTX_PID:
		return task_tgid_nr(current);
	case KTAP_CTX_TID:
		return task_pid_nr(current);
	case KTAP_CTX_CPU:
		return raw_smp_processor_id();
	case KTAP_CTX_UID:
		return from_kuid_munged(&init_user_ns, current_uid());
	case KTAP_CTX_TIME_NS:
		return ktime_get_mono_fast_ns();	/* NMI-safe, unlike ktime_get_ns() */
	case KTAP_CTX_WALL_NS:
		return ktime_get_real_fast_ns();	/* NMI-safe wall clock */
	case KTAP_CTX_NUM_CPUS:
		return num_online_cpus();
	case KTAP_CTX_IN_INTERRUPT:
		return in_interrupt() || in_nmi();	/* hardirq, softirq (serving or disabled) or NMI */
	case KTAP_CTX_RETVAL:
		if (hit->kind == KTAP_PROBE_KRETPROBE && hit->regs)
			return (long)regs_return_value(hit->regs);
		return 0;
	}
	if (field >= KTAP_CTX_ARG0 && field < KTAP_CTX_ARG0 + KTAP_CTX_NARGS) {
		unsigned int n = field - KTAP_CTX_ARG0;

		if (hit->kind == KTAP_PROBE_KPROBE && hit->regs)
			return ktap_regs_arg(hit->regs, n);
		if (hit->kind == KTAP_PROBE_TRACEPOINT && hit->tp_args && n < 6)
			return (long)hit->tp_args[n];
	}
	return 0;	/* kretprobe arguments are gone at return; BEGIN/END have none */
}

/*
 * Length of the name in the TASK_COMM_LEN bytes at c: the first NUL, found a word at a time (in a
 * little-endian word, the lowest byte flagged by the has-a-zero-byte test is the first NUL; bytes
 * above it may be flagged falsely). At most TASK_COMM_LEN - 1. strnlen() costs several
 * instructions per byte here, and this runs on every `execname`.
 */
static u32 ktap_comm_len(const u8 *c)
{
	u32 i;

	for (i = 0; i < TASK_COMM_LEN; i += 4) {
		u32 w = get_unaligned_le32(c + i);
		u32 z = (w - 0x01010101u) & ~w & 0x80808080u;

		if (z)
			return min_t(u32, i + (__ffs(z) >> 3), TASK_COMM_LEN - 1);
	}
	return TASK_COMM_LEN - 1;
}

/* A buffer shorter than a comm (the VM always passes a whole string register): out of line, so
 * its stack copy does not give the common path a stack-protector check. */
static noinline u32 ktap_hit_comm_short(u8 *buf, u32 len)
{
	u8 comm[TASK_COMM_LEN];
	u32 n;

	memcpy(comm, current->comm, sizeof(comm));
	n = min_t(u32, ktap_comm_len(comm), len);
	memcpy(buf, comm, n);
	return n;
}

u32 ktap_hit_comm(void *opaque, u8 *buf, u32 len)
{
	/*
	 * Like bpf_get_current_comm: a racy copy without task_lock, harmless. Measured in our copy, so
	 * the length matches the bytes copied even if the task renames itself meanwhile; copied whole
	 * (four words) straight into the caller's buffer.
	 */
	if (unlikely(len < TASK_COMM_LEN))
		return ktap_hit_comm_short(buf, len);
	memcpy(buf, current->comm, TASK_COMM_LEN);
	return ktap_comm_len(buf);
}

int ktap_emit(void *opaque, const u8 *rec, u32 len)
{
	struct ktap_hit *hit = opaque;

	if (!ktap_ring_write(&hit->sess->ring, rec, len))
		return 0;
	hit->wrote = true;
	return 1;
}
