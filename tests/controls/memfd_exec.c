/* Positive control: fileless execution. Writes an ELF executable embedded in its own .rodata
 * (ready_child, our own benign program) into a memfd and runs it with fexecve(), which glibc
 * issues as execveat(fd, "", argv, envp, AT_EMPTY_PATH). The new image announces itself with
 * the READY line, so the pid in READY is this process (exec keeps the pid).
 * Options: --connect PORT  connect() to 127.0.0.1:PORT before exec (refusal is fine). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef CHILD_PATH
#error "build with -DCHILD_PATH='\"/abs/path/ready_child\"'"
#endif

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global child_image\n"
        "child_image:\n"
        ".incbin \"" CHILD_PATH "\"\n"
        ".global child_image_end\n"
        "child_image_end:\n"
        ".previous\n");
extern const unsigned char child_image[], child_image_end[];
extern char **environ;

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--connect") == 0)
            port = atoi(argv[i + 1]);
    int fd = memfd_create("unbacked-control", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        return 1;
    }
    size_t len = (size_t)(child_image_end - child_image);
    if (write(fd, child_image, len) != (ssize_t)len) {
        perror("write");
        return 1;
    }
    if (port > 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)connect(s, (struct sockaddr *)&sa, sizeof sa);
        close(s);
    }
    char *child_argv[] = {"unbacked-control", "memfd-exec", NULL};
    fexecve(fd, child_argv, environ);
    perror("fexecve");
    return 1;
}
