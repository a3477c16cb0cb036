/* Benign payload DLL for the reflective-loader scenario.
 *
 * It does what a first-stage implant does after being mapped, minus anything harmful: its
 * exported Beacon() makes a small stage buffer executable, then opens a TCP connection to the
 * loopback "C2" port and closes it. The
 * document host maps it by hand (no LoadLibrary), so every instruction here runs from memory
 * that no file backs.
 */
#define WINLAB_IMPL
#include <winsock2.h>
#include "winlab.h"

static volatile LONG g_attached;

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved) {
    (void)inst;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) g_attached = 1;
    return TRUE;
}

__declspec(dllexport) DWORD WINAPI Beacon(LPVOID param) {
    (void)param;
    /* a stage buffer made executable by code that no file backs (what a beacon's next stage
     * or sleep mask does): its allocation's caller is unbacked memory */
    unsigned char *stage = VirtualAlloc(NULL, 0x2000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (stage) {
        stage[0] = 0xC3; /* ret */
        DWORD old = 0;
        VirtualProtect(stage, 0x2000, PAGE_EXECUTE_READ, &old);
    }
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 1;
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) return 2;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = (unsigned short)(((WINLAB_C2_PORT & 0xff) << 8) | (WINLAB_C2_PORT >> 8));
    sa.sin_addr.s_addr = 0x0100007f; /* 127.0.0.1 in network byte order */
    connect(s, (struct sockaddr *)&sa, sizeof sa);
    closesocket(s);
    return g_attached ? 0 : 3;
}
