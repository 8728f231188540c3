/* Wine 8.0 lacks bcryptprimitives.dll!ProcessPrng (added in Wine 8.13), which Rust's std
 * imports for its random numbers: every Rust exe then fails to start (exit 53). This stand-in
 * forwards to BCryptGenRandom with the system RNG. Only for running tests under Wine; never
 * shipped. Built by scripts/wine-test.sh with mingw-w64. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
