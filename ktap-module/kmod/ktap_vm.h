/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ktap_vm.h - the ABI between the C shim and the Rust VM object (rust_vm.o, built from
 * ktap-module/glue). Mirrors glue/src/ffi.rs; a host test checks the numbers against the protocol.
 *
 * Rust exports (all callable with a NULL program; the shim serialises calls on one program with
 * its lock):
 *   ktap_vm_load      process context: parse + verify + preallocate everything
 *   ktap_vm_probe_*   enumerate what to attach
 *   ktap_vm_run       probe context: run one handler; never allocates, never sleeps, bounded
 *   ktap_vm_counters  read the VM's counters
 *   ktap_vm_free      process context
 *
 * C provides (ktap_rt.c, ktap_run.c):
 *   ktap_kalloc/ktap_kfree  the Rust global allocator (kvmalloc/kvfree; refuse in atomic context)
 *   ktap_hit_ctx/_comm      context of the current hit
 *   ktap_hit_stack          kernel return addresses of the current hit (ktap_mem.c)
 *   ktap_read_kernel/_str   no-fault reads of kernel or user memory (ktap_mem.c)
 *   ktap_emit               append one record to the ring (under the program lock)
 *   ktap_rust_panic         the Rust panic handler's target; never referenced by a good build
 */
#ifndef KTAP_VM_H
#define KTAP_VM_H

#include <linux/types.h>

/* ktap_protocol::image::ProbeKind */
#define KTAP_PROBE_KPROBE	1
#define KTAP_PROBE_KRETPROBE	2
#define KTAP_PROBE_TRACEPOINT	3
#define KTAP_PROBE_BEGIN	4
#define KTAP_PROBE_END		5
#define KTAP_PROBE_TIMER	6

/* ktap_protocol::image::PROBE_EVERY_CPU: a timer on every online CPU */
#define KTAP_PROBE_EVERY_CPU	1

/* ktap_protocol::isa::CtxField */
#define KTAP_CTX_PID		0
#define KTAP_CTX_TID		1
#define KTAP_CTX_CPU		2
#define KTAP_CTX_UID		3
#define KTAP_CTX_TIME_NS	4
#define KTAP_CTX_RETVAL		5
#define KTAP_CTX_WALL_NS	6
#define KTAP_CTX_NUM_CPUS	7
#define KTAP_CTX_IN_INTERRUPT	8
#define KTAP_CTX_ARG0		16
#define KTAP_CTX_NARGS		10

/* ktap_protocol::limits */
#define KTAP_MAX_PROBE_NAME	127
#define KTAP_MAX_STR		128
#define KTAP_MAX_RECORD		1000
#define KTAP_MAX_IMAGE		(256 * 1024)

/* ktap_vm_run results */
#define KTAP_RUN_OK		0
#define KTAP_RUN_BUDGET		1
#define KTAP_RUN_ERROR		2
#define KTAP_RUN_BAD_HANDLE	(-1)

struct ktap_vm;			/* opaque: a verified program and all its memory */

/* Why ktap_vm_load refused: code is an image (0x01xx), verifier (0x02xx) or KTAP_E_NO_MEMORY code. */
struct ktap_vm_status {
	__u32 code;
	__u32 offset;		/* byte offset in the image */
};

struct ktap_vm_probe {
	__u64 addr;		/* kprobe/kretprobe address (already rebased by the host), else 0 */
	__u16 func;		/* handler: the func argument of ktap_vm_run */
	__u8 kind;		/* KTAP_PROBE_* */
	__u8 flags;		/* KTAP_PROBE_EVERY_CPU (timers) */
	__u8 name_len;
	char name[KTAP_MAX_PROBE_NAME + 1];	/* NUL-terminated, printable ASCII */
};

struct ktap_vm_counters {
	__u64 hits;
	__u64 budget_exhausted;
	__u64 runtime_errors;
	__u64 table_full;
	__u64 ring_dropped;
	__u64 mem_faults;	/* kernel/user reads that faulted */
};

struct ktap_vm *ktap_vm_load(const u8 *image, size_t len, struct ktap_vm_status *status);
u32 ktap_vm_probe_count(const struct ktap_vm *vm);
int ktap_vm_probe_get(const struct ktap_vm *vm, u32 index, struct ktap_vm_probe *out);
int ktap_vm_run(struct ktap_vm *vm, u16 func, void *hit);
void ktap_vm_counters(const struct ktap_vm *vm, struct ktap_vm_counters *out);
void ktap_vm_free(struct ktap_vm *vm);

/*
 * Callbacks. `hit` is the pointer given to ktap_vm_run. Integer context values are the native
 * register word sign-extended to 64 bits (`long`), so a 32-bit board's -EINVAL reads as -22.
 */
void *ktap_kalloc(size_t size, size_t align);
void ktap_kfree(void *ptr);
s64 ktap_hit_ctx(void *hit, u32 field);
u32 ktap_hit_comm(void *hit, u8 *buf, u32 len);
int ktap_emit(void *hit, const u8 *rec, u32 len);
u32 ktap_hit_stack(void *hit, u64 *out, u32 max);
int ktap_read_kernel(u64 addr, u8 *dst, u32 len);		/* 0, or -EFAULT */
int ktap_read_str(int user, u64 addr, u8 *dst, u32 max);	/* length without NUL, or -EFAULT */
void __noreturn ktap_rust_panic(void);

#endif /* KTAP_VM_H */
