// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_session.c - the life cycle of the loaded program:
 *   EMPTY --LOAD--> LOADED --START--> RUNNING --STOP--> STOPPED --UNLOAD--> EMPTY
 * (UNLOAD and release work from any state and stop first). Every function here runs in process
 * context with s->mutex held.
 */
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "ktap.h"

struct ktap_session ktap_session;

static void ktap_wake_fn(struct irq_work *work)
{
	struct ktap_session *s = container_of(work, struct ktap_session, wake_work);

	wake_up_interruptible(&s->wq);
}

void ktap_session_init(struct ktap_session *s)
{
	mutex_init(&s->mutex);
	raw_spin_lock_init(&s->lock);
	init_waitqueue_head(&s->wq);
	init_irq_work(&s->wake_work, ktap_wake_fn);
	atomic64_set(&s->recursion_skipped, 0);
	s->state = KTAP_EMPTY;
	s->begin_func = -1;
	s->end_func = -1;
}

/* Free everything a (partial) load allocated. No probe is registered. */
static void ktap_session_free(struct ktap_session *s)
{
	unsigned long flags;
	struct ktap_vm *vm;

	if (s->probes)
		ktap_timers_free(s);	/* cancels them: no callback runs after this */
	irq_work_sync(&s->wake_work);
	/* unreachable from probes now; the lock orders this against a process-context reader */
	if (ktap_enter(s, &flags)) {
		vm = s->vm;
		s->vm = NULL;
		ktap_exit(s, flags);
	} else {
		vm = s->vm;	/* cannot happen in process context, see ktap_enter() */
		s->vm = NULL;
	}
	ktap_vm_free(vm);
	ktap_ring_free(&s->ring);
	vfree(s->bounce);
	s->bounce = NULL;
	kfree(s->probes);
	s->probes = NULL;
	kfree(s->batch);
	s->batch = NULL;
	s->nprobes = 0;
	s->begin_func = -1;
	s->end_func = -1;
	s->missed = 0;
	s->ending = false;
	atomic64_set(&s->recursion_skipped, 0);
	WRITE_ONCE(s->state, KTAP_EMPTY);
	wake_up_interruptible(&s->wq);
}

static int ktap_session_refuse(struct ktap_load_args *args, u32 code, int err)
{
	args->code = code;
	args->detail = err;
	return err;
}

int ktap_session_load(struct ktap_session *s, struct ktap_load_args *args)
{
	struct ktap_vm_status st = { 0 };
	u32 i, attach = 0;
	u8 *image;
	int ret;

	args->code = 0;
	args->offset = 0;
	args->detail = 0;
	args->nprobes = 0;
	if (s->state != KTAP_EMPTY)
		return ktap_session_refuse(args, KTAP_E_BUSY, -EBUSY);
	if (args->flags)
		return ktap_session_refuse(args, KTAP_E_KERNEL, -EINVAL);
	if (args->len > KTAP_MAX_IMAGE) {
		args->offset = 12;	/* the header's length field */
		return ktap_session_refuse(args, KTAP_E_IMAGE_TOO_LARGE, -EFBIG);
	}

	image = kvmalloc(args->len ? args->len : 1, GFP_KERNEL);
	if (!image)
		return ktap_session_refuse(args, KTAP_E_NO_MEMORY, -ENOMEM);
	if (copy_from_user(image, u64_to_user_ptr(args->image), args->len)) {
		kvfree(image);
		return ktap_session_refuse(args, KTAP_E_KERNEL, -EFAULT);
	}
	s->vm = ktap_vm_load(image, args->len, &st);
	kvfree(image);
	if (!s->vm) {
		args->offset = st.offset;
		return ktap_session_refuse(args, st.code,
					   st.code == KTAP_E_NO_MEMORY ? -ENOMEM : -EINVAL);
	}

	s->nprobes = ktap_vm_probe_count(s->vm);
	s->probes = kcalloc(s->nprobes, sizeof(*s->probes), GFP_KERNEL);
	s->batch = kcalloc(s->nprobes, sizeof(*s->batch), GFP_KERNEL);
	s->bounce = vmalloc(KTAP_BOUNCE_SIZE);
	if (!s->probes || !s->batch || !s->bounce || ktap_ring_alloc(&s->ring, KTAP_RING_SIZE)) {
		ktap_session_free(s);
		return ktap_session_refuse(args, KTAP_E_NO_MEMORY, -ENOMEM);
	}
	for (i = 0; i < s->nprobes; i++) {
		struct ktap_probe *p = &s->probes[i];

		p->sess = s;
		ktap_vm_probe_get(s->vm, i, &p->spec);
		if (p->spec.kind == KTAP_PROBE_BEGIN)
			s->begin_func = p->spec.func;
		else if (p->spec.kind == KTAP_PROBE_END)
			s->end_func = p->spec.func;
		else
			attach++;
	}
	ret = ktap_timers_alloc(s);
	if (ret) {
		ktap_session_free(s);
		return ktap_session_refuse(args, KTAP_E_NO_MEMORY, -ENOMEM);
	}
	ret = ktap_probes_check(s, args);
	if (ret) {
		ktap_session_free(s);
		return ret;
	}
	args->nprobes = attach;
	s->ending = false;
	WRITE_ONCE(s->state, KTAP_LOADED);
	return 0;
}

/* Run BEGIN or END (process context; interrupts are off for the run like on the probe path). */
static void ktap_session_run_special(struct ktap_session *s, int func, u8 kind)
{
	struct ktap_hit hit = { .sess = s, .kind = kind };

	if (func < 0)
		return;
	ktap_run(s, func, &hit);
	if (hit.wrote)
		wake_up_interruptible(&s->wq);
}

int ktap_session_start(struct ktap_session *s)
{
	int ret;

	switch (s->state) {
	case KTAP_EMPTY:
		return -ENOENT;
	case KTAP_RUNNING:
		return -EBUSY;
	case KTAP_STOPPED:
		return -EINVAL;
	case KTAP_LOADED:
		break;
	}
	ktap_session_run_special(s, s->begin_func, KTAP_PROBE_BEGIN);
	ret = ktap_probes_arm(s);
	if (ret)
		return ret;
	ret = ktap_timers_arm(s);
	if (ret) {
		ktap_probes_disarm(s);
		return ret;
	}
	WRITE_ONCE(s->state, KTAP_RUNNING);
	return 0;
}

int ktap_session_stop(struct ktap_session *s)
{
	switch (s->state) {
	case KTAP_EMPTY:
		return -ENOENT;
	case KTAP_STOPPED:
		return 0;
	case KTAP_RUNNING:
		ktap_probes_disarm(s);	/* returns once no handler runs any more */
		ktap_timers_disarm(s);	/* likewise: hrtimer_cancel() waits for a running callback */
		ktap_session_run_special(s, s->end_func, KTAP_PROBE_END);
		break;
	case KTAP_LOADED:
		break;
	}
	WRITE_ONCE(s->ending, true);
	WRITE_ONCE(s->state, KTAP_STOPPED);
	wake_up_interruptible(&s->wq);
	return 0;
}

void ktap_session_unload(struct ktap_session *s)
{
	if (s->state == KTAP_EMPTY)
		return;
	ktap_session_stop(s);
	ktap_session_free(s);
}

int ktap_session_stats(struct ktap_session *s, struct ktap_kstats *st)
{
	struct ktap_vm_counters c = { 0 };
	unsigned long flags;

	if (s->state == KTAP_EMPTY)
		return -ENOENT;
	if (ktap_enter(s, &flags)) {
		ktap_vm_counters(s->vm, &c);
		ktap_exit(s, flags);
	}
	st->hits = c.hits;
	st->recursion_skipped = atomic64_read(&s->recursion_skipped);
	st->budget_exhausted = c.budget_exhausted;
	st->runtime_errors = c.runtime_errors;
	st->table_full = c.table_full;
	st->ring_dropped = c.ring_dropped;
	st->kernel_missed = ktap_probes_missed(s);
	st->mem_faults = c.mem_faults;
	return 0;
}

/* For read/poll without the mutex: anything to return (records, end of stream, unloaded)? */
bool ktap_session_readable(struct ktap_session *s)
{
	return READ_ONCE(s->state) == KTAP_EMPTY || READ_ONCE(s->ending) ||
	       !ktap_ring_empty(&s->ring);
}
