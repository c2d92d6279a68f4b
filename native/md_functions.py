"""The card-edge functions CardAcquireContext hands out: (name, parameters, CARD_DATA version that has the
field), in CARD_DATA's order. md_build.py generates the cdef, the C wrappers and the table filling from it."""

from __future__ import annotations

Param = tuple[str, str]

CD: Param = ("PCARD_DATA", "pCardData")
DIR: Param = ("LPSTR", "pszDirectoryName")
FILE: Param = ("LPSTR", "pszFileName")
IDX: Param = ("BYTE", "bContainerIndex")
FLAGS: Param = ("DWORD", "dwFlags")
TRIES: Param = ("PDWORD", "pcAttemptsRemaining")

FUNCTIONS: list[tuple[str, list[Param], int]] = [
    ("CardDeleteContext", [CD], 4),
    ("CardQueryCapabilities", [CD, ("PCARD_CAPABILITIES", "pCardCapabilities")], 4),
    ("CardDeleteContainer", [CD, IDX, ("DWORD", "dwReserved")], 4),
    (
        "CardCreateContainer",
        [CD, IDX, FLAGS, ("DWORD", "dwKeySpec"), ("DWORD", "dwKeySize"), ("PBYTE", "pbKeyData")],
        4,
    ),
    ("CardGetContainerInfo", [CD, IDX, FLAGS, ("PCONTAINER_INFO", "pContainerInfo")], 4),
    ("CardAuthenticatePin", [CD, ("LPWSTR", "pwszUserId"), ("PBYTE", "pbPin"), ("DWORD", "cbPin"), TRIES], 4),
    ("CardGetChallenge", [CD, ("PBYTE *", "ppbChallengeData"), ("PDWORD", "pcbChallengeData")], 4),
    ("CardAuthenticateChallenge", [CD, ("PBYTE", "pbResponseData"), ("DWORD", "cbResponseData"), TRIES], 4),
    (
        "CardUnblockPin",
        [
            CD,
            ("LPWSTR", "pwszUserId"),
            ("PBYTE", "pbAuthenticationData"),
            ("DWORD", "cbAuthenticationData"),
            ("PBYTE", "pbNewPinData"),
            ("DWORD", "cbNewPinData"),
            ("DWORD", "cRetryCount"),
            FLAGS,
        ],
        4,
    ),
    (
        "CardChangeAuthenticator",
        [
            CD,
            ("LPWSTR", "pwszUserId"),
            ("PBYTE", "pbCurrentAuthenticator"),
            ("DWORD", "cbCurrentAuthenticator"),
            ("PBYTE", "pbNewAuthenticator"),
            ("DWORD", "cbNewAuthenticator"),
            ("DWORD", "cRetryCount"),
            FLAGS,
            TRIES,
        ],
        4,
    ),
    ("CardDeauthenticate", [CD, ("LPWSTR", "pwszUserId"), FLAGS], 4),
    ("CardCreateDirectory", [CD, DIR, ("CARD_DIRECTORY_ACCESS_CONDITION", "AccessCondition")], 4),
    ("CardDeleteDirectory", [CD, DIR], 4),
    (
        "CardCreateFile",
        [CD, DIR, FILE, ("DWORD", "cbInitialCreationSize"), ("CARD_FILE_ACCESS_CONDITION", "AccessCondition")],
        4,
    ),
    ("CardReadFile", [CD, DIR, FILE, FLAGS, ("PBYTE *", "ppbData"), ("PDWORD", "pcbData")], 4),
    ("CardWriteFile", [CD, DIR, FILE, FLAGS, ("PBYTE", "pbData"), ("DWORD", "cbData")], 4),
    ("CardDeleteFile", [CD, DIR, FILE, FLAGS], 4),
    ("CardEnumFiles", [CD, DIR, ("LPSTR *", "pmszFileNames"), ("LPDWORD", "pdwcbFileName"), FLAGS], 4),
    ("CardGetFileInfo", [CD, DIR, FILE, ("PCARD_FILE_INFO", "pCardFileInfo")], 4),
    ("CardQueryFreeSpace", [CD, FLAGS, ("PCARD_FREE_SPACE_INFO", "pCardFreeSpaceInfo")], 4),
    ("CardQueryKeySizes", [CD, ("DWORD", "dwKeySpec"), FLAGS, ("PCARD_KEY_SIZES", "pKeySizes")], 4),
    ("CardSignData", [CD, ("PCARD_SIGNING_INFO", "pInfo")], 4),
    ("CardRSADecrypt", [CD, ("PCARD_RSA_DECRYPT_INFO", "pInfo")], 4),
    ("CardConstructDHAgreement", [CD, ("PCARD_DH_AGREEMENT_INFO", "pAgreementInfo")], 4),
    ("CardDeriveKey", [CD, ("PCARD_DERIVE_KEY", "pAgreementInfo")], 5),
    ("CardDestroyDHAgreement", [CD, ("BYTE", "bSecretAgreementIndex"), FLAGS], 5),
    (
        "CardGetChallengeEx",
        [CD, ("PIN_ID", "PinId"), ("PBYTE *", "ppbChallengeData"), ("PDWORD", "pcbChallengeData"), FLAGS],
        6,
    ),
    (
        "CardAuthenticateEx",
        [
            CD,
            ("PIN_ID", "PinId"),
            FLAGS,
            ("PBYTE", "pbPinData"),
            ("DWORD", "cbPinData"),
            ("PBYTE *", "ppbSessionPin"),
            ("PDWORD", "pcbSessionPin"),
            TRIES,
        ],
        6,
    ),
    (
        "CardChangeAuthenticatorEx",
        [
            CD,
            FLAGS,
            ("PIN_ID", "dwAuthenticatingPinId"),
            ("PBYTE", "pbAuthenticatingPinData"),
            ("DWORD", "cbAuthenticatingPinData"),
            ("PIN_ID", "dwTargetPinId"),
            ("PBYTE", "pbTargetData"),
            ("DWORD", "cbTargetData"),
            ("DWORD", "cRetryCount"),
            TRIES,
        ],
        6,
    ),
    ("CardDeauthenticateEx", [CD, ("PIN_SET", "PinId"), FLAGS], 6),
    (
        "CardGetContainerProperty",
        [
            CD,
            IDX,
            ("LPCWSTR", "wszProperty"),
            ("PBYTE", "pbData"),
            ("DWORD", "cbData"),
            ("PDWORD", "pdwDataLen"),
            FLAGS,
        ],
        6,
    ),
    (
        "CardSetContainerProperty",
        [CD, IDX, ("LPCWSTR", "wszProperty"), ("PBYTE", "pbData"), ("DWORD", "cbDataLen"), FLAGS],
        6,
    ),
    (
        "CardGetProperty",
        [CD, ("LPCWSTR", "wszProperty"), ("PBYTE", "pbData"), ("DWORD", "cbData"), ("PDWORD", "pdwDataLen"), FLAGS],
        6,
    ),
    ("CardSetProperty", [CD, ("LPCWSTR", "wszProperty"), ("PBYTE", "pbData"), ("DWORD", "cbDataLen"), FLAGS], 6),
    (
        "CardCreateContainerEx",
        [
            CD,
            IDX,
            FLAGS,
            ("DWORD", "dwKeySpec"),
            ("DWORD", "dwKeySize"),
            ("PBYTE", "pbKeyData"),
            ("PIN_ID", "PinId"),
        ],
        7,
    ),
]

ACQUIRE: list[Param] = [CD, ("DWORD", "dwFlags")]
