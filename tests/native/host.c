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

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct { unsigned char *name; void *list; CK_ULONG flags; } CK_INTERFACE;
typedef CK_RV (*fn_init)(void *);
typedef CK_RV (*fn_slots)(unsigned char, CK_ULONG *, CK_ULONG *);
typedef CK_RV (*fn_getlist)(void **);
typedef CK_RV (*fn_iface)(unsigned char *, CK_VERSION *, CK_INTERFACE **, CK_ULONG);
typedef CK_RV (*fn_ifacelist)(CK_INTERFACE *, CK_ULONG *);

/* Function-table slots we use (offsets in pointers after the version). */
struct table { CK_VERSION version; void *fn[68]; };
#define T_INITIALIZE 0
#define T_FINALIZE 1
#define T_GETSLOTLIST 4

#ifdef FAKE_PYTHON
/* Pretend to be a host that runs another CPython: the module must refuse, not hang. */
__attribute__((visibility("default"))) const char *Py_GetVersion(void) { return "3.99.0 (fake host)"; }
#endif

static struct table *load(const char *path, void **handle)
{
    fn_getlist get;
    struct table *t = NULL;
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) { printf("dlopen-error %s\n", dlerror()); exit(2); }
    get = (fn_getlist)dlsym(*handle, "C_GetFunctionList");
    if (!get || get((void **)&t) != 0) { printf("getfunctionlist-failed\n"); exit(2); }
    return t;
}

static CK_RV slot_count(struct table *t, CK_ULONG *n)
{
    return ((fn_slots)t->fn[T_GETSLOTLIST])(1, NULL, n);
}

static volatile int stop_busy = 0;
static void *busy(void *arg)
{
    struct table *t = arg;
    CK_ULONG n;
    while (!stop_busy) slot_count(t, &n);
    return NULL;
}

typedef struct { CK_ULONG type; void *value; CK_ULONG len; } CK_ATTRIBUTE;
typedef struct { CK_ULONG mechanism; void *param; CK_ULONG len; } CK_MECHANISM;
typedef CK_RV (*fn_open)(CK_ULONG, CK_ULONG, void *, void *, CK_ULONG *);
typedef CK_RV (*fn_login)(CK_ULONG, CK_ULONG, unsigned char *, CK_ULONG);
typedef CK_RV (*fn_findinit)(CK_ULONG, CK_ATTRIBUTE *, CK_ULONG);
typedef CK_RV (*fn_find)(CK_ULONG, CK_ULONG *, CK_ULONG, CK_ULONG *);
typedef CK_RV (*fn_sess)(CK_ULONG);
typedef CK_RV (*fn_signinit)(CK_ULONG, CK_MECHANISM *, CK_ULONG);
typedef CK_RV (*fn_sign)(CK_ULONG, unsigned char *, CK_ULONG, unsigned char *, CK_ULONG *);
static CK_ULONG sign_session, sign_key;
static volatile long signatures = 0;

static void *busy_signer(void *arg)
{
    struct table *t = arg;
    CK_MECHANISM mech = {0x40, NULL, 0}; /* CKM_SHA256_RSA_PKCS */
    unsigned char sig[512];
    while (!stop_busy) {
        CK_ULONG len = sizeof(sig);
        if (((fn_signinit)t->fn[42])(sign_session, &mech, sign_key) != 0) break;
        if (((fn_sign)t->fn[43])(sign_session, (unsigned char *)"data", 4, sig, &len) != 0) break;
        signatures++;
    }
    return NULL;
}

static int prepare_signer(struct table *t, const char *pin)
{
    CK_ULONG slots[4], count = 4, klass = 3, found = 0;
    CK_ATTRIBUTE tmpl = {0, &klass, sizeof(klass)};
    if (((fn_slots)t->fn[T_GETSLOTLIST])(1, slots, &count) != 0 || count < 1) return -1;
    if (((fn_open)t->fn[12])(slots[0], 4, NULL, NULL, &sign_session) != 0) return -2;
    if (((fn_login)t->fn[18])(sign_session, 1, (unsigned char *)pin, strlen(pin)) != 0) return -3;
    if (((fn_findinit)t->fn[26])(sign_session, &tmpl, 1) != 0) return -4;
    if (((fn_find)t->fn[27])(sign_session, &sign_key, 1, &found) != 0 || found != 1) return -5;
    ((fn_sess)t->fn[28])(sign_session);
    return 0;
}

static void *init_thread(void *arg)
{
    struct table *t = arg;
    return (void *)(long)((fn_init)t->fn[T_INITIALIZE])(NULL);
}

int main(int argc, char **argv)
{
    void *h;
    struct table *t = load(argv[1], &h);
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
    rv = ((fn_init)t->fn[T_INITIALIZE])(NULL);
    printf("initialize %lu\n", rv);
    fflush(stdout);
    if (strcmp(mode, "version") == 0)
        return 0;
    rv = slot_count(t, &n);
    printf("slots %lu %lu\n", rv, n);
    printf("initialize-again %lu\n", ((fn_init)t->fn[T_INITIALIZE])(NULL));

    if (strcmp(mode, "interfaces") == 0) {
        fn_iface gi = (fn_iface)dlsym(h, "C_GetInterface");
        fn_ifacelist gl = (fn_ifacelist)dlsym(h, "C_GetInterfaceList");
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
        printf("default %lu %d %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->list)->major : -1,
               iface ? ((CK_VERSION *)iface->list)->minor : -1);
        iface = NULL;
        rv = gi(NULL, &v2, &iface, 0);
        printf("v240 %lu %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->list)->minor : -1);
        iface = NULL;
        rv = gi((unsigned char *)"PKCS 11", &v3, &iface, 0);
        printf("v30 %lu %d\n", rv, iface != NULL);
        iface = NULL;
        rv = gi((unsigned char *)"PKCS 11", &v32, &iface, 0);
        printf("v32 %lu %d %d\n", rv, iface != NULL, iface ? ((CK_VERSION *)iface->list)->minor : -1);
        printf("unknown-name %lu\n", gi((unsigned char *)"Vendor X", NULL, &iface, 0));
        printf("unknown-version %lu\n", gi((unsigned char *)"PKCS 11", &v9, &iface, 0));
        printf("fork-safe %lu\n", gi((unsigned char *)"PKCS 11", NULL, &iface, 1));
        printf("null-out %lu\n", gi((unsigned char *)"PKCS 11", NULL, NULL, 0));
    }

    if (strcmp(mode, "reload") == 0) {
        int i;
        for (i = 0; i < 3; i++) {
            printf("finalize %lu\n", ((fn_init)t->fn[T_FINALIZE])(NULL));
            printf("after-finalize %lu\n", slot_count(t, &n));
            dlclose(h);
            t = load(argv[1], &h);
            printf("reinitialize %lu\n", ((fn_init)t->fn[T_INITIALIZE])(NULL));
            rv = slot_count(t, &n);
            printf("slots %lu %lu\n", rv, n);
        }
    }

    if (strcmp(mode, "sign-finalize") == 0) { /* argv[3] PIN, argv[4] count: the audit log's C_Finalize write */
        CK_MECHANISM mech = {0x40, NULL, 0}; /* CKM_SHA256_RSA_PKCS */
        unsigned char sig[512];
        long i, count = atol(argv[4]), ok = 0;
        printf("prepare %d\n", prepare_signer(t, argv[3]));
        for (i = 0; i < count; i++) {
            CK_ULONG len = sizeof(sig);
            if (((fn_signinit)t->fn[42])(sign_session, &mech, sign_key) == 0
                && ((fn_sign)t->fn[43])(sign_session, (unsigned char *)"data", 4, sig, &len) == 0)
                ok++;
        }
        printf("signed %ld\n", ok);
        printf("finalize %lu\n", ((fn_init)t->fn[T_FINALIZE])(NULL));
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
                if (slot_count(t, &m) != 0x190) _exit(3);
                if (((fn_init)t->fn[T_INITIALIZE])(NULL) != 0) _exit(4);
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
