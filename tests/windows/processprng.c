/* A stand-in for Windows' bcryptprimitives.dll, for running under Wine 8.0, which lacks it.
 * Rust's standard library (1.78 and later) takes its random bytes from ProcessPrng, exported by
 * that DLL since Windows 10; here ProcessPrng is RtlGenRandom (advapi32's SystemFunction036),
 * which Wine has. Built with mingw-w64 by .ci/windows and put beside the executables; never
 * committed as a binary, never shipped: on Windows itself the system's DLL is used. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
