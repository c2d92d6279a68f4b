/* The card-edge types of the Smart Card Minidriver Specification (version 7), written here from the
 * specification's text for a Linux build: DWORD is 32 bits, WCHAR a 16-bit UTF-16 unit, WINAPI is the
 * platform's C convention, handles are pointer-sized. Parsed by cffi's cdef (md_build.py) and compiled into
 * the library; a C caller includes <stdint.h> and <uchar.h> first (tests/minidriver/md_host.c does). */
typedef uint32_t DWORD;
typedef DWORD *PDWORD;
typedef DWORD *LPDWORD;
typedef uint8_t BYTE;
typedef BYTE *PBYTE;
typedef unsigned char UCHAR;
typedef UCHAR *PUCHAR;
typedef uint32_t ULONG;
typedef int32_t BOOL;
typedef char *LPSTR;
typedef char16_t WCHAR;
typedef WCHAR *LPWSTR;
typedef const WCHAR *LPCWSTR;
typedef void *PVOID;
typedef void *LPVOID;
typedef size_t SIZE_T;
typedef unsigned int ALG_ID;
typedef uintptr_t ULONG_PTR;
typedef ULONG_PTR SCARDCONTEXT;
typedef ULONG_PTR SCARDHANDLE;
typedef ULONG_PTR CARD_KEY_HANDLE;
typedef DWORD PIN_ID;
typedef DWORD PIN_SET;
typedef DWORD CARD_FILE_ACCESS_CONDITION;      /* an enum in the specification: int-sized */
typedef DWORD CARD_DIRECTORY_ACCESS_CONDITION; /* likewise */

typedef struct _CARD_DATA CARD_DATA, *PCARD_DATA;

typedef struct _CARD_CAPABILITIES {
    DWORD dwVersion;
    BOOL fCertificateCompression;
    BOOL fKeyGen;
} CARD_CAPABILITIES, *PCARD_CAPABILITIES;

typedef struct _CONTAINER_INFO {
    DWORD dwVersion;
    DWORD dwReserved;
    DWORD cbSigPublicKey;
    PBYTE pbSigPublicKey;
    DWORD cbKeyExPublicKey;
    PBYTE pbKeyExPublicKey;
} CONTAINER_INFO, *PCONTAINER_INFO;

typedef struct _CARD_FILE_INFO {
    DWORD dwVersion;
    DWORD cbFileSize;
    CARD_FILE_ACCESS_CONDITION AccessCondition;
} CARD_FILE_INFO, *PCARD_FILE_INFO;

typedef struct _CARD_FREE_SPACE_INFO {
    DWORD dwVersion;
    DWORD dwBytesAvailable;
    DWORD dwKeyContainersAvailable;
    DWORD dwMaxKeyContainers;
} CARD_FREE_SPACE_INFO, *PCARD_FREE_SPACE_INFO;

typedef struct _CARD_KEY_SIZES {
    DWORD dwVersion;
    DWORD dwMinimumBitlen;
    DWORD dwDefaultBitlen;
    DWORD dwMaximumBitlen;
    DWORD dwIncrementalBitlen;
} CARD_KEY_SIZES, *PCARD_KEY_SIZES;

typedef struct _CARD_SIGNING_INFO {
    DWORD dwVersion;
    BYTE bContainerIndex;
    DWORD dwKeySpec;
    DWORD dwSigningFlags;
    ALG_ID aiHashAlg;
    PBYTE pbData;
    DWORD cbData;
    PBYTE pbSignedData;   /* allocated by the card with pfnCspAlloc; the caller frees it */
    DWORD cbSignedData;
    LPVOID pPaddingInfo;  /* version 2: BCRYPT_*_PADDING_INFO when CARD_PADDING_INFO_PRESENT */
    DWORD dwPaddingType;
} CARD_SIGNING_INFO, *PCARD_SIGNING_INFO;

typedef struct _CARD_RSA_DECRYPT_INFO {
    DWORD dwVersion;
    BYTE bContainerIndex;
    DWORD dwKeySpec;
    PBYTE pbData;         /* decrypted in place, little-endian */
    DWORD cbData;
    LPVOID pPaddingInfo;  /* version 2 */
    DWORD dwPaddingType;
} CARD_RSA_DECRYPT_INFO, *PCARD_RSA_DECRYPT_INFO;

typedef struct _CARD_DH_AGREEMENT_INFO {
    DWORD dwVersion;
    BYTE bContainerIndex;
    DWORD dwFlags;
    DWORD dwPublicKey;
    PBYTE pbPublicKey;
    PBYTE pbReserved;
    DWORD cbReserved;
    BYTE bSecretAgreementIndex;
} CARD_DH_AGREEMENT_INFO, *PCARD_DH_AGREEMENT_INFO;

/* bcrypt.h's buffers, as CARD_DERIVE_KEY's parameter list uses them */
typedef struct _BCryptBuffer {
    ULONG cbBuffer;
    ULONG BufferType;
    PVOID pvBuffer;
} BCryptBuffer, *PBCryptBuffer;

typedef struct _BCryptBufferDesc {
    ULONG ulVersion;
    ULONG cBuffers;
    PBCryptBuffer pBuffers;
} BCryptBufferDesc, *PBCryptBufferDesc;

typedef struct _CARD_DERIVE_KEY {
    DWORD dwVersion;
    DWORD dwFlags;
    LPWSTR pwszKDF;
    BYTE bSecretAgreementIndex;
    PVOID pParameterList;  /* a BCryptBufferDesc */
    PUCHAR pbDerivedKey;   /* allocated by the card with pfnCspAlloc */
    DWORD cbDerivedKey;
    LPWSTR pwszAlgId;      /* version 2 */
    DWORD dwKeyLen;
    CARD_KEY_HANDLE hKey;
} CARD_DERIVE_KEY, *PCARD_DERIVE_KEY;

typedef struct _BCRYPT_PKCS1_PADDING_INFO {
    LPCWSTR pszAlgId;
} BCRYPT_PKCS1_PADDING_INFO;

typedef struct _BCRYPT_PSS_PADDING_INFO {
    LPCWSTR pszAlgId;
    ULONG cbSalt;
} BCRYPT_PSS_PADDING_INFO;

typedef struct _BCRYPT_OAEP_PADDING_INFO {
    LPCWSTR pszAlgId;
    PUCHAR pbLabel;
    ULONG cbLabel;
} BCRYPT_OAEP_PADDING_INFO;

/* What the CSP gives the card */
typedef LPVOID (*PFN_CSP_ALLOC)(SIZE_T Size);
typedef LPVOID (*PFN_CSP_REALLOC)(LPVOID Address, SIZE_T Size);
typedef void (*PFN_CSP_FREE)(LPVOID Address);
typedef DWORD (*PFN_CSP_CACHE_ADD_FILE)(PVOID pvCacheContext, LPWSTR wszTag, DWORD dwFlags, PBYTE pbData,
                                        DWORD cbData);
typedef DWORD (*PFN_CSP_CACHE_LOOKUP_FILE)(PVOID pvCacheContext, LPWSTR wszTag, DWORD dwFlags, PBYTE *ppbData,
                                           PDWORD pcbData);
typedef DWORD (*PFN_CSP_CACHE_DELETE_FILE)(PVOID pvCacheContext, LPWSTR wszTag, DWORD dwFlags);
typedef DWORD (*PFN_CSP_PAD_DATA)(PCARD_SIGNING_INFO pSigningInfo, DWORD cbMaxWidth, DWORD *pcbPaddedBuffer,
                                  PBYTE *ppbPaddedBuffer);
typedef DWORD (*PFN_CSP_GET_DH_AGREEMENT)(PCARD_DATA pCardData, PVOID hSecretAgreement,
                                          BYTE *pbSecretAgreementIndex, DWORD dwFlags);
typedef DWORD (*PFN_CSP_UNPAD_DATA)(PCARD_RSA_DECRYPT_INFO pRSADecryptInfo, DWORD *pcbUnpaddedData,
                                    PBYTE *ppbUnpaddedData);

/* What the card gives the CSP */
typedef DWORD (*PFN_CARD_DELETE_CONTEXT)(PCARD_DATA pCardData);
typedef DWORD (*PFN_CARD_QUERY_CAPABILITIES)(PCARD_DATA pCardData, PCARD_CAPABILITIES pCardCapabilities);
typedef DWORD (*PFN_CARD_DELETE_CONTAINER)(PCARD_DATA pCardData, BYTE bContainerIndex, DWORD dwReserved);
typedef DWORD (*PFN_CARD_CREATE_CONTAINER)(PCARD_DATA pCardData, BYTE bContainerIndex, DWORD dwFlags,
                                           DWORD dwKeySpec, DWORD dwKeySize, PBYTE pbKeyData);
typedef DWORD (*PFN_CARD_GET_CONTAINER_INFO)(PCARD_DATA pCardData, BYTE bContainerIndex, DWORD dwFlags,
                                             PCONTAINER_INFO pContainerInfo);
typedef DWORD (*PFN_CARD_AUTHENTICATE_PIN)(PCARD_DATA pCardData, LPWSTR pwszUserId, PBYTE pbPin, DWORD cbPin,
                                           PDWORD pcAttemptsRemaining);
typedef DWORD (*PFN_CARD_GET_CHALLENGE)(PCARD_DATA pCardData, PBYTE *ppbChallengeData, PDWORD pcbChallengeData);
typedef DWORD (*PFN_CARD_AUTHENTICATE_CHALLENGE)(PCARD_DATA pCardData, PBYTE pbResponseData,
                                                 DWORD cbResponseData, PDWORD pcAttemptsRemaining);
typedef DWORD (*PFN_CARD_UNBLOCK_PIN)(PCARD_DATA pCardData, LPWSTR pwszUserId, PBYTE pbAuthenticationData,
                                      DWORD cbAuthenticationData, PBYTE pbNewPinData, DWORD cbNewPinData,
                                      DWORD cRetryCount, DWORD dwFlags);
typedef DWORD (*PFN_CARD_CHANGE_AUTHENTICATOR)(PCARD_DATA pCardData, LPWSTR pwszUserId,
                                               PBYTE pbCurrentAuthenticator, DWORD cbCurrentAuthenticator,
                                               PBYTE pbNewAuthenticator, DWORD cbNewAuthenticator,
                                               DWORD cRetryCount, DWORD dwFlags, PDWORD pcAttemptsRemaining);
typedef DWORD (*PFN_CARD_DEAUTHENTICATE)(PCARD_DATA pCardData, LPWSTR pwszUserId, DWORD dwFlags);
typedef DWORD (*PFN_CARD_CREATE_DIRECTORY)(PCARD_DATA pCardData, LPSTR pszDirectoryName,
                                           CARD_DIRECTORY_ACCESS_CONDITION AccessCondition);
typedef DWORD (*PFN_CARD_DELETE_DIRECTORY)(PCARD_DATA pCardData, LPSTR pszDirectoryName);
typedef DWORD (*PFN_CARD_CREATE_FILE)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR pszFileName,
                                      DWORD cbInitialCreationSize, CARD_FILE_ACCESS_CONDITION AccessCondition);
typedef DWORD (*PFN_CARD_READ_FILE)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR pszFileName,
                                    DWORD dwFlags, PBYTE *ppbData, PDWORD pcbData);
typedef DWORD (*PFN_CARD_WRITE_FILE)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR pszFileName,
                                     DWORD dwFlags, PBYTE pbData, DWORD cbData);
typedef DWORD (*PFN_CARD_DELETE_FILE)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR pszFileName,
                                      DWORD dwFlags);
typedef DWORD (*PFN_CARD_ENUM_FILES)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR *pmszFileNames,
                                     LPDWORD pdwcbFileName, DWORD dwFlags);
typedef DWORD (*PFN_CARD_GET_FILE_INFO)(PCARD_DATA pCardData, LPSTR pszDirectoryName, LPSTR pszFileName,
                                        PCARD_FILE_INFO pCardFileInfo);
typedef DWORD (*PFN_CARD_QUERY_FREE_SPACE)(PCARD_DATA pCardData, DWORD dwFlags,
                                           PCARD_FREE_SPACE_INFO pCardFreeSpaceInfo);
typedef DWORD (*PFN_CARD_QUERY_KEY_SIZES)(PCARD_DATA pCardData, DWORD dwKeySpec, DWORD dwFlags,
                                          PCARD_KEY_SIZES pKeySizes);
typedef DWORD (*PFN_CARD_SIGN_DATA)(PCARD_DATA pCardData, PCARD_SIGNING_INFO pInfo);
typedef DWORD (*PFN_CARD_RSA_DECRYPT)(PCARD_DATA pCardData, PCARD_RSA_DECRYPT_INFO pInfo);
typedef DWORD (*PFN_CARD_CONSTRUCT_DH_AGREEMENT)(PCARD_DATA pCardData, PCARD_DH_AGREEMENT_INFO pAgreementInfo);
typedef DWORD (*PFN_CARD_DERIVE_KEY)(PCARD_DATA pCardData, PCARD_DERIVE_KEY pAgreementInfo);
typedef DWORD (*PFN_CARD_DESTROY_DH_AGREEMENT)(PCARD_DATA pCardData, BYTE bSecretAgreementIndex, DWORD dwFlags);
typedef DWORD (*PFN_CARD_GET_CHALLENGE_EX)(PCARD_DATA pCardData, PIN_ID PinId, PBYTE *ppbChallengeData,
                                           PDWORD pcbChallengeData, DWORD dwFlags);
typedef DWORD (*PFN_CARD_AUTHENTICATE_EX)(PCARD_DATA pCardData, PIN_ID PinId, DWORD dwFlags, PBYTE pbPinData,
                                          DWORD cbPinData, PBYTE *ppbSessionPin, PDWORD pcbSessionPin,
                                          PDWORD pcAttemptsRemaining);
typedef DWORD (*PFN_CARD_CHANGE_AUTHENTICATOR_EX)(PCARD_DATA pCardData, DWORD dwFlags, PIN_ID dwAuthenticatingPinId,
                                                  PBYTE pbAuthenticatingPinData, DWORD cbAuthenticatingPinData,
                                                  PIN_ID dwTargetPinId, PBYTE pbTargetData, DWORD cbTargetData,
                                                  DWORD cRetryCount, PDWORD pcAttemptsRemaining);
typedef DWORD (*PFN_CARD_DEAUTHENTICATE_EX)(PCARD_DATA pCardData, PIN_SET PinId, DWORD dwFlags);
typedef DWORD (*PFN_CARD_GET_CONTAINER_PROPERTY)(PCARD_DATA pCardData, BYTE bContainerIndex, LPCWSTR wszProperty,
                                                 PBYTE pbData, DWORD cbData, PDWORD pdwDataLen, DWORD dwFlags);
typedef DWORD (*PFN_CARD_SET_CONTAINER_PROPERTY)(PCARD_DATA pCardData, BYTE bContainerIndex, LPCWSTR wszProperty,
                                                 PBYTE pbData, DWORD cbDataLen, DWORD dwFlags);
typedef DWORD (*PFN_CARD_GET_PROPERTY)(PCARD_DATA pCardData, LPCWSTR wszProperty, PBYTE pbData, DWORD cbData,
                                       PDWORD pdwDataLen, DWORD dwFlags);
typedef DWORD (*PFN_CARD_SET_PROPERTY)(PCARD_DATA pCardData, LPCWSTR wszProperty, PBYTE pbData, DWORD cbDataLen,
                                       DWORD dwFlags);
typedef DWORD (*PFN_CARD_CREATE_CONTAINER_EX)(PCARD_DATA pCardData, BYTE bContainerIndex, DWORD dwFlags,
                                              DWORD dwKeySpec, DWORD dwKeySize, PBYTE pbKeyData, PIN_ID PinId);
/* Version 7's secure key injection and key-handle functions: not offered here (left NULL). */
typedef PVOID PFN_CARD_NOT_OFFERED;

struct _CARD_DATA {
    /* filled by the caller */
    DWORD dwVersion;
    PBYTE pbAtr;
    DWORD cbAtr;
    LPWSTR pwszCardName;
    PFN_CSP_ALLOC pfnCspAlloc;
    PFN_CSP_REALLOC pfnCspReAlloc;
    PFN_CSP_FREE pfnCspFree;
    PFN_CSP_CACHE_ADD_FILE pfnCspCacheAddFile;
    PFN_CSP_CACHE_LOOKUP_FILE pfnCspCacheLookupFile;
    PFN_CSP_CACHE_DELETE_FILE pfnCspCacheDeleteFile;
    PVOID pvCacheContext;
    PFN_CSP_PAD_DATA pfnCspPadData;
    SCARDCONTEXT hSCardCtx;
    SCARDHANDLE hScard;
    /* the card's own */
    PVOID pvVendorSpecific;
    /* filled by CardAcquireContext (version 4) */
    PFN_CARD_DELETE_CONTEXT pfnCardDeleteContext;
    PFN_CARD_QUERY_CAPABILITIES pfnCardQueryCapabilities;
    PFN_CARD_DELETE_CONTAINER pfnCardDeleteContainer;
    PFN_CARD_CREATE_CONTAINER pfnCardCreateContainer;
    PFN_CARD_GET_CONTAINER_INFO pfnCardGetContainerInfo;
    PFN_CARD_AUTHENTICATE_PIN pfnCardAuthenticatePin;
    PFN_CARD_GET_CHALLENGE pfnCardGetChallenge;
    PFN_CARD_AUTHENTICATE_CHALLENGE pfnCardAuthenticateChallenge;
    PFN_CARD_UNBLOCK_PIN pfnCardUnblockPin;
    PFN_CARD_CHANGE_AUTHENTICATOR pfnCardChangeAuthenticator;
    PFN_CARD_DEAUTHENTICATE pfnCardDeauthenticate;
    PFN_CARD_CREATE_DIRECTORY pfnCardCreateDirectory;
    PFN_CARD_DELETE_DIRECTORY pfnCardDeleteDirectory;
    LPVOID pvUnused3;
    LPVOID pvUnused4;
    PFN_CARD_CREATE_FILE pfnCardCreateFile;
    PFN_CARD_READ_FILE pfnCardReadFile;
    PFN_CARD_WRITE_FILE pfnCardWriteFile;
    PFN_CARD_DELETE_FILE pfnCardDeleteFile;
    PFN_CARD_ENUM_FILES pfnCardEnumFiles;
    PFN_CARD_GET_FILE_INFO pfnCardGetFileInfo;
    PFN_CARD_QUERY_FREE_SPACE pfnCardQueryFreeSpace;
    PFN_CARD_QUERY_KEY_SIZES pfnCardQueryKeySizes;
    PFN_CARD_SIGN_DATA pfnCardSignData;
    PFN_CARD_RSA_DECRYPT pfnCardRSADecrypt;
    PFN_CARD_CONSTRUCT_DH_AGREEMENT pfnCardConstructDHAgreement;
    /* version 5 */
    PFN_CARD_DERIVE_KEY pfnCardDeriveKey;
    PFN_CARD_DESTROY_DH_AGREEMENT pfnCardDestroyDHAgreement;
    PFN_CSP_GET_DH_AGREEMENT pfnCspGetDHAgreement; /* the caller's */
    /* version 6 */
    PFN_CARD_GET_CHALLENGE_EX pfnCardGetChallengeEx;
    PFN_CARD_AUTHENTICATE_EX pfnCardAuthenticateEx;
    PFN_CARD_CHANGE_AUTHENTICATOR_EX pfnCardChangeAuthenticatorEx;
    PFN_CARD_DEAUTHENTICATE_EX pfnCardDeauthenticateEx;
    PFN_CARD_GET_CONTAINER_PROPERTY pfnCardGetContainerProperty;
    PFN_CARD_SET_CONTAINER_PROPERTY pfnCardSetContainerProperty;
    PFN_CARD_GET_PROPERTY pfnCardGetProperty;
    PFN_CARD_SET_PROPERTY pfnCardSetProperty;
    /* version 7 */
    PFN_CSP_UNPAD_DATA pfnCspUnpadData; /* the caller's */
    PFN_CARD_NOT_OFFERED pfnMDImportSessionKey;
    PFN_CARD_NOT_OFFERED pfnMDEncryptData;
    PFN_CARD_NOT_OFFERED pfnCardImportSessionKey;
    PFN_CARD_NOT_OFFERED pfnCardGetSharedKeyHandle;
    PFN_CARD_NOT_OFFERED pfnCardGetAlgorithmProperty;
    PFN_CARD_NOT_OFFERED pfnCardGetKeyProperty;
    PFN_CARD_NOT_OFFERED pfnCardSetKeyProperty;
    PFN_CARD_NOT_OFFERED pfnCardDestroyKey;
    PFN_CARD_NOT_OFFERED pfnCardProcessEncryptedData;
    PFN_CARD_CREATE_CONTAINER_EX pfnCardCreateContainerEx;
};

typedef DWORD (*PFN_CARD_ACQUIRE_CONTEXT)(PCARD_DATA pCardData, DWORD dwFlags);
