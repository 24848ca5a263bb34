/* socket() through the C library, for tests/test_seccomp.py: shows which system
 * call a libc uses. Built for 32-bit x86 (gcc -m32 -static) where an i386 libc
 * is installed: Debian 12's glibc goes through socketcall(2) there.
 * Prints "@@socket-inet=ok" or "@@socket-inet=errno N", and the same for inet6.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

static void try_family(const char *name, int family)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        printf("@@%s=errno %d\n", name, errno);
    else
        printf("@@%s=ok\n", name);
}

int main(void)
{
    try_family("socket-inet", AF_INET);
    try_family("socket-inet6", AF_INET6);
    return 0;
}
