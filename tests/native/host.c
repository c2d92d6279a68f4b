/* A plain C host for the module: loads it RTLD_LOCAL like NSS and p11-kit do, and exercises start-up,
 * interfaces, finalize/reload, fork with a busy thread, and a fake foreign Python. Prints one line per
 * check ("name value") for the test to read. */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The PKCS#11 declarations are the vendored OASIS headers (native/oasis/), with the Unix platform macros. */
#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (*name)
#define NULL_PTR NULL
#include "pkcs11.h"

#ifdef FAKE_PYTHON
/* Pretend to be a host that runs another CPython: the module must refuse, not hang. */
__attribute__((visibility("default"))) const char *Py_GetVersion(void) { return "3.99.0 (fake host)"; }
#endif

static CK_FUNCTION_LIST_PTR load(const char *path, void **handle)
{
    CK_C_GetFunctionList get;
    CK_FUNCTION_LIST_PTR t = NULL;
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) { printf("dlopen-error %s\n", dlerror()); exit(2); }
    get = (CK_C_GetFunctionList)dlsym(*handle, "C_GetFunctionList");
    if (!get || get(&t) != CKR_OK) { printf("getfunctionlist-failed\n"); exit(2); }
    return t;
}

static CK_RV slot_count(CK_FUNCTION_LIST_PTR t, CK_ULONG *n)
{
    return t->C_GetSlotList(CK_TRUE, NULL, n);
}

static volatile int stop_busy = 0;
static void *busy(void *arg)
{
    CK_FUNCTION_LIST_PTR t = arg;
    CK_ULONG n;
    while (!stop_busy) slot_count(t, &n);
    return NULL;
}

static CK_SESSION_HANDLE sign_session;
static CK_OBJECT_HANDLE sign_key;
static volatile long signatures = 0;

static void *busy_signer(void *arg)
{
    CK_FUNCTION_LIST_PTR t = arg;
    CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
    unsigned char sig[512];
    while (!stop_busy) {
        CK_ULONG len = sizeof(sig);
        if (t->C_SignInit(sign_session, &mech, sign_key) != 0) break;
        if (t->C_Sign(sign_session, (unsigned char *)"data", 4, sig, &len) != 0) break;
        signatures++;
    }
    return NULL;
}

static int prepare_signer(CK_FUNCTION_LIST_PTR t, const char *pin)
{
    CK_SLOT_ID slots[4];
    CK_ULONG count = 4, found = 0;
    CK_OBJECT_CLASS klass = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &klass, sizeof(klass)};
    if (t->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK || count < 1) return -1;
    if (t->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &sign_session) != CKR_OK) return -2;
    if (t->C_Login(sign_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)) != CKR_OK) return -3;
    if (t->C_FindObjectsInit(sign_session, &tmpl, 1) != CKR_OK) return -4;
    if (t->C_FindObjects(sign_session, &sign_key, 1, &found) != CKR_OK || found != 1) return -5;
    t->C_FindObjectsFinal(sign_session);
    return 0;
}

static void *init_thread(void *arg)
{
    CK_FUNCTION_LIST_PTR t = arg;
    return (void *)(long)t->C_Initialize(NULL);
}

int main(int argc, char **argv)
{
    void *h;
    CK_FUNCTION_LIST_PTR t = load(argv[1], &h);
    const char *mode = argv[2];
    CK_ULONG n = 0;
    CK_RV rv;
    if (strcmp(mode, "concurrent-init") == 0) {
        /* Two threads race into the very first C_Initialize (Python is not started yet). */
        pthread_t a, b;
        void *ra, *rb;
        pthread_create(&a, NULL, init_thread, t);
        pthread_create(&b, NULL, init_thread, t);
        pthread_join(a, &ra);
        pthread_join(b, &rb);
        printf("results %ld %ld\n", (long)ra < (long)rb ? (long)ra : (long)rb, (long)ra < (long)rb ? (long)rb : (long)ra);
        rv = slot_count(t, &n);
        printf("slots %lu %lu\n", rv, n);
        return 0;
    }
    rv = t->C_Initialize(NULL);
    printf("initialize %lu\n", rv);
    fflush(stdout);
    if (strcmp(mode, "version") == 0)
        return 0;
    rv = slot_count(t, &n);
    printf("slots %lu %lu\n", rv, n);
    printf("initialize-again %lu\n", t->C_Initialize(NULL));

    if (strcmp(mode, "interfaces") == 0) {
        CK_C_GetInterface gi = (CK_C_GetInterface)dlsym(h, "C_GetInterface");
        CK_C_GetInterfaceList gl = (CK_C_GetInterfaceList)dlsym(h, "C_GetInterfaceList");
        CK_INTERFACE *iface = NULL, list[4];
        CK_VERSION v3 = {3, 0}, v32 = {3, 2}, v2 = {2, 40}, v9 = {9, 9};
        CK_ULONG count = 0;
        rv = gl(NULL, &count);
        printf("list-count %lu %lu\n", rv, count);
        count = 1;
        rv = gl(list, &count);
        printf("list-short %lu %lu\n", rv, count);
        count = 4;
        rv = gl(list, &count);
        printf("list-full %lu %lu\n", rv, count);
        rv = gi((unsigned char *)"PKCS 11", NULL, &iface, 0);
        printf("default %lu %d %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->pFunctionList)->major : -1,
               iface ? ((CK_VERSION *)iface->pFunctionList)->minor : -1);
        iface = NULL;
        rv = gi(NULL, &v2, &iface, 0);
        printf("v240 %lu %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->pFunctionList)->minor : -1);
        iface = NULL;
        rv = gi((unsigned char *)"PKCS 11", &v3, &iface, 0);
        printf("v30 %lu %d\n", rv, iface != NULL);
        iface = NULL;
        rv = gi((unsigned char *)"PKCS 11", &v32, &iface, 0);
        printf("v32 %lu %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->pFunctionList)->minor : -1);
        printf("unknown-name %lu\n", gi((unsigned char *)"Vendor X", NULL, &iface, 0));
        printf("unknown-version %lu\n", gi((unsigned char *)"PKCS 11", &v9, &iface, 0));
        printf("fork-safe %lu\n", gi((unsigned char *)"PKCS 11", NULL, &iface, CKF_INTERFACE_FORK_SAFE));
        printf("null-out %lu\n", gi((unsigned char *)"PKCS 11", NULL, NULL, 0));
    }

    if (strcmp(mode, "reload") == 0) {
        int i;
        for (i = 0; i < 3; i++) {
            printf("finalize %lu\n", t->C_Finalize(NULL));
            printf("after-finalize %lu\n", slot_count(t, &n));
            dlclose(h);
            t = load(argv[1], &h);
            printf("reinitialize %lu\n", t->C_Initialize(NULL));
            rv = slot_count(t, &n);
            printf("slots %lu %lu\n", rv, n);
        }
    }

    if (strcmp(mode, "sign-finalize") == 0) { /* argv[3] PIN, argv[4] count: the audit log's C_Finalize write */
        CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
        unsigned char sig[512];
        long i, count = atol(argv[4]), ok = 0;
        printf("prepare %d\n", prepare_signer(t, argv[3]));
        for (i = 0; i < count; i++) {
            CK_ULONG len = sizeof(sig);
            if (t->C_SignInit(sign_session, &mech, sign_key) == 0
                && t->C_Sign(sign_session, (unsigned char *)"data", 4, sig, &len) == 0)
                ok++;
        }
        printf("signed %ld\n", ok);
        printf("finalize %lu\n", t->C_Finalize(NULL));
    }

    if (strcmp(mode, "fork") == 0 || strcmp(mode, "fork-sign") == 0) {
        pthread_t thread;
        int i, ok = 0;
        if (strcmp(mode, "fork-sign") == 0) {
            int prep = prepare_signer(t, argv[3]);
            printf("prepare %d\n", prep);
            if (prep != 0) return 1;
            pthread_create(&thread, NULL, busy_signer, t);
            while (signatures < 3) usleep(1000);
        } else {
            pthread_create(&thread, NULL, busy, t);
        }
        for (i = 0; i < 20; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                CK_ULONG m = 0;
                alarm(20);
                if (slot_count(t, &m) != CKR_CRYPTOKI_NOT_INITIALIZED) _exit(3);
                if (t->C_Initialize(NULL) != 0) _exit(4);
                if (slot_count(t, &m) != 0) _exit(5);
                _exit(m == n ? 0 : 6);
            }
            int status = 0;
            waitpid(pid, &status, 0);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
            else printf("child-status %d\n", status);
        }
        stop_busy = 1;
        pthread_join(thread, NULL);
        printf("forked-children-ok %d\n", ok);
        printf("signatures-ok %d\n", signatures > 3);
    }
    printf("done\n");
    return 0;
}
