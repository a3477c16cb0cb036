/* Shared helpers for the winlab programs: freestanding (no C runtime), so an emulator's API
 * trace shows only the calls the program itself makes. */
#ifndef WINLAB_H
#define WINLAB_H
#include <windows.h>

/* gcc may turn copy/clear loops into calls to these; without a C runtime we provide them. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

#ifdef WINLAB_IMPL
void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}
#endif

/* The loopback "C2" every triggered variant connects to (127.0.0.1:WINLAB_C2_PORT). */
#ifndef WINLAB_C2_PORT
#define WINLAB_C2_PORT 4444
#endif

#endif
