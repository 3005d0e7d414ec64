/* Calling-convention fixture for tests/symbols_abi.rs: compiled per arch with -g, linked as a tiny
 * kernel-like ELF (build-id, `_text`), then the DWARF parameter locations at each function's entry
 * are checked against the arch's argument registers. `sink` keeps every parameter alive. */

void sink(long v);

void _text(void) {}

__attribute__((noinline)) void eight(long a, long b, long c, long d, long e, long f, long g, long h)
{
	sink(a); sink(b); sink(c); sink(d); sink(e); sink(f); sink(g); sink(h);
	sink(a + b + c + d + e + f + g + h);
}

__attribute__((noinline)) void pair(int a, long long b, int c)
{
	sink(a); sink((long)b); sink(c);
	sink(a + (long)b + c);
}

struct pt { int x, y; };

__attribute__((noinline)) void ptr(struct pt *p, const char *s)
{
	sink(p->x); sink((long)s); sink(p->y);
}

__attribute__((noinline)) void byval(struct pt p, int c)
{
	sink(p.x); sink(p.y); sink(c);
}

void sink(long v) { __asm__ volatile("" : : "r"(v) : "memory"); }
