// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_probes.c - attaching the program's probes: kprobes and kretprobes at host-resolved addresses,
 * tracepoints by name. LOAD validates every probe (a disabled trial registration, which runs all of
 * the kernel's own checks without patching any text), START registers them, STOP unregisters them
 * (the unregister calls wait until no handler is running any more).
 */
#include <linux/cpumask.h>
#include <linux/kprobes.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

#include "ktap.h"

static int ktap_kprobe_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct ktap_probe *p = container_of(kp, struct ktap_probe, kp);
	struct ktap_hit hit = { .sess = p->sess, .regs = regs, .kind = KTAP_PROBE_KPROBE };

	ktap_run(p->sess, p->spec.func, &hit);
	return 0;
}
NOKPROBE_SYMBOL(ktap_kprobe_pre);

static int ktap_kretprobe_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct kretprobe *rp = get_kretprobe(ri);
	struct ktap_probe *p;
	struct ktap_hit hit = { .regs = regs, .kind = KTAP_PROBE_KRETPROBE };

	if (unlikely(!rp))
		return 0;
	p = container_of(rp, struct ktap_probe, krp);
	hit.sess = p->sess;
	ktap_run(p->sess, p->spec.func, &hit);
	return 0;
}
NOKPROBE_SYMBOL(ktap_kretprobe_ret);

/*
 * One probe function for every tracepoint: the first six arguments as words. A tracepoint with
 * fewer arguments leaves the rest as whatever the registers (or the caller's stack) hold; on
 * 32-bit boards a 64-bit argument takes two words. Not usable with kernel CFI (CONFIG_CFI_CLANG).
 */
static void ktap_tp_probe(void *data, unsigned long a0, unsigned long a1, unsigned long a2,
			  unsigned long a3, unsigned long a4, unsigned long a5)
{
	struct ktap_probe *p = data;
	const unsigned long args[6] = { a0, a1, a2, a3, a4, a5 };
	struct ktap_hit hit = { .sess = p->sess, .tp_args = args, .kind = KTAP_PROBE_TRACEPOINT };

	ktap_run(p->sess, p->spec.func, &hit);
}

struct ktap_tp_find {
	const char *name;
	struct tracepoint *tp;
};

static void ktap_tp_match(struct tracepoint *tp, void *priv)
{
	struct ktap_tp_find *f = priv;

	if (!f->tp && !strcmp(tp->name, f->name))
		f->tp = tp;
}

/* A built-in tracepoint by name; "subsys:name" is accepted as well as "name". */
static struct tracepoint *ktap_tp_find(const char *name)
{
	const char *colon = strchr(name, ':');
	struct ktap_tp_find f = { .name = colon ? colon + 1 : name };

	for_each_kernel_tracepoint(ktap_tp_match, &f);
	return f.tp;
}

static void ktap_kp_init(struct ktap_probe *p, bool disabled)
{
	memset(&p->kp, 0, sizeof(p->kp));
	p->kp.addr = (kprobe_opcode_t *)(unsigned long)p->spec.addr;
	p->kp.pre_handler = ktap_kprobe_pre;
	if (disabled)
		p->kp.flags = KPROBE_FLAG_DISABLED;
}

static void ktap_krp_init(struct ktap_probe *p, bool disabled)
{
	memset(&p->krp, 0, sizeof(p->krp));
	p->krp.kp.addr = (kprobe_opcode_t *)(unsigned long)p->spec.addr;
	p->krp.handler = ktap_kretprobe_ret;
	/* concurrent instances of a function that sleeps; beyond this, returns count as nmissed */
	p->krp.maxactive = max_t(int, 32, 4 * num_possible_cpus());
	if (disabled)
		p->krp.kp.flags = KPROBE_FLAG_DISABLED;
}

static u64 ktap_probe_missed(const struct ktap_probe *p)
{
	if (!p->registered)
		return 0;
	if (p->spec.kind == KTAP_PROBE_KPROBE)
		return p->kp.nmissed;
	if (p->spec.kind == KTAP_PROBE_KRETPROBE)
		return p->krp.nmissed + p->krp.kp.nmissed;
	return 0;
}

/*
 * Unregister every registered kprobe/kretprobe/tracepoint in as few grace periods as possible,
 * adding their final nmissed to s->missed.
 */
static void ktap_unregister_all(struct ktap_session *s)
{
	struct kprobe **kps = (struct kprobe **)s->batch;
	struct kretprobe **krps = (struct kretprobe **)s->batch;
	bool tp = false;
	u32 i, n;

	for (i = 0, n = 0; i < s->nprobes; i++)
		if (s->probes[i].registered && s->probes[i].spec.kind == KTAP_PROBE_KPROBE)
			kps[n++] = &s->probes[i].kp;
	if (n)
		unregister_kprobes(kps, n);
	for (i = 0, n = 0; i < s->nprobes; i++)
		if (s->probes[i].registered && s->probes[i].spec.kind == KTAP_PROBE_KRETPROBE)
			krps[n++] = &s->probes[i].krp;
	if (n)
		unregister_kretprobes(krps, n);
	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];

		if (p->registered && p->spec.kind == KTAP_PROBE_TRACEPOINT) {
			tracepoint_probe_unregister(p->tp, ktap_tp_probe, p);
			tp = true;
		}
	}
	if (tp)
		tracepoint_synchronize_unregister();
	for (i = 0; i < s->nprobes; i++) {
		s->missed += ktap_probe_missed(&s->probes[i]);
		s->probes[i].registered = false;
	}
}

/*
 * LOAD: check every probe can attach. Tracepoints are looked up; kprobes and kretprobes are
 * registered disabled (address in kernel text, not blacklisted, on an instruction / function
 * entry) and unregistered again. On failure fills args and returns -errno.
 */
int ktap_probes_check(struct ktap_session *s, struct ktap_load_args *args)
{
	int ret = 0;
	u32 i;

	for (i = 0; i < s->nprobes && !ret; i++) {
		struct ktap_probe *p = &s->probes[i];

		switch (p->spec.kind) {
		case KTAP_PROBE_KPROBE:
			ktap_kp_init(p, true);
			ret = register_kprobe(&p->kp);
			break;
		case KTAP_PROBE_KRETPROBE:
			ktap_krp_init(p, true);
			ret = register_kretprobe(&p->krp);
			break;
		case KTAP_PROBE_TRACEPOINT:
			p->tp = ktap_tp_find(p->spec.name);
			if (!p->tp) {
				args->code = KTAP_E_NO_TRACEPOINT;
				args->offset = i;
				args->detail = -ENOENT;
				ret = -ENOENT;
			}
			continue;
		default:
			continue;
		}
		if (ret) {
			args->code = KTAP_E_ATTACH_FAILED;
			args->offset = i;
			args->detail = ret;
		} else {
			p->registered = true;
		}
	}
	ktap_unregister_all(s);
	s->missed = 0;		/* trial registrations never fire */
	return ret;
}

/* START: register every probe; on failure unregister the ones already registered. */
int ktap_probes_arm(struct ktap_session *s)
{
	u32 i;

	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];
		int ret;

		switch (p->spec.kind) {
		case KTAP_PROBE_KPROBE:
			ktap_kp_init(p, false);
			ret = register_kprobe(&p->kp);
			break;
		case KTAP_PROBE_KRETPROBE:
			ktap_krp_init(p, false);
			ret = register_kretprobe(&p->krp);
			break;
		case KTAP_PROBE_TRACEPOINT:
			ret = tracepoint_probe_register(p->tp, ktap_tp_probe, p);
			break;
		default:
			continue;
		}
		if (ret) {
			pr_warn("ktap: probe %u (%s) failed to attach: %d\n", i, p->spec.name, ret);
			ktap_probes_disarm(s);
			return ret;
		}
		p->registered = true;
	}
	return 0;
}

/* STOP: unregister everything. When this returns no handler of ours is running or will run. */
void ktap_probes_disarm(struct ktap_session *s)
{
	ktap_unregister_all(s);
}

/* Sum of nmissed: probes unregistered so far plus the live ones. */
u64 ktap_probes_missed(struct ktap_session *s)
{
	u64 missed = s->missed;
	u32 i;

	for (i = 0; i < s->nprobes; i++)
		missed += ktap_probe_missed(&s->probes[i]);
	return missed;
}
