/* vsc-minidriver C shim: the exported CardAcquireContext and the card-edge functions it hands out in
 * CARD_DATA. Python start-up and the host-safety guards are host_guard.c's (pasted at VSC_HOST_GUARD), shared
 * with the PKCS#11 library: a host that is not Python gets an interpreter of its own, a Python host's GC is
 * held off during calls, re-entry is refused, fork is handled as os.fork does it. Every card-edge semantic
 * lives in Python (md_glue.py -> vsc_provider.minidriver); this file checks pointers and enters Python. */
#define SCARD_F_INTERNAL_ERROR 0x80100001U
#define SCARD_E_INVALID_PARAMETER 0x80100004U
#define SCARD_E_UNEXPECTED 0x8010001FU
#define ERROR_NOT_ENOUGH_MEMORY 0x00000008U

#define VSC_LOG_PREFIX "vsc-minidriver"
VSC_HOST_GUARD

/* A card context lives in Python, keyed by pvVendorSpecific and the process that made it: nothing to reset
 * here after fork (the child's calls on its parent's contexts are refused there). */
static void vsc_on_first_boot(void) {}
static void vsc_on_fork_child(void) {}

/* A call re-entering the library from its own thread (a Python host's signal handler, say) is refused. */
#define VSC_MD_CALL(expr) VSC_CALL_AS(DWORD, SCARD_E_UNEXPECTED, expr)

VSC_PY_DECLS

/* Output buffers the card hands over are the caller's: allocated with its pfnCspAlloc, freed with its
 * pfnCspFree. An empty answer still gets a (one-byte) allocation, so the caller always has one to free. */
static DWORD vsc_md_give(PCARD_DATA pCardData, const char *data, DWORD size, PBYTE *out)
{
    PBYTE buffer;
    if (!out)
        return SCARD_E_INVALID_PARAMETER;
    *out = NULL;
    buffer = (PBYTE)pCardData->pfnCspAlloc(size ? size : 1);
    if (!buffer)
        return ERROR_NOT_ENOUGH_MEMORY;
    if (size)
        memcpy(buffer, data, size);
    *out = buffer;
    return 0;
}

VSC_MD_WRAPPERS

static void vsc_md_fill(PCARD_DATA pCardData)
{
VSC_MD_FILL}

__attribute__((visibility("default"))) DWORD CardAcquireContext(PCARD_DATA pCardData, DWORD dwFlags)
{
    DWORD rv;
    vsc_call c;
    int started;
    if (!pCardData)
        return SCARD_E_INVALID_PARAMETER;
    started = vsc_start();
    if (started < 0)
        return SCARD_E_UNEXPECTED;
    if (!started)
        return SCARD_F_INTERNAL_ERROR;
    if (!vsc_enter(&c))
        return SCARD_E_UNEXPECTED;
    rv = py_CardAcquireContext(pCardData, dwFlags);
    vsc_leave(&c);
    if (rv == 0)
        vsc_md_fill(pCardData); /* up to the CARD_DATA version the caller's structure has */
    return rv;
}
