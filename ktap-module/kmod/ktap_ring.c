// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_ring.c - the record ring: a power-of-two byte ring holding whole records back to back.
 * Writers add a record only if all of it fits (a full ring drops it; the VM counts the drop);
 * readers take only whole records. Every call is made under the session lock.
 */
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "ktap.h"

#define KTAP_RECORD_HEADER	6

int ktap_ring_alloc(struct ktap_ring *r, u32 size)
{
	if (!is_power_of_2(size))
		return -EINVAL;
	r->buf = vmalloc(size);
	if (!r->buf)
		return -ENOMEM;
	r->size = size;
	r->head = 0;
	r->tail = 0;
	return 0;
}

void ktap_ring_free(struct ktap_ring *r)
{
	vfree(r->buf);
	r->buf = NULL;
	r->size = 0;
	r->head = 0;
	r->tail = 0;
}

static void ring_in(struct ktap_ring *r, u32 pos, const u8 *src, u32 len)
{
	u32 off = pos & (r->size - 1);
	u32 first = min(len, r->size - off);

	memcpy(r->buf + off, src, first);
	memcpy(r->buf, src + first, len - first);
}

static void ring_out(const struct ktap_ring *r, u32 pos, u8 *dst, u32 len)
{
	u32 off = pos & (r->size - 1);
	u32 first = min(len, r->size - off);

	memcpy(dst, r->buf + off, first);
	memcpy(dst + first, r->buf, len - first);
}

bool ktap_ring_write(struct ktap_ring *r, const u8 *rec, u32 len)
{
	if (!r->buf || len < KTAP_RECORD_HEADER || len > r->size - (r->head - r->tail))
		return false;
	ring_in(r, r->head, rec, len);
	r->head += len;
	return true;
}

/* Move whole records (at most max bytes) to out. Returns the bytes moved, or -EMSGSIZE if the
 * first record does not fit in max. */
int ktap_ring_read(struct ktap_ring *r, u8 *out, u32 max)
{
	u32 n = 0;

	while (r->head != r->tail) {
		u32 used = r->head - r->tail;
		u8 hdr[2];
		u32 len;

		ring_out(r, r->tail, hdr, sizeof(hdr));
		len = hdr[0] | (u32)hdr[1] << 8;
		if (WARN_ON_ONCE(len < KTAP_RECORD_HEADER || len > used)) {
			r->tail = r->head;	/* cannot happen: writers add whole records */
			break;
		}
		if (len > max - n)
			return n ? n : -EMSGSIZE;
		ring_out(r, r->tail, out + n, len);
		r->tail += len;
		n += len;
	}
	return n;
}

bool ktap_ring_empty(const struct ktap_ring *r)
{
	return READ_ONCE(r->head) == READ_ONCE(r->tail);
}
