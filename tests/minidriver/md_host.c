/* A C caller of the minidriver card-edge library, as the Windows Base CSP / smart card KSP would be: dlopen,
 * CardAcquireContext with its own allocator (every buffer the card hands over must come from it) and cache
 * callbacks, then the call sequences those CSPs make. Prints one line per step ("name value...") for the
 * Python test to check; binary answers as hex. Built by tests/minidriver/test_md_library.py with
 * -I native (the project's cardmod_types.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <uchar.h>
#include <unistd.h>

#include "cardmod_types.h"

#define AT_KEYEXCHANGE 1
#define AT_SIGNATURE 2
#define AT_ECDSA_P256 3
#define AT_ECDHE_P384 7
#define CALG_SHA_256 0x800C
#define CARD_CREATE_CONTAINER_KEY_GEN 1
#define CARD_PADDING_INFO_PRESENT 0x40000000
#define CARD_BUFFER_SIZE_ONLY 0x20000000
#define CARD_PADDING_PKCS1 2
#define ROLE_USER 1
#define RECORD_SIZE 86

static PFN_CARD_ACQUIRE_CONTEXT acquire_fn;

#ifdef FAKE_PYTHON
/* Pretend to be a host that runs another CPython: the library must refuse, not hang. */
__attribute__((visibility("default"))) const char *Py_GetVersion(void) { return "3.99.0 (fake host)"; }
#endif

/* --- the caller's allocator: a header marks its blocks, so a buffer from anywhere else is caught --- */
#define MAGIC 0x5653434d4d44ULL
static long allocs, frees, bad_frees;
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;

static LPVOID csp_alloc(SIZE_T size)
{
    uint64_t *h = malloc(size + 16);
    if (!h)
        return NULL;
    h[0] = MAGIC;
    pthread_mutex_lock(&alloc_lock);
    allocs++;
    pthread_mutex_unlock(&alloc_lock);
    return (char *)h + 16;
}

static void csp_free(LPVOID p)
{
    uint64_t *h;
    if (!p)
        return;
    h = (uint64_t *)((char *)p - 16);
    pthread_mutex_lock(&alloc_lock);
    if (h[0] != MAGIC) {
        bad_frees++;
        pthread_mutex_unlock(&alloc_lock);
        return;
    }
    frees++;
    pthread_mutex_unlock(&alloc_lock);
    h[0] = 0;
    free(h);
}

static LPVOID csp_realloc(LPVOID p, SIZE_T size)
{
    LPVOID q = csp_alloc(size);
    if (q && p)
        memcpy(q, p, size); /* callers here only grow buffers they allocated */
    csp_free(p);
    return q;
}

/* --- the caller's cache: counted; the card may use it or not --- */
static long cache_calls;
static DWORD cache_add(PVOID ctx, LPWSTR tag, DWORD flags, PBYTE data, DWORD size)
{
    (void)ctx; (void)tag; (void)flags; (void)data; (void)size;
    cache_calls++;
    return 0;
}
static DWORD cache_lookup(PVOID ctx, LPWSTR tag, DWORD flags, PBYTE *data, PDWORD size)
{
    (void)ctx; (void)tag; (void)flags; (void)data; (void)size;
    cache_calls++;
    return 0x80100024; /* SCARD_E_FILE_NOT_FOUND: nothing cached */
}
static DWORD cache_delete(PVOID ctx, LPWSTR tag, DWORD flags)
{
    (void)ctx; (void)tag; (void)flags;
    cache_calls++;
    return 0;
}

static BYTE ATR[] = {0x3B, 0x8A, 0x80, 0x01, 0x56, 0x53, 0x43, 0x2D, 0x70, 0x72, 0x6F, 0x76, 0x69, 0x64, 0x65};
static WCHAR CARD_NAME[] = u"vsc-provider card";

static void prepare(CARD_DATA *cd, DWORD version)
{
    memset(cd, 0, sizeof(*cd));
    cd->dwVersion = version;
    cd->pbAtr = ATR;
    cd->cbAtr = sizeof(ATR);
    cd->pwszCardName = CARD_NAME;
    cd->pfnCspAlloc = csp_alloc;
    cd->pfnCspReAlloc = csp_realloc;
    cd->pfnCspFree = csp_free;
    cd->pfnCspCacheAddFile = cache_add;
    cd->pfnCspCacheLookupFile = cache_lookup;
    cd->pfnCspCacheDeleteFile = cache_delete;
    cd->pvCacheContext = cd;
}

static void print_hex(const BYTE *p, DWORD n)
{
    DWORD i;
    if (!n)
        printf(" -");
    else
        printf(" ");
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
}

static void read_file(CARD_DATA *cd, const char *label, const char *dir, const char *name)
{
    PBYTE data = NULL;
    DWORD size = 0;
    DWORD rv = cd->pfnCardReadFile(cd, (LPSTR)dir, (LPSTR)name, 0, &data, &size);
    printf("%s %u", label, rv);
    if (rv == 0)
        print_hex(data, size);
    printf("\n");
    csp_free(data);
}

static void property(CARD_DATA *cd, const char *label, const WCHAR *name, DWORD flags)
{
    BYTE buffer[256];
    DWORD size = 0;
    DWORD rv = cd->pfnCardGetProperty(cd, name, buffer, sizeof(buffer), &size, flags);
    printf("%s %u", label, rv);
    if (rv == 0)
        print_hex(buffer, size);
    printf("\n");
}

static int hex_to_bytes(const char *hex, BYTE *out, size_t cap)
{
    size_t n = strlen(hex) / 2, i;
    if (n > cap)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (BYTE)v;
    }
    return (int)n;
}

static void reverse(BYTE *p, DWORD n)
{
    DWORD i;
    for (i = 0; i < n / 2; i++) {
        BYTE t = p[i];
        p[i] = p[n - 1 - i];
        p[n - 1 - i] = t;
    }
}

/* What the Base CSP does to make a key: read cmapfile, add a record naming the new container (a fresh
 * GUID), write it back, create the container at that index. Returns the index (or -1). */
static int new_container(CARD_DATA *cd, const char *label, DWORD key_spec, DWORD bits)
{
    PBYTE old = NULL, records;
    DWORD size = 0, rv, i, count;
    BYTE random[16];
    char guid[40];
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (!urandom || fread(random, 1, sizeof(random), urandom) != sizeof(random))
        return -1;
    fclose(urandom);
    snprintf(guid, sizeof(guid), "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
             random[0], random[1], random[2], random[3], random[4], random[5], random[6], random[7], random[8],
             random[9], random[10], random[11], random[12], random[13], random[14], random[15]);
    rv = cd->pfnCardReadFile(cd, "mscp", "cmapfile", 0, &old, &size);
    if (rv != 0) {
        printf("%s-cmapfile %u\n", label, rv);
        return -1;
    }
    count = size / RECORD_SIZE;
    records = calloc(count + 1, RECORD_SIZE);
    memcpy(records, old, size);
    csp_free(old);
    for (i = 0; guid[i]; i++) { /* wszGuid: UTF-16LE */
        records[size + 2 * i] = (BYTE)guid[i];
    }
    records[size + 80] = 1; /* CONTAINER_MAP_VALID_CONTAINER */
    if (key_spec == AT_KEYEXCHANGE) {
        records[size + 84] = bits & 0xff;
        records[size + 85] = bits >> 8;
    } else {
        records[size + 82] = bits & 0xff;
        records[size + 83] = bits >> 8;
    }
    rv = cd->pfnCardWriteFile(cd, "mscp", "cmapfile", 0, records, size + RECORD_SIZE);
    free(records);
    if (rv == 0)
        rv = cd->pfnCardCreateContainerEx(cd, (BYTE)count, CARD_CREATE_CONTAINER_KEY_GEN, key_spec, bits, NULL,
                                          ROLE_USER);
    printf("%s %u %u %s\n", label, rv, count, guid);
    return rv == 0 ? (int)count : -1;
}

static void container_info(CARD_DATA *cd, const char *label, int index)
{
    CONTAINER_INFO info;
    DWORD rv;
    memset(&info, 0, sizeof(info));
    info.dwVersion = 1;
    rv = cd->pfnCardGetContainerInfo(cd, (BYTE)index, 0, &info);
    printf("%s %u", label, rv);
    if (rv == 0) {
        print_hex(info.pbSigPublicKey, info.cbSigPublicKey);
        print_hex(info.pbKeyExPublicKey, info.cbKeyExPublicKey);
    }
    printf("\n");
    csp_free(info.pbSigPublicKey);
    csp_free(info.pbKeyExPublicKey);
}

static DWORD sign(CARD_DATA *cd, const char *label, int index, DWORD key_spec, DWORD hash_alg, BYTE *hash,
                  DWORD hash_len, int version, int print)
{
    CARD_SIGNING_INFO info;
    BCRYPT_PKCS1_PADDING_INFO pkcs1 = {u"SHA256"};
    DWORD rv;
    memset(&info, 0, sizeof(info));
    info.dwVersion = version;
    info.bContainerIndex = (BYTE)index;
    info.dwKeySpec = key_spec;
    info.aiHashAlg = hash_alg;
    info.pbData = hash;
    info.cbData = hash_len;
    if (version == 2 && key_spec == AT_KEYEXCHANGE) {
        info.dwSigningFlags = CARD_PADDING_INFO_PRESENT;
        info.pPaddingInfo = &pkcs1;
        info.dwPaddingType = CARD_PADDING_PKCS1;
    }
    rv = cd->pfnCardSignData(cd, &info);
    if (print) {
        printf("%s %u", label, rv);
        if (rv == 0) {
            if (key_spec == AT_KEYEXCHANGE)
                reverse(info.pbSignedData, info.cbSignedData); /* CryptoAPI's little-endian, as the CSP turns it */
            print_hex(info.pbSignedData, info.cbSignedData);
        }
        printf("\n");
    }
    csp_free(info.pbSignedData);
    return rv;
}

static int acquire(CARD_DATA *cd)
{
    DWORD rv;
    prepare(cd, 7);
    rv = acquire_fn(cd, 0);
    printf("acquire %u %u\n", rv, cd->dwVersion);
    return rv == 0;
}

static int csp(int argc, char **argv)
{
    CARD_DATA cd, other;
    BYTE hash[64], buffer[1024];
    CARD_CAPABILITIES caps;
    CARD_KEY_SIZES sizes;
    DWORD rv, tries, size;
    int hash_len, rsa, ec;
    char line[4096];
    if (argc < 6)
        return 2;
    hash_len = hex_to_bytes(argv[5], hash, sizeof(hash));
    if (!acquire(&cd))
        return 1;
    /* what the CSP reads first */
    read_file(&cd, "cardid", NULL, "cardid");
    read_file(&cd, "cardcf", NULL, "cardcf");
    read_file(&cd, "cardapps", NULL, "cardapps");
    read_file(&cd, "cmapfile", "mscp", "cmapfile");
    {
        LPSTR names = NULL;
        rv = cd.pfnCardEnumFiles(&cd, NULL, &names, &size, 0);
        printf("enum-root %u", rv);
        if (rv == 0)
            print_hex((BYTE *)names, size);
        printf("\n");
        csp_free(names);
    }
    caps.dwVersion = 1;
    rv = cd.pfnCardQueryCapabilities(&cd, &caps);
    printf("capabilities %u %u %d %d\n", rv, caps.dwVersion, caps.fCertificateCompression, caps.fKeyGen);
    sizes.dwVersion = 1;
    rv = cd.pfnCardQueryKeySizes(&cd, AT_KEYEXCHANGE, 0, &sizes);
    printf("keysizes-rsa %u %u %u %u %u\n", rv, sizes.dwMinimumBitlen, sizes.dwDefaultBitlen, sizes.dwMaximumBitlen,
           sizes.dwIncrementalBitlen);
    rv = cd.pfnCardQueryKeySizes(&cd, AT_ECDSA_P256, 0, &sizes);
    printf("keysizes-p256 %u %u %u %u %u\n", rv, sizes.dwMinimumBitlen, sizes.dwDefaultBitlen,
           sizes.dwMaximumBitlen, sizes.dwIncrementalBitlen);
    /* CP_CARD_KEYSIZES: dwFlags is the key spec */
    property(&cd, "prop-keysizes-sig", u"Key Sizes", AT_SIGNATURE);
    property(&cd, "prop-keysizes-ecdh384", u"Key Sizes", AT_ECDHE_P384);
    property(&cd, "prop-keysizes-none", u"Key Sizes", 0);
    property(&cd, "guid", u"Card Identifier", 0);
    property(&cd, "serial", u"Card Serial Number", 0);
    property(&cd, "pin-info", u"PIN Information", ROLE_USER);
    property(&cd, "list-pins", u"PIN List", 0);
    property(&cd, "free-space", u"Free Space", 0);
    property(&cd, "auth-state", u"Authenticated State", 0);
    size = 0;
    rv = cd.pfnCardGetProperty(&cd, u"Card Identifier", buffer, 4, &size, 0);
    printf("guid-short %u %u\n", rv, size);
    /* the PIN: a wrong one, then the right one */
    tries = 99;
    rv = cd.pfnCardAuthenticateEx(&cd, ROLE_USER, 0, (PBYTE)argv[4], strlen(argv[4]), NULL, NULL, &tries);
    printf("auth-wrong %u %u\n", rv, tries);
    tries = 99;
    rv = cd.pfnCardAuthenticateEx(&cd, ROLE_USER, 0, (PBYTE)argv[3], strlen(argv[3]), NULL, NULL, &tries);
    printf("auth-right %u %u\n", rv, tries);
    property(&cd, "auth-state-after", u"Authenticated State", 0);
    /* containers, as the CSP makes them */
    rsa = new_container(&cd, "create-rsa", AT_KEYEXCHANGE, 2048);
    container_info(&cd, "info-rsa", rsa);
    ec = new_container(&cd, "create-ec", AT_ECDSA_P256, 256);
    container_info(&cd, "info-ec", ec);
    read_file(&cd, "cmapfile-after", "mscp", "cmapfile");
    read_file(&cd, "cardcf-after", NULL, "cardcf");
    /* signatures: the Base CSP's (basic CARD_SIGNING_INFO, ALG_ID), the KSP's (padding info), ECDSA */
    sign(&cd, "sign-rsa", rsa, AT_KEYEXCHANGE, CALG_SHA_256, hash, hash_len, 1, 1);
    sign(&cd, "sign-rsa-pkcs1", rsa, AT_KEYEXCHANGE, 0, hash, hash_len, 2, 1);
    sign(&cd, "sign-ec", ec, AT_ECDSA_P256, 0, hash, hash_len, 2, 1);
    {
        CARD_SIGNING_INFO info;
        memset(&info, 0, sizeof(info));
        info.dwVersion = 1;
        info.bContainerIndex = (BYTE)rsa;
        info.dwKeySpec = AT_KEYEXCHANGE;
        info.dwSigningFlags = CARD_BUFFER_SIZE_ONLY;
        info.aiHashAlg = CALG_SHA_256;
        info.pbData = hash;
        info.cbData = hash_len;
        rv = cd.pfnCardSignData(&cd, &info);
        printf("sign-size-only %u %u %d\n", rv, info.cbSignedData, info.pbSignedData == NULL);
    }
    /* decryption of what the test encrypts with the container's public key (big-endian hex on stdin) */
    printf("await-ciphertext\n");
    fflush(stdout);
    if (fgets(line, sizeof(line), stdin)) {
        CARD_RSA_DECRYPT_INFO info;
        int n;
        line[strcspn(line, "\r\n")] = 0;
        n = hex_to_bytes(line, buffer, sizeof(buffer));
        reverse(buffer, n);
        memset(&info, 0, sizeof(info));
        info.dwVersion = 2;
        info.bContainerIndex = (BYTE)rsa;
        info.dwKeySpec = AT_KEYEXCHANGE;
        info.pbData = buffer;
        info.cbData = n;
        info.dwPaddingType = CARD_PADDING_PKCS1;
        rv = cd.pfnCardRSADecrypt(&cd, &info);
        printf("decrypt %u", rv);
        if (rv == 0) {
            reverse(info.pbData, info.cbData);
            print_hex(info.pbData, info.cbData);
        }
        printf("\n");
    }
    /* errors: the specification's codes, never a crash */
    read_file(&cd, "err-no-file", "mscp", "nothere");
    container_info(&cd, "err-no-container", 200);
    printf("err-null-info %u\n", cd.pfnCardSignData(&cd, NULL));
    printf("err-null-card %u\n", cd.pfnCardReadFile(NULL, NULL, "cardid", 0, NULL, NULL));
    printf("err-null-out %u\n", cd.pfnCardReadFile(&cd, NULL, "cardid", 0, NULL, NULL));
    printf("err-pin-id %u\n", cd.pfnCardAuthenticateEx(&cd, 7, 0, (PBYTE)"1", 1, NULL, NULL, NULL));
    property(&cd, "err-property", u"No Such Property", 0);
    printf("err-sign-spec %u\n", sign(&cd, "", rsa, AT_ECDSA_P256, 0, hash, hash_len, 2, 0));
    printf("err-acquire-null %u\n", acquire_fn(NULL, 0));
    prepare(&other, 3);
    printf("err-acquire-version %u\n", acquire_fn(&other, 0));
    prepare(&other, 7);
    other.pfnCspAlloc = NULL;
    printf("err-acquire-alloc %u\n", acquire_fn(&other, 0));
    prepare(&other, 7);
    printf("err-acquire-flags %u\n", acquire_fn(&other, 1));
    /* an older caller's CARD_DATA: the version 6 fields are filled, the version 7 ones are not touched */
    prepare(&other, 6);
    other.pfnCardCreateContainerEx = (PFN_CARD_CREATE_CONTAINER_EX)(uintptr_t)1;
    rv = acquire_fn(&other, 0);
    printf("acquire-v6 %u %u %d %d\n", rv, other.dwVersion, other.pfnCardGetProperty != NULL,
           other.pfnCardCreateContainerEx == (PFN_CARD_CREATE_CONTAINER_EX)(uintptr_t)1);
    if (rv == 0)
        other.pfnCardDeleteContext(&other);
    /* the end of the session */
    printf("deauthenticate %u\n", cd.pfnCardDeauthenticate(&cd, u"user", 0));
    property(&cd, "auth-state-end", u"Authenticated State", 0);
    printf("sign-after-deauth %u\n", sign(&cd, "", rsa, AT_KEYEXCHANGE, CALG_SHA_256, hash, hash_len, 1, 0));
    printf("delete %u\n", cd.pfnCardDeleteContext(&cd));
    {
        PBYTE data = NULL;
        printf("after-delete %u %d\n", cd.pfnCardReadFile(&cd, NULL, "cardid", 0, &data, &size), data == NULL);
    }
    printf("cache-calls %ld\n", cache_calls);
    printf("allocations %ld %ld %ld\n", allocs, frees, bad_frees);
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* CardSignData calls per second on container INDEX (RSA, Base CSP's basic signing info). */
static int bench(int argc, char **argv)
{
    CARD_DATA cd;
    BYTE hash[64];
    int hash_len, n, i;
    double start;
    if (argc < 7)
        return 2;
    n = atoi(argv[5]);
    hash_len = hex_to_bytes(argv[6], hash, sizeof(hash));
    if (!acquire(&cd))
        return 1;
    if (cd.pfnCardAuthenticateEx(&cd, ROLE_USER, 0, (PBYTE)argv[3], strlen(argv[3]), NULL, NULL, NULL) != 0)
        return 1;
    start = now();
    for (i = 0; i < n; i++)
        if (sign(&cd, "", atoi(argv[4]), AT_KEYEXCHANGE, CALG_SHA_256, hash, hash_len, 1, 0) != 0)
            return 1;
    printf("card-sign-per-second %.0f\n", n / (now() - start));
    cd.pfnCardDeleteContext(&cd);
    return 0;
}

/* The same signatures through the PKCS#11 library, for comparison: C_SignInit + C_Sign with CKM_RSA_PKCS
 * over the DigestInfo CardSignData builds, by the private key with this CKA_ID (argv: p11bench PKCS11 PIN
 * KEYID N DIGESTINFO). */
typedef unsigned long CK_ULONG;
typedef struct { CK_ULONG type; void *value; CK_ULONG len; } CK_ATTRIBUTE;
typedef struct { CK_ULONG mechanism; void *param; CK_ULONG len; } CK_MECHANISM;
typedef CK_ULONG (*ck_fn)();
struct ck_table { unsigned char version[2]; ck_fn fn[68]; };

static int p11bench(int argc, char **argv)
{
    void *handle;
    struct ck_table *t = NULL;
    CK_ULONG (*get)(struct ck_table **);
    CK_ULONG slot, count = 1, session, key, found = 0, klass = 3, len;
    BYTE id[64], info[128], sig[1024];
    int id_len, info_len, n, i;
    CK_ATTRIBUTE tmpl[2];
    CK_MECHANISM mech = {1, NULL, 0}; /* CKM_RSA_PKCS */
    double start;
    if (argc < 8)
        return 2;
    handle = dlopen(argv[3], RTLD_NOW | RTLD_LOCAL);
    get = handle ? (CK_ULONG(*)(struct ck_table **))dlsym(handle, "C_GetFunctionList") : NULL;
    if (!get || get(&t) != 0)
        return 1;
    id_len = hex_to_bytes(argv[5], id, sizeof(id));
    n = atoi(argv[6]);
    info_len = hex_to_bytes(argv[7], info, sizeof(info));
    tmpl[0].type = 0; tmpl[0].value = &klass; tmpl[0].len = sizeof(klass); /* CKA_CLASS */
    tmpl[1].type = 0x102; tmpl[1].value = id; tmpl[1].len = id_len;       /* CKA_ID */
    if (t->fn[0](NULL) != 0 || t->fn[4](1, &slot, &count) != 0 || count < 1)
        return 1;
    if (t->fn[12](slot, 4UL, NULL, NULL, &session) != 0 || t->fn[18](session, 1UL, argv[4], strlen(argv[4])) != 0)
        return 1;
    if (t->fn[26](session, tmpl, 2UL) != 0 || t->fn[27](session, &key, 1UL, &found) != 0 || found != 1)
        return 1;
    t->fn[28](session);
    start = now();
    for (i = 0; i < n; i++) {
        len = sizeof(sig);
        if (t->fn[42](session, &mech, key) != 0 || t->fn[43](session, info, (CK_ULONG)info_len, sig, &len) != 0)
            return 1;
    }
    printf("p11-sign-per-second %.0f\n", n / (now() - start));
    t->fn[1](NULL);
    return 0;
}

/* Both libraries in one C process, either one started first (argv: both PKCS11 md-first|p11-first): the
 * second finds the interpreter the first started and uses it as a Python host's. */
static int both(int argc, char **argv)
{
    void *handle;
    struct ck_table *t = NULL;
    CK_ULONG (*get)(struct ck_table **);
    CK_ULONG count = 0;
    CARD_DATA cd;
    PBYTE data = NULL;
    DWORD size = 0, rv;
    int md_first;
    if (argc < 5)
        return 2;
    md_first = !strcmp(argv[4], "md-first");
    handle = dlopen(argv[3], RTLD_NOW | RTLD_LOCAL);
    get = handle ? (CK_ULONG(*)(struct ck_table **))dlsym(handle, "C_GetFunctionList") : NULL;
    if (!get || get(&t) != 0)
        return 1;
    if (md_first && !acquire(&cd))
        return 1;
    printf("p11-initialize %lu\n", t->fn[0](NULL));
    if (!md_first && !acquire(&cd))
        return 1;
    printf("p11-slots %lu", t->fn[4](1, NULL, &count));
    printf(" %lu\n", count);
    rv = cd.pfnCardReadFile(&cd, NULL, "cardid", 0, &data, &size);
    printf("md-cardid %u %u\n", rv, size);
    csp_free(data);
    printf("p11-finalize %lu\n", t->fn[1](NULL));
    printf("md-delete %u\n", cd.pfnCardDeleteContext(&cd));
    return 0;
}

/* CardAcquireContext alone: which card the library chose (its serial). */
static int acquire_mode(void)
{
    CARD_DATA cd;
    if (!acquire(&cd))
        return 0;
    property(&cd, "serial", u"Card Serial Number", 0);
    cd.pfnCardDeleteContext(&cd);
    return 0;
}

/* fork while another thread is inside the library: the child's calls on its parent's context are refused
 * (SCARD_E_INVALID_HANDLE), a context it acquires works; never a hang. */
static volatile int stop_busy;
static void *busy(void *arg)
{
    CARD_DATA *cd = arg;
    while (!stop_busy) {
        PBYTE data = NULL;
        DWORD size;
        if (cd->pfnCardReadFile(cd, NULL, "cardcf", 0, &data, &size) == 0)
            csp_free(data);
    }
    return NULL;
}

static int fork_mode(void)
{
    CARD_DATA cd;
    pthread_t thread;
    int i, ok = 0;
    if (!acquire(&cd))
        return 1;
    pthread_create(&thread, NULL, busy, &cd);
    for (i = 0; i < 10; i++) {
        pid_t pid;
        int status = 0;
        usleep(20000);
        pid = fork();
        if (pid == 0) {
            CARD_DATA mine;
            PBYTE data = NULL;
            DWORD size = 0;
            alarm(30);
            if (cd.pfnCardReadFile(&cd, NULL, "cardid", 0, &data, &size) != 0x80100003)
                _exit(3);
            prepare(&mine, 7);
            if (acquire_fn(&mine, 0) != 0)
                _exit(4);
            if (mine.pfnCardReadFile(&mine, NULL, "cardid", 0, &data, &size) != 0 || size != 16)
                _exit(5);
            _exit(0);
        }
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else
            printf("child-status %d\n", status);
    }
    stop_busy = 1;
    pthread_join(thread, NULL);
    printf("forked-children-ok %d\n", ok);
    cd.pfnCardDeleteContext(&cd);
    return 0;
}

int main(int argc, char **argv)
{
    void *handle;
    if (argc < 3)
        return 2;
    handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        printf("dlopen-error %s\n", dlerror());
        return 2;
    }
    acquire_fn = (PFN_CARD_ACQUIRE_CONTEXT)dlsym(handle, "CardAcquireContext");
    if (!acquire_fn) {
        printf("no-CardAcquireContext\n");
        return 2;
    }
    if (!strcmp(argv[2], "csp"))
        return csp(argc, argv);
    if (!strcmp(argv[2], "bench"))
        return bench(argc, argv);
    if (!strcmp(argv[2], "p11bench"))
        return p11bench(argc, argv);
    if (!strcmp(argv[2], "both"))
        return both(argc, argv);
    if (!strcmp(argv[2], "acquire"))
        return acquire_mode();
    if (!strcmp(argv[2], "fork"))
        return fork_mode();
    return 2;
}
