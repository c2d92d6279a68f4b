/* vsc-pkcs11 C shim: the exported symbols, the function tables, Python start-up and the guards that
 * keep the host process safe (version check, RTLD_GLOBAL promotion, fork handling, ready flag).
 * Every PKCS#11 semantic lives in Python; this file only decides whether Python may be entered.
 * VSC_* macros are defined by native/build.py. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* 1 while C_Initialize has succeeded in this process (cleared by C_Finalize and in a forked child). */
static volatile int vsc_live = 0;
/* 0: start-up not tried, 1: Python and the glue are up, -1: start-up failed (refuse forever). */
static int vsc_boot_state = 0;
static int vsc_own_python = 0;
static pthread_mutex_t vsc_boot_lock = PTHREAD_MUTEX_INITIALIZER;
static PyGILState_STATE vsc_fork_gil;

static void vsc_log(const char *what, const char *detail)
{
    fprintf(stderr, "vsc-pkcs11: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

#define VSC_GUARD() do { if (!vsc_live) return CKR_CRYPTOKI_NOT_INITIALIZED; } while (0)

/* Host safety around every call into Python.
 * - A Python host's cyclic GC may run in any allocation of the module's Python code, and with it any
 *   finalizer of the host, which may wait on a lock the host holds around this very call (PyKCS11's
 *   __del__ unloads under the lock its load() holds around C_Initialize) or call back into the module
 *   half-way through a state change. So, when the host is Python, the GC is off while any call is in
 *   flight: the first call to enter turns it off, the last to leave turns it back on if it was on. The
 *   counter is only touched with the GIL held. Objects are still freed by reference counting; the cycles
 *   a call leaves are collected at the host's next allocation, in the host's own code. A C host (the
 *   module started Python itself) has no finalizers of its own and keeps the GC running.
 * - Host Python code can still run inside a call in other ways (a signal handler, a profiler hook, a host
 *   that turns the GC on from another thread). A call that enters the module again from the same thread
 *   is answered CKR_FUNCTION_FAILED at once: it never waits on the outer call and never sees its
 *   half-made state. */
static __thread int vsc_depth = 0;
static int vsc_gc_calls = 0;
static int vsc_gc_was_on = 0;
/* A child forked while other threads were inside calls: their count is void there; the GC they turned off
 * goes back on at once when the forking thread holds the GIL (os.fork), else at the child's first call. */
static int vsc_gc_on_in_child = 0;

typedef struct { PyGILState_STATE gil; int gc; } vsc_call;

static void vsc_gc_hold(vsc_call *c)
{
    c->gc = !vsc_own_python;
    if (c->gc) {
        c->gil = PyGILState_Ensure();
        if (vsc_gc_calls++ == 0) {
            vsc_gc_was_on = PyGC_Disable() || vsc_gc_on_in_child;
            vsc_gc_on_in_child = 0;
        }
    }
}

static void vsc_gc_release(vsc_call *c)
{
    if (c->gc) {
        if (--vsc_gc_calls == 0 && vsc_gc_was_on)
            PyGC_Enable();
        PyGILState_Release(c->gil);
    }
}

static int vsc_enter(vsc_call *c)
{
    if (vsc_depth)
        return 0;
    vsc_depth = 1;
    vsc_gc_hold(c);
    return 1;
}

static void vsc_leave(vsc_call *c)
{
    vsc_gc_release(c);
    vsc_depth = 0;
}

#define VSC_CALL(expr) do { \
        vsc_call vsc_c; CK_RV vsc_rv; \
        if (!vsc_enter(&vsc_c)) return CKR_FUNCTION_FAILED; \
        vsc_rv = (expr); \
        vsc_leave(&vsc_c); \
        return vsc_rv; \
    } while (0)

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

/* What os.fork() does around fork(), for hosts that fork while another thread may hold the GIL. */
static void vsc_before_fork(void)
{
    if (vsc_own_python) {
        vsc_fork_gil = PyGILState_Ensure();
        PyOS_BeforeFork();
    }
}

static void vsc_after_fork_parent(void)
{
    if (vsc_own_python) {
        PyOS_AfterFork_Parent();
        PyGILState_Release(vsc_fork_gil);
    }
}

static void vsc_after_fork_child(void)
{
    vsc_live = 0;
    if (vsc_gc_calls) { /* only ever non-zero in a Python host */
        vsc_gc_calls = 0;
        if (vsc_gc_was_on) {
            if (PyGILState_Check())
                PyGC_Enable();
            else
                vsc_gc_on_in_child = 1;
        }
    }
    if (vsc_own_python) {
        PyOS_AfterFork_Child();
        PyGILState_Release(vsc_fork_gil);
    }
}

static int vsc_boot_locked(void)
{
    vsc_call c;
    int started;
    /* A host that already runs another CPython would bind our Py_* calls to it: refuse. */
    const char *(*host_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (host_version) {
        const char *v = host_version();
        size_t n = strlen(VSC_PY_MAJMIN);
        if (strncmp(v, VSC_PY_MAJMIN, n) != 0 || v[n] != '.') {
            vsc_log("this module was built for Python " VSC_PY_MAJMIN " but the host process runs Python", v);
            return -1;
        }
    }
    /* Extension modules are not linked against libpython: make its symbols global before they load. */
    if (!dlopen(VSC_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) && !host_version)
        vsc_log("could not promote " VSC_LIBPYTHON " to RTLD_GLOBAL", dlerror());

    if (!Py_IsInitialized()) {
        PyConfig config;
        PyStatus status;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.use_environment = 0;
        config.user_site_directory = 0;
        /* The interpreter the package was installed into: finds its venv and site-packages. */
        status = PyConfig_SetBytesString(&config, &config.program_name, VSC_PYTHON_EXE);
        if (!PyStatus_Exception(status))
            status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            vsc_log("Python start-up failed", status.err_msg);
            return -1;
        }
        vsc_own_python = 1;
        PyEval_SaveThread();
    }
    pthread_atfork(vsc_before_fork, vsc_after_fork_parent, vsc_after_fork_child);
    /* The glue's imports allocate most of all: a Python host's GC stays off for them too. */
    vsc_gc_hold(&c);
    started = cffi_start_python();
    vsc_gc_release(&c);
    if (started != 0) {
        vsc_log("the Python side of the module failed to start (see the messages above)", NULL);
        return -1;
    }
    return 1;
}

static int vsc_boot(void)
{
    pthread_mutex_lock(&vsc_boot_lock);
    if (vsc_boot_state == 0)
        vsc_fill_info();
    if (vsc_boot_state == 0)
        vsc_boot_state = vsc_boot_locked();
    pthread_mutex_unlock(&vsc_boot_lock);
    return vsc_boot_state;
}

/* Called by the glue once its functions are registered: proves the init code ran to the end. */
static int vsc_glue_ready = 0;
static void vsc_mark_ready(void) { vsc_glue_ready = 1; }

VSC_PY_DECLS

static CK_RV w_C_Initialize(CK_VOID_PTR pInitArgs)
{
    CK_RV rv;
    vsc_call c;
    int booted;
    if (vsc_depth)
        return CKR_FUNCTION_FAILED;
    vsc_depth = 1; /* start-up runs Python too: a re-entry must not wait on the boot lock it holds */
    booted = vsc_boot() == 1 && vsc_glue_ready;
    vsc_depth = 0;
    if (!booted)
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
