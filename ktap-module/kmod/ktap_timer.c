// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_timer.c - timer probes: `tick-N` (one hrtimer) and `profile-N` (one pinned hrtimer per online
 * CPU), each running its handler every period. The hrtimers are allocated at load (process context),
 * started at START and cancelled at STOP before END runs, so no callback outlives the program.
 *
 * Concurrency: the callbacks run in hardirq context (hrtimer expiry). They enter the VM through
 * ktap_run() like every other probe: interrupts are already off there, so a timer cannot interrupt
 * the VM on its own CPU; an NMI still can, and finds the per-CPU flag set (see ktap_enter()). On other
 * CPUs the callback spins on the raw program lock held by a bounded run that takes no other lock.
 * CPUs brought online after START get no profile timer (documented limitation).
 */
#include <linux/cpumask.h>
#include <linux/hrtimer.h>
#include <asm/irq_regs.h>
#include <linux/ktime.h>
#include <linux/slab.h>
#include <linux/smp.h>

#include "ktap.h"

struct ktap_timer {
	struct hrtimer timer;
	struct ktap_probe *probe;
	bool started;
};

static enum hrtimer_restart ktap_timer_fire(struct hrtimer *t)
{
	struct ktap_timer *kt = container_of(t, struct ktap_timer, timer);
	struct ktap_probe *p = kt->probe;
	struct ktap_hit hit = { .sess = p->sess, .regs = get_irq_regs(), .kind = KTAP_PROBE_TIMER };

	ktap_run(p->sess, p->spec.func, &hit);
	hrtimer_forward_now(t, ns_to_ktime(p->spec.addr));
	return HRTIMER_RESTART;
}

static bool ktap_timer_every_cpu(const struct ktap_probe *p)
{
	return p->spec.flags & KTAP_PROBE_EVERY_CPU;
}

/* LOAD: one hrtimer per timer probe, or one per possible CPU for profile timers. */
int ktap_timers_alloc(struct ktap_session *s)
{
	u32 i, j;

	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];
		u32 n;

		if (p->spec.kind != KTAP_PROBE_TIMER)
			continue;
		n = ktap_timer_every_cpu(p) ? nr_cpu_ids : 1;
		p->timers = kcalloc(n, sizeof(struct ktap_timer), GFP_KERNEL);
		if (!p->timers)
			return -ENOMEM;
		p->ntimers = n;
		for (j = 0; j < n; j++) {
			struct ktap_timer *kt = &((struct ktap_timer *)p->timers)[j];

			hrtimer_init(&kt->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
			kt->timer.function = ktap_timer_fire;
			kt->probe = p;
		}
	}
	return 0;
}

/* Runs on the CPU whose timer it starts (pinned: profile timers stay on their CPU). */
static void ktap_timer_start_here(void *arg)
{
	struct ktap_probe *p = arg;
	struct ktap_timer *kt = &((struct ktap_timer *)p->timers)[smp_processor_id()];

	kt->started = true;
	hrtimer_start(&kt->timer, ns_to_ktime(p->spec.addr), HRTIMER_MODE_REL_PINNED_HARD);
}

/* START: every profile timer on each online CPU, every tick timer on the current CPU. */
void ktap_timers_arm(struct ktap_session *s)
{
	u32 i;

	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];
		struct ktap_timer *kt;

		if (p->spec.kind != KTAP_PROBE_TIMER || !p->timers)
			continue;
		if (ktap_timer_every_cpu(p)) {
			on_each_cpu(ktap_timer_start_here, p, 1);
			continue;
		}
		kt = p->timers;
		kt->started = true;
		hrtimer_start(&kt->timer, ns_to_ktime(p->spec.addr), HRTIMER_MODE_REL_PINNED_HARD);
	}
}

/* STOP: cancel every timer; hrtimer_cancel() waits for a running callback, so none runs after. */
void ktap_timers_disarm(struct ktap_session *s)
{
	u32 i, j;

	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];

		for (j = 0; p->timers && j < p->ntimers; j++) {
			struct ktap_timer *kt = &((struct ktap_timer *)p->timers)[j];

			if (kt->started)
				hrtimer_cancel(&kt->timer);
			kt->started = false;
		}
	}
}

void ktap_timers_free(struct ktap_session *s)
{
	u32 i;

	ktap_timers_disarm(s);
	for (i = 0; i < s->nprobes; i++) {
		kfree(s->probes[i].timers);
		s->probes[i].timers = NULL;
		s->probes[i].ntimers = 0;
	}
}
