/* vsc-pkcs11 C shim: the exported symbols and the function tables. Python start-up and the guards that
 * keep the host process safe (version check, RTLD_GLOBAL promotion, fork handling, ready flag) are
 * host_guard.c's, pasted where VSC_HOST_GUARD stands; this file adds PKCS#11's initialised state.
 * Every PKCS#11 semantic lives in Python; this file only decides whether Python may be entered.
 * VSC_* macros are defined by native/build.py. */
#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_FUNCTION_FAILED 0x6UL
#define CKR_FUNCTION_NOT_SUPPORTED 0x54UL
#define CKR_FUNCTION_NOT_PARALLEL 0x51UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL

typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;

#define VSC_LOG_PREFIX "vsc-pkcs11"
VSC_HOST_GUARD

/* 1 while C_Initialize has succeeded in this process (cleared by C_Finalize and in a forked child). */
static volatile int vsc_live = 0;
#define VSC_GUARD() do { if (!vsc_live) return CKR_CRYPTOKI_NOT_INITIALIZED; } while (0)

#define VSC_CALL(expr) VSC_CALL_AS(CK_RV, CKR_FUNCTION_FAILED, expr)

/* C_GetInfo is a constant answer: built once, copied without entering Python. */
static CK_INFO vsc_info;

static void vsc_fill_info(void)
{
    static const char manufacturer[] = "vsc-provider";
    static const char description[] = "vsc-provider virtual smart card";
    memset(&vsc_info, 0, sizeof(vsc_info));
    vsc_info.cryptokiVersion.major = 2;
    vsc_info.cryptokiVersion.minor = 40;
    memset(vsc_info.manufacturerID, ' ', sizeof(vsc_info.manufacturerID));
    memcpy(vsc_info.manufacturerID, manufacturer, sizeof(manufacturer) - 1);
    memset(vsc_info.libraryDescription, ' ', sizeof(vsc_info.libraryDescription));
    memcpy(vsc_info.libraryDescription, description, sizeof(description) - 1);
    vsc_info.libraryVersion.major = VSC_LIB_MAJOR;
    vsc_info.libraryVersion.minor = VSC_LIB_MINOR;
}

static void vsc_on_first_boot(void) { vsc_fill_info(); }
static void vsc_on_fork_child(void) { vsc_live = 0; }

VSC_PY_DECLS

static CK_RV w_C_Initialize(CK_VOID_PTR pInitArgs)
{
    CK_RV rv;
    vsc_call c;
    int started = vsc_start();
    if (started < 0)
        return CKR_FUNCTION_FAILED;
    if (!started)
        return CKR_GENERAL_ERROR;
    if (!vsc_enter(&c))
        return CKR_FUNCTION_FAILED;
    rv = py_C_Initialize(pInitArgs);
    if (rv == CKR_OK)
        vsc_live = 1;
    vsc_leave(&c);
    return rv;
}

static CK_RV w_C_Finalize(CK_VOID_PTR pReserved)
{
    CK_RV rv;
    vsc_call c;
    VSC_GUARD();
    if (!vsc_enter(&c))
        return CKR_FUNCTION_FAILED;
    rv = py_C_Finalize(pReserved);
    if (rv == CKR_OK)
        vsc_live = 0;
    vsc_leave(&c);
    return rv;
}

VSC_WRAPPERS

static CK_RV w_C_GetInfo(CK_INFO *pInfo)
{
    if (!vsc_live)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo)
        return CKR_ARGUMENTS_BAD;
    *pInfo = vsc_info;
    return CKR_OK;
}

static CK_RV w_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_BYTE_PTR pPin,
                           CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
    (void)pUsername;
    (void)ulUsernameLen; /* cards have one user; the name is not checked */
    VSC_GUARD();
    VSC_CALL(py_C_Login(hSession, userType, pPin, ulPinLen));
}

CK_RV C_GetFunctionList(void **ppFunctionList);
CK_RV C_GetInterfaceList(void *pInterfacesList, CK_ULONG_PTR pulCount);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION *pVersion, void **ppInterface, CK_FLAGS flags);

VSC_TABLES

/* The first entry is what a caller asking for no particular version gets: 3.0, as before 3.2 existed here
 * (p11-kit, OpenSC and NSS know the 3.0 table). A caller that wants the KEM functions asks for 3.2 by
 * version, as python-pkcs11 does. */
#define VSC_INTERFACES 3
static CK_INTERFACE vsc_interfaces[VSC_INTERFACES] = {
    {(CK_CHAR *)"PKCS 11", &vsc_functions_3_0, 0},
    {(CK_CHAR *)"PKCS 11", &vsc_functions_3_2, 0},
    {(CK_CHAR *)"PKCS 11", &vsc_functions_2_40, 0},
};

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(void **ppFunctionList)
{
    if (!ppFunctionList)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &vsc_functions_2_40;
    return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetInterfaceList(void *pInterfacesList, CK_ULONG_PTR pulCount)
{
    if (!pulCount)
        return CKR_ARGUMENTS_BAD;
    if (!pInterfacesList) {
        *pulCount = VSC_INTERFACES;
        return CKR_OK;
    }
    if (*pulCount < VSC_INTERFACES) {
        *pulCount = VSC_INTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(pInterfacesList, vsc_interfaces, sizeof(vsc_interfaces));
    *pulCount = VSC_INTERFACES;
    return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION *pVersion,
                                                            void **ppInterface, CK_FLAGS flags)
{
    int i;
    if (!ppInterface)
        return CKR_ARGUMENTS_BAD;
    if (pInterfaceName && strcmp((const char *)pInterfaceName, "PKCS 11") != 0)
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < VSC_INTERFACES; i++) {
        CK_VERSION *v = (CK_VERSION *)vsc_interfaces[i].pFunctionList;
        if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor))
            continue;
        if ((flags & vsc_interfaces[i].flags) != flags)
            continue;
        *ppInterface = &vsc_interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
