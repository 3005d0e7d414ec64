// SPDX-License-Identifier: GPL-2.0
/*
 * ktap_dev.c - /dev/ktap: exclusive open, the ioctls, read of whole records, poll.
 * See ktap_uapi.h and protocol/src/kdev.rs for the contract.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/uaccess.h>

#include "ktap.h"

static atomic_t ktap_opened = ATOMIC_INIT(0);

static int ktap_open(struct inode *inode, struct file *f)
{
	if (atomic_cmpxchg(&ktap_opened, 0, 1))
		return -EBUSY;
	f->private_data = &ktap_session;
	return stream_open(inode, f);
}

/* Closing (or the agent dying) stops and unloads: nothing stays armed without an owner. */
static int ktap_release(struct inode *inode, struct file *f)
{
	struct ktap_session *s = f->private_data;

	mutex_lock(&s->mutex);
	ktap_session_unload(s);
	mutex_unlock(&s->mutex);
	atomic_set(&ktap_opened, 0);
	return 0;
}

static long ktap_ioctl_load(struct ktap_session *s, void __user *uarg)
{
	struct ktap_load_args args;
	int ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	ret = ktap_session_load(s, &args);
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long ktap_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct ktap_session *s = f->private_data;
	void __user *uarg = (void __user *)arg;
	struct ktap_kstats st;
	long ret;

	mutex_lock(&s->mutex);
	switch (cmd) {
	case KTAP_IOC_LOAD:
		ret = ktap_ioctl_load(s, uarg);
		break;
	case KTAP_IOC_START:
		ret = ktap_session_start(s);
		break;
	case KTAP_IOC_STOP:
		ret = ktap_session_stop(s);
		break;
	case KTAP_IOC_STATS:
		memset(&st, 0, sizeof(st));
		ret = ktap_session_stats(s, &st);
		if (!ret && copy_to_user(uarg, &st, sizeof(st)))
			ret = -EFAULT;
		break;
	case KTAP_IOC_UNLOAD:
		ktap_session_unload(s);
		ret = 0;
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&s->mutex);
	return ret;
}

/*
 * Whole records only. Blocks (interruptibly) until there are records, unless O_NONBLOCK; returns 0
 * once the program stopped and the ring is drained, or when nothing is loaded. Records are moved to
 * the bounce buffer under the spinlock and copied to user space outside it.
 */
static ssize_t ktap_read(struct file *f, char __user *buf, size_t count, loff_t *ppos)
{
	struct ktap_session *s = f->private_data;
	unsigned long flags;
	int n;

	for (;;) {
		mutex_lock(&s->mutex);
		if (s->state == KTAP_EMPTY) {
			mutex_unlock(&s->mutex);
			return 0;
		}
		n = 0;
		if (ktap_enter(s, &flags)) {
			n = ktap_ring_read(&s->ring, s->bounce, min_t(size_t, count, KTAP_BOUNCE_SIZE));
			ktap_exit(s, flags);
		}
		if (n > 0 && copy_to_user(buf, s->bounce, n))
			n = -EFAULT;	/* the records are lost; the reader passed a bad buffer */
		if (n != 0 || s->ending) {
			mutex_unlock(&s->mutex);
			return n;
		}
		mutex_unlock(&s->mutex);
		if (f->f_flags & O_NONBLOCK)
			return -EAGAIN;
		if (wait_event_interruptible(s->wq, ktap_session_readable(s)))
			return -ERESTARTSYS;
	}
}

static __poll_t ktap_poll(struct file *f, poll_table *pt)
{
	struct ktap_session *s = f->private_data;

	poll_wait(f, &s->wq, pt);
	return ktap_session_readable(s) ? EPOLLIN | EPOLLRDNORM : 0;
}

static const struct file_operations ktap_fops = {
	.owner = THIS_MODULE,
	.open = ktap_open,
	.release = ktap_release,
	.read = ktap_read,
	.poll = ktap_poll,
	.unlocked_ioctl = ktap_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl = compat_ptr_ioctl,
#endif
	.llseek = no_llseek,
};

static struct miscdevice ktap_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "ktap",
	.fops = &ktap_fops,
	.mode = 0600,
};

int ktap_dev_register(void)
{
	return misc_register(&ktap_misc);
}

void ktap_dev_unregister(void)
{
	misc_deregister(&ktap_misc);
}
