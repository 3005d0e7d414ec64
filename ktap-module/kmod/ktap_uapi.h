/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ktap_uapi.h - the /dev/ktap interface. Mirrors protocol/src/kdev.rs exactly (a host test,
 * ktap-module/vm/tests/uapi_header.rs, parses this file and compares).
 *
 * Command numbers are plain constants, not _IOW() encodings: the direction/size bits differ between
 * ARM/x86 and MIPS/PowerPC and the agent is one source for all of them. Every struct has fixed-width
 * fields and 8-byte alignment, so its layout is the same on every arch.
 */
#ifndef KTAP_UAPI_H
#define KTAP_UAPI_H

#include <linux/types.h>

#define KTAP_IOC_LOAD		0x6b01	/* struct ktap_load_args * */
#define KTAP_IOC_START		0x6b02
#define KTAP_IOC_STOP		0x6b03
#define KTAP_IOC_STATS		0x6b04	/* struct ktap_kstats * */
#define KTAP_IOC_UNLOAD		0x6b05

/* Refusal codes the kernel sets in ktap_load_args.code (protocol wire::codes). */
#define KTAP_E_ATTACH_FAILED	0x301	/* offset = probe index, detail = -errno */
#define KTAP_E_BUILD_ID_MISMATCH 0x302
#define KTAP_E_BUSY		0x303
#define KTAP_E_NO_MEMORY	0x304
#define KTAP_E_NO_TRACEPOINT	0x305	/* offset = probe index */
#define KTAP_E_KERNEL		0x306	/* detail = -errno */
#define KTAP_E_IMAGE_TOO_LARGE	0x104	/* ImageError::TooLarge */

struct ktap_load_args {
	__u64 image;		/* user address of the image */
	__u32 len;
	__u32 flags;		/* must be 0 */
	__u32 code;		/* out: refusal reason, 0 on success */
	__u32 offset;		/* out: image offset or probe index */
	__s32 detail;		/* out: -errno or extra detail */
	__u32 nprobes;		/* out: probes to attach */
};

struct ktap_kstats {
	__u64 hits;
	__u64 recursion_skipped;
	__u64 budget_exhausted;
	__u64 runtime_errors;
	__u64 table_full;
	__u64 ring_dropped;
	__u64 kernel_missed;
	__u64 mem_faults;
};

#endif /* KTAP_UAPI_H */
