/* SPDX-License-Identifier: GPL-2.0 */
/* ktap.h - the shim's internal declarations: the session, probes, hits and the record ring. */
#ifndef KTAP_H
#define KTAP_H

#include <linux/atomic.h>
#include <linux/irq_work.h>
#include <linux/kprobes.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/tracepoint.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "ktap_uapi.h"
#include "ktap_vm.h"

#define KTAP_RING_SIZE		(256 * 1024)	/* power of two */
#define KTAP_BOUNCE_SIZE	(64 * 1024)

/* A byte ring of whole records. head/tail run free (u32 wrap); all access under the session lock. */
struct ktap_ring {
	u8 *buf;
	u32 size;
	u32 head;
	u32 tail;
};

struct ktap_session;

/* One probe of the loaded program and what it is attached with. */
struct ktap_probe {
	struct ktap_session *sess;
	struct ktap_vm_probe spec;
	struct kprobe kp;
	struct kretprobe krp;
	struct tracepoint *tp;
	bool registered;
	void *timers;			/* timer probes: struct ktap_timer[ntimers] (ktap_timer.c) */
	u32 ntimers;
};

enum ktap_state {
	KTAP_EMPTY,		/* nothing loaded */
	KTAP_LOADED,		/* verified, probes validated, not attached */
	KTAP_RUNNING,		/* BEGIN ran, probes registered */
	KTAP_STOPPED,		/* probes unregistered, END ran, ring draining */
};

/* The one program of the (exclusively opened) device. */
struct ktap_session {
	struct mutex mutex;		/* serialises ioctls, read copy-out and release */
	raw_spinlock_t lock;		/* the VM and the ring; see ktap_enter() */
	enum ktap_state state;		/* written under mutex */
	bool ending;			/* STOP happened: read returns 0 once drained */
	struct ktap_vm *vm;
	struct ktap_probe *probes;
	u32 nprobes;
	void **batch;			/* nprobes pointers, for unregister_k*probes() */
	int begin_func;			/* -1: none */
	int end_func;
	struct ktap_ring ring;
	u8 *bounce;			/* read() copy-out buffer, KTAP_BOUNCE_SIZE */
	wait_queue_head_t wq;
	struct irq_work wake_work;	/* wakes readers from probe context */
	atomic64_t recursion_skipped;
	u64 missed;			/* nmissed of probes already unregistered */
};

/*
 * x86_64 unwinds kernel stacks with ORC tables, which objtool writes for C objects only: the Rust
 * VM object has none, so a walk started inside a VM callback stops at the first Rust frame. There
 * ktap_run() notes where C code enters the VM and kstack unwinds from that point (ktap_mem.c).
 */
#if defined(CONFIG_X86_64) && defined(CONFIG_UNWINDER_ORC)
#define KTAP_UNWIND_FROM_ENTRY 1
struct ktap_vm_entry {
	unsigned long ip, sp, bp;
};
#endif

/* What one run of the VM sees: passed to ktap_vm_run as the opaque `hit`. */
struct ktap_hit {
	struct ktap_session *sess;
	struct pt_regs *regs;		/* kprobe, kretprobe */
	const unsigned long *tp_args;	/* tracepoint: 6 raw arguments */
	u8 kind;			/* KTAP_PROBE_* */
	bool wrote;			/* a record went into the ring */
#ifdef KTAP_UNWIND_FROM_ENTRY
	struct ktap_vm_entry entry;	/* set by ktap_run() just before the VM runs */
#endif
};

/* ktap_run.c: the probe path */
bool ktap_enter(struct ktap_session *s, unsigned long *flags);
void ktap_exit(struct ktap_session *s, unsigned long flags);
void ktap_run(struct ktap_session *s, u16 func, struct ktap_hit *hit);

/* ktap_ring.c */
int ktap_ring_alloc(struct ktap_ring *r, u32 size);
void ktap_ring_free(struct ktap_ring *r);
bool ktap_ring_write(struct ktap_ring *r, const u8 *rec, u32 len);
int ktap_ring_read(struct ktap_ring *r, u8 *out, u32 max);
bool ktap_ring_empty(const struct ktap_ring *r);

/* ktap_probes.c */
int ktap_probes_check(struct ktap_session *s, struct ktap_load_args *args);
int ktap_probes_arm(struct ktap_session *s);
void ktap_probes_disarm(struct ktap_session *s);
u64 ktap_probes_missed(struct ktap_session *s);

/* ktap_timer.c: timer probes (hrtimers) */
int ktap_timers_alloc(struct ktap_session *s);
int ktap_timers_arm(struct ktap_session *s);
void ktap_timers_disarm(struct ktap_session *s);
void ktap_timers_free(struct ktap_session *s);

/* ktap_session.c: the program's life cycle (callers hold s->mutex) */
extern struct ktap_session ktap_session;
void ktap_session_init(struct ktap_session *s);
int ktap_session_load(struct ktap_session *s, struct ktap_load_args *args);
int ktap_session_start(struct ktap_session *s);
int ktap_session_stop(struct ktap_session *s);
int ktap_session_stats(struct ktap_session *s, struct ktap_kstats *st);
void ktap_session_unload(struct ktap_session *s);
bool ktap_session_readable(struct ktap_session *s);

/* ktap_dev.c */
int ktap_dev_register(void);
void ktap_dev_unregister(void);

#endif /* KTAP_H */
