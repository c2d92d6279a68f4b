/* A C host for PKCS#11 modules: dlopen, C_GetFunctionList, then timed calls straight through the function
 * list, so no client library's overhead is in the figures. Built by benchmarks/cdriver.py at run time.
 *
 *   driver MODULE TOKEN PIN sign KEY MECH ITERATIONS DATA_LEN [query]    (MECH HOTP or VSC_TOTP: an OTP key's code)
 *   driver MODULE TOKEN PIN calls ITERATIONS
 *   driver MODULE TOKEN PIN login ITERATIONS
 *   driver MODULE TOKEN PIN coldstart
 *   driver MODULE TOKEN PIN throughput KEY MECH THREADS MILLISECONDS DATA_LEN
 *
 * Each command prints one JSON object on stdout. C_Initialize gets CKF_OS_LOCKING_OK, as NSS passes it.
 * Only the few PKCS#11 declarations used here are written out; the function list is indexed in the
 * order the standard fixes (version 2.40 table).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long ul;
typedef ul (*fn_t)();

struct version { unsigned char major, minor; };
struct attribute { ul type; void *value; ul len; };
struct mechanism { ul type; void *param; ul param_len; };
struct pss_params { ul hash, mgf, salt_len; };
struct init_args { void *create, *destroy, *lock, *unlock; ul flags; void *reserved; };
struct info { struct version cryptoki; unsigned char manufacturer[32]; ul flags; unsigned char desc[32]; struct version lib; };
struct token_info {
    unsigned char label[32], manufacturer[32], model[16], serial[16];
    ul flags, max_sessions, sessions, max_rw, rw, max_pin, min_pin, total_pub, free_pub, total_priv, free_priv;
    struct version hw, fw;
    unsigned char utc[16];
};
struct function_list { struct version version; fn_t f[68]; };

enum {
    F_INITIALIZE = 0, F_GET_INFO = 2, F_GET_SLOT_LIST = 4, F_GET_TOKEN_INFO = 6, F_OPEN_SESSION = 12,
    F_CLOSE_SESSION = 13, F_LOGIN = 18, F_LOGOUT = 19, F_FIND_INIT = 26, F_FIND = 27, F_FIND_FINAL = 28,
    F_SIGN_INIT = 42, F_SIGN = 43,
};
#define CALL(i) (fl->f[(i)])
#define CKR_OK 0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKF_SERIAL_SESSION 4UL
#define CKF_OS_LOCKING_OK 2UL
#define CKU_USER 1UL
#define CKA_CLASS 0UL
#define CKA_LABEL 3UL
#define CKO_PRIVATE_KEY 3UL
#define CKO_OTP_KEY 8UL

static struct function_list *fl;
static ul slot;
static const char *pin;
static double first_slot_list_ns;
static ul key_class = CKO_PRIVATE_KEY; /* what find_key looks for: OTP mechanisms use OTP keys */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void check(ul rv, const char *what) {
    if (rv != CKR_OK) {
        fprintf(stderr, "%s failed: rv=0x%lx\n", what, rv);
        exit(2);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_stats(const char *name, double *ns, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += ns[i];
    qsort(ns, (size_t)n, sizeof *ns, cmp_double);
    printf("\"%s\": {\"median_us\": %.3f, \"min_us\": %.3f, \"mean_us\": %.3f, \"n\": %d}", name, ns[n / 2] / 1e3,
           ns[0] / 1e3, sum / n / 1e3, n);
}

static void load(const char *path, const char *label) {
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        exit(2);
    }
    ul (*get_list)(struct function_list **) = (ul(*)(struct function_list **))dlsym(handle, "C_GetFunctionList");
    if (get_list == NULL) {
        fprintf(stderr, "no C_GetFunctionList in %s\n", path);
        exit(2);
    }
    check(get_list(&fl), "C_GetFunctionList");
    struct init_args args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    check(CALL(F_INITIALIZE)(&args), "C_Initialize");
    ul slots[64], count = 64;
    check(CALL(F_GET_SLOT_LIST)(1UL, slots, &count), "C_GetSlotList");
    first_slot_list_ns = now_ns();
    char padded[32];
    memset(padded, ' ', sizeof padded);
    memcpy(padded, label, strlen(label) < 32 ? strlen(label) : 32);
    for (ul i = 0; i < count; i++) {
        struct token_info ti;
        if (CALL(F_GET_TOKEN_INFO)(slots[i], &ti) == CKR_OK && memcmp(ti.label, padded, 32) == 0) {
            slot = slots[i];
            return;
        }
    }
    fprintf(stderr, "no token labelled %s\n", label);
    exit(2);
}

static ul open_session(void) {
    ul session;
    check(CALL(F_OPEN_SESSION)(slot, CKF_SERIAL_SESSION, NULL, NULL, &session), "C_OpenSession");
    return session;
}

static void login(ul session) {
    ul rv = CALL(F_LOGIN)(session, CKU_USER, pin, (ul)strlen(pin));
    if (rv != CKR_USER_ALREADY_LOGGED_IN) check(rv, "C_Login");
}

static ul find_key(ul session, const char *label) {
    ul klass = key_class, key, found = 0;
    struct attribute tmpl[2] = {{CKA_CLASS, &klass, sizeof klass}, {CKA_LABEL, (void *)label, (ul)strlen(label)}};
    check(CALL(F_FIND_INIT)(session, tmpl, 2UL), "C_FindObjectsInit");
    check(CALL(F_FIND)(session, &key, 1UL, &found), "C_FindObjects");
    check(CALL(F_FIND_FINAL)(session), "C_FindObjectsFinal");
    if (found != 1) {
        fprintf(stderr, "no %s key labelled %s\n", klass == CKO_OTP_KEY ? "OTP" : "private", label);
        exit(2);
    }
    return key;
}

/* The mechanism and a matching input: DigestInfo for CKM_RSA_PKCS, DATA_LEN bytes otherwise. */
static struct pss_params pss = {0x250UL /* CKM_SHA256 */, 2UL /* CKG_MGF1_SHA256 */, 32UL};
static const unsigned char digest_info_sha256[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                                     0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static unsigned char data[4096];
static ul data_len;

static struct mechanism mechanism(const char *name, ul len) {
    struct mechanism m = {0, NULL, 0};
    memset(data, 0x5a, sizeof data);
    data_len = len;
    if (strcmp(name, "SHA256_RSA_PKCS") == 0) m.type = 0x40;
    else if (strcmp(name, "RSA_PKCS") == 0) {
        m.type = 0x1;
        memcpy(data, digest_info_sha256, sizeof digest_info_sha256);
        data_len = sizeof digest_info_sha256 + 32;
    } else if (strcmp(name, "SHA256_RSA_PKCS_PSS") == 0) {
        m.type = 0x43;
        m.param = &pss;
        m.param_len = sizeof pss;
    } else if (strcmp(name, "ECDSA") == 0) m.type = 0x1041;
    else if (strcmp(name, "ECDSA_SHA256") == 0) m.type = 0x1044;
    else if (strcmp(name, "EDDSA") == 0) m.type = 0x1057;
    else if (strcmp(name, "HOTP") == 0 || strcmp(name, "VSC_TOTP") == 0) {
        /* An OTP code: C_Sign over no data on an OTP key (CKM_HOTP, or this token's CKM_VSC_TOTP). */
        m.type = name[0] == 'H' ? 0x291UL : 0xD6530001UL;
        key_class = CKO_OTP_KEY;
        data_len = 0;
    } else {
        fprintf(stderr, "unknown mechanism %s\n", name);
        exit(2);
    }
    return m;
}

static void sign_once(ul session, struct mechanism *m, ul key, int query) {
    unsigned char sig[1024];
    ul sig_len = sizeof sig;
    check(CALL(F_SIGN_INIT)(session, m, key), "C_SignInit");
    if (query) {
        check(CALL(F_SIGN)(session, data, data_len, NULL, &sig_len), "C_Sign (length query)");
        if (sig_len > sizeof sig) exit(3);
    }
    check(CALL(F_SIGN)(session, data, data_len, sig, &sig_len), "C_Sign");
}

static int cmd_sign(char **argv) {
    const char *key_label = argv[0];
    int iterations = atoi(argv[2]);
    int query = argv[4] != NULL && strcmp(argv[4], "query") == 0;
    struct mechanism m = mechanism(argv[1], (ul)atol(argv[3]));
    ul session = open_session();
    login(session);
    ul key = find_key(session, key_label);
    double *ns = calloc((size_t)iterations, sizeof *ns);
    for (int i = 0; i < 3; i++) sign_once(session, &m, key, query); /* warm-up */
    for (int i = 0; i < iterations; i++) {
        double t0 = now_ns();
        sign_once(session, &m, key, query);
        ns[i] = now_ns() - t0;
    }
    printf("{");
    print_stats("sign", ns, iterations);
    printf("}\n");
    return 0;
}

/* Per-call cost from batches of calls: median over batches of (batch time / calls in batch). */
static int cmd_calls(char **argv) {
    int iterations = atoi(argv[0]);
    enum { BATCHES = 15 };
    int per_batch = iterations / BATCHES > 0 ? iterations / BATCHES : 1;
    double info_ns[BATCHES], token_ns[BATCHES];
    struct info info;
    struct token_info ti;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < per_batch; i++) check(CALL(F_GET_INFO)(&info), "C_GetInfo");
        double t1 = now_ns();
        for (int i = 0; i < per_batch; i++) check(CALL(F_GET_TOKEN_INFO)(slot, &ti), "C_GetTokenInfo");
        double t2 = now_ns();
        info_ns[b] = (t1 - t0) / per_batch;
        token_ns[b] = (t2 - t1) / per_batch;
    }
    printf("{");
    print_stats("C_GetInfo", info_ns, BATCHES);
    printf(", ");
    print_stats("C_GetTokenInfo", token_ns, BATCHES);
    printf("}\n");
    return 0;
}

static int cmd_login(char **argv) {
    int iterations = atoi(argv[0]);
    ul session = open_session();
    double *login_ns = calloc((size_t)iterations, sizeof(double));
    double *logout_ns = calloc((size_t)iterations, sizeof(double));
    for (int i = 0; i < iterations; i++) {
        double t0 = now_ns();
        check(CALL(F_LOGIN)(session, CKU_USER, pin, (ul)strlen(pin)), "C_Login");
        double t1 = now_ns();
        check(CALL(F_LOGOUT)(session), "C_Logout");
        login_ns[i] = t1 - t0;
        logout_ns[i] = now_ns() - t1;
    }
    printf("{");
    print_stats("C_Login", login_ns, iterations);
    printf(", ");
    print_stats("C_Logout", logout_ns, iterations);
    printf("}\n");
    return 0;
}

struct worker { ul key; struct mechanism m; double deadline; long count; };

static void *sign_loop(void *arg) {
    struct worker *w = arg;
    ul session = open_session();
    while (now_ns() < w->deadline) {
        sign_once(session, &w->m, w->key, 0);
        w->count++;
    }
    CALL(F_CLOSE_SESSION)(session);
    return NULL;
}

static int cmd_throughput(char **argv) {
    int threads = atoi(argv[2]);
    double millis = atof(argv[3]);
    struct mechanism m = mechanism(argv[1], (ul)atol(argv[4]));
    ul session = open_session();
    login(session);
    ul key = find_key(session, argv[0]);
    sign_once(session, &m, key, 0);
    pthread_t tid[64];
    struct worker w[64];
    if (threads < 1 || threads > 64) return 2;
    double start = now_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){key, m, start + millis * 1e6, 0};
        pthread_create(&tid[i], NULL, sign_loop, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        total += w[i].count;
    }
    double seconds = (now_ns() - start) / 1e9;
    printf("{\"ops_per_s\": %.1f, \"ops\": %ld, \"seconds\": %.3f}\n", total / seconds, total, seconds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODULE TOKEN PIN COMMAND [ARGS]\n", argv[0]);
        return 2;
    }
    long rss_start = rss_kb();
    pin = argv[3];
    const char *command = argv[4];
    load(argv[1], argv[2]);
    if (strcmp(command, "coldstart") == 0) {
        double ready = first_slot_list_ns;
        long rss_loaded = rss_kb();
        ul session = open_session();
        login(session);
        printf("{\"ready_ns\": %.0f, \"rss_start_kb\": %ld, \"rss_loaded_kb\": %ld, \"rss_login_kb\": %ld}\n", ready,
               rss_start, rss_loaded, rss_kb());
        return 0;
    }
    if (strcmp(command, "sign") == 0 && argc >= 9) return cmd_sign(argv + 5);
    if (strcmp(command, "calls") == 0 && argc >= 6) return cmd_calls(argv + 5);
    if (strcmp(command, "login") == 0 && argc >= 6) return cmd_login(argv + 5);
    if (strcmp(command, "throughput") == 0 && argc >= 10) return cmd_throughput(argv + 5);
    fprintf(stderr, "bad command or arguments\n");
    return 2;
}
