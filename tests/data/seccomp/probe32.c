/* 32-bit x86 probe for the ipv6-kernel-off seccomp profile (tests/test_seccomp.py).
 *
 * Freestanding (gcc -m32 -static -nostdlib), so it needs no i386 libc: it makes
 * its system calls with int $0x80 and prints "@@name=ok" or "@@name=errno N".
 * Under a profile that leaves out the i386 ABI it is killed at its first call.
 */
static long sys(long nr, long a, long b, long c, long d)
{
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
    return rc;
}

static void report(const char *name, long rc)
{
    char line[80];
    int n = 0;
    line[n++] = '@';
    line[n++] = '@';
    while (*name)
        line[n++] = *name++;
    line[n++] = '=';
    if (rc < 0 && rc > -4096) {
        const char *e = "errno ";
        char digits[8];
        int k = 0;
        unsigned long v = (unsigned long)-rc;
        while (*e)
            line[n++] = *e++;
        do {
            digits[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (k)
            line[n++] = digits[--k];
    } else {
        line[n++] = 'o';
        line[n++] = 'k';
    }
    line[n++] = '\n';
    sys(4 /* write */, 1, (long)line, n, 0);
}

void _start(void)
{
    int pair[2];
    long inet[3] = {2, 1, 0};  /* socketcall(SYS_SOCKET, {AF_INET, SOCK_STREAM, 0}) */
    long inet6[3] = {10, 1, 0};
    report("getpid", sys(20, 0, 0, 0, 0));
    report("socket-inet", sys(359, 2, 1, 0, 0));
    report("socket-inet6", sys(359, 10, 1, 0, 0));
    report("socketpair-unix", sys(360, 1, 1, 0, (long)pair));
    report("socketpair-inet6", sys(360, 10, 1, 0, (long)pair));
    report("socketcall-inet", sys(102, 1, (long)inet, 0, 0));
    report("socketcall-inet6", sys(102, 1, (long)inet6, 0, 0));
    sys(1 /* exit */, 0, 0, 0, 0);
    for (;;)
        ;
}
