/*
 * Test-only stand-in for Windows' bcryptprimitives.dll, for running the
 * cross-built agent under Debian 12's Wine 8.0 in packaging/test/verify-msi.sh.
 *
 * Rust >= 1.78 gets random bytes from ProcessPrng in bcryptprimitives.dll,
 * which real Windows (10 and later) has and Wine 8.0 does not. This stub
 * exports ProcessPrng on top of RtlGenRandom (advapi32 SystemFunction036).
 * It is never shipped: the MSI contains only baton-agent.exe and the example
 * config.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       bcryptprimitives-stub.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
