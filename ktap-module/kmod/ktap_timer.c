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
 *
 * CPU hotplug: while profile timers run, a dynamic hotplug state (CPUHP_AP_ONLINE_DYN) follows the
 * CPUs. Its callbacks run on the CPU concerned: a CPU coming online starts its own pinned timers, a
 * CPU going offline cancels them first (otherwise the kernel would migrate them to a surviving CPU,
 * which would then run two). Setting the state up at START runs the online callback on every online
 * CPU, which is how profile timers start; removing it at STOP cancels them on every online CPU.
 * The callbacks run with the hotplug lock held and take no lock of ours: s->mutex is held around
 * cpuhp_setup_state()/cpuhp_remove_state(), which wait for that hotplug lock, so taking the mutex
 * in a callback could deadlock. They touch only their own CPU's timer slots.
 */
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
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

/* The session whose profile timers follow hotplug, and its dynamic state; set only under its mutex. */
static struct ktap_session *ktap_cpuhp_sess;
static int ktap_cpuhp_state;

/* This CPU's slot of profile timer probe p. */
static struct ktap_timer *ktap_timer_of(struct ktap_probe *p, unsigned int cpu)
{
	if (!p->timers || cpu >= p->ntimers)
		return NULL;
	return &((struct ktap_timer *)p->timers)[cpu];
}

/* Hotplug startup: runs on `cpu` as it comes online (and on each online CPU at setup). */
static int ktap_timer_cpu_online(unsigned int cpu)
{
	struct ktap_session *s = READ_ONCE(ktap_cpuhp_sess);
	u32 i;

	for (i = 0; s && i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];
		struct ktap_timer *kt;

		if (p->spec.kind != KTAP_PROBE_TIMER || !ktap_timer_every_cpu(p))
			continue;
		kt = ktap_timer_of(p, cpu);
		if (!kt || kt->started)
			continue;
		kt->started = true;
		hrtimer_start(&kt->timer, ns_to_ktime(p->spec.addr), HRTIMER_MODE_REL_PINNED_HARD);
	}
	return 0;
}

/* Hotplug teardown: runs on `cpu` before it goes offline (and on each online CPU at removal). */
static int ktap_timer_cpu_offline(unsigned int cpu)
{
	struct ktap_session *s = READ_ONCE(ktap_cpuhp_sess);
	u32 i;

	for (i = 0; s && i < s->nprobes; i++) {
		struct ktap_timer *kt = ktap_timer_of(&s->probes[i], cpu);

		if (!kt || !kt->started || !ktap_timer_every_cpu(&s->probes[i]))
			continue;
		hrtimer_cancel(&kt->timer);	/* waits for a running callback */
		kt->started = false;
	}
	return 0;
}

/* START: every tick timer on the current CPU; profile timers through the hotplug state. */
int ktap_timers_arm(struct ktap_session *s)
{
	bool profile = false;
	int ret;
	u32 i;

	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];
		struct ktap_timer *kt;

		if (p->spec.kind != KTAP_PROBE_TIMER || !p->timers)
			continue;
		if (ktap_timer_every_cpu(p)) {
			profile = true;
			continue;
		}
		kt = p->timers;
		kt->started = true;
		hrtimer_start(&kt->timer, ns_to_ktime(p->spec.addr), HRTIMER_MODE_REL_PINNED_HARD);
	}
	if (!profile)
		return 0;
	WRITE_ONCE(ktap_cpuhp_sess, s);
	ret = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "ktap/profile:online", ktap_timer_cpu_online,
				ktap_timer_cpu_offline);
	if (ret < 0) {
		WRITE_ONCE(ktap_cpuhp_sess, NULL);
		ktap_timers_disarm(s);
		return ret;
	}
	ktap_cpuhp_state = ret;
	return 0;
}

/*
 * STOP: cancel every timer; hrtimer_cancel() waits for a running callback, so none runs after.
 * Removing the hotplug state first runs its teardown on every online CPU and ends hotplug
 * following, so no callback starts a timer again.
 */
void ktap_timers_disarm(struct ktap_session *s)
{
	u32 i, j;

	if (ktap_cpuhp_state > 0 && ktap_cpuhp_sess == s) {
		cpuhp_remove_state(ktap_cpuhp_state);
		ktap_cpuhp_state = 0;
		WRITE_ONCE(ktap_cpuhp_sess, NULL);
	}

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
