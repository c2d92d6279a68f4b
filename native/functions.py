"""The PKCS#11 function table: names and parameter lists in the order of CK_FUNCTION_LIST (2.40, then 3.0, then 3.2).

The build script generates the cdef, the C wrappers and the function-list initialisers from this table.
"""

from __future__ import annotations

Param = tuple[str, str]

S = ("CK_SESSION_HANDLE", "hSession")
MECH = ("CK_MECHANISM *", "pMechanism")
KEY = ("CK_OBJECT_HANDLE", "hKey")


def _data(prefix: str) -> list[Param]:
    return [("CK_BYTE_PTR", f"p{prefix}"), ("CK_ULONG", f"ul{prefix}Len")]


def _out(prefix: str) -> list[Param]:
    return [("CK_BYTE_PTR", f"p{prefix}"), ("CK_ULONG_PTR", f"pul{prefix}Len")]


V2: list[tuple[str, list[Param]]] = [
    ("C_Initialize", [("CK_VOID_PTR", "pInitArgs")]),
    ("C_Finalize", [("CK_VOID_PTR", "pReserved")]),
    ("C_GetInfo", [("CK_INFO *", "pInfo")]),
    ("C_GetFunctionList", [("void **", "ppFunctionList")]),
    ("C_GetSlotList", [("CK_BBOOL", "tokenPresent"), ("CK_SLOT_ID_PTR", "pSlotList"), ("CK_ULONG_PTR", "pulCount")]),
    ("C_GetSlotInfo", [("CK_SLOT_ID", "slotID"), ("CK_SLOT_INFO *", "pInfo")]),
    ("C_GetTokenInfo", [("CK_SLOT_ID", "slotID"), ("CK_TOKEN_INFO *", "pInfo")]),
    (
        "C_GetMechanismList",
        [("CK_SLOT_ID", "slotID"), ("CK_MECHANISM_TYPE_PTR", "pMechanismList"), ("CK_ULONG_PTR", "pulCount")],
    ),
    (
        "C_GetMechanismInfo",
        [("CK_SLOT_ID", "slotID"), ("CK_MECHANISM_TYPE", "type"), ("CK_MECHANISM_INFO *", "pInfo")],
    ),
    ("C_InitToken", [("CK_SLOT_ID", "slotID"), *_data("Pin"), ("CK_UTF8CHAR_PTR", "pLabel")]),
    ("C_InitPIN", [S, *_data("Pin")]),
    ("C_SetPIN", [S, *_data("OldPin"), *_data("NewPin")]),
    (
        "C_OpenSession",
        [
            ("CK_SLOT_ID", "slotID"),
            ("CK_FLAGS", "flags"),
            ("CK_VOID_PTR", "pApplication"),
            ("CK_NOTIFY", "Notify"),
            ("CK_SESSION_HANDLE_PTR", "phSession"),
        ],
    ),
    ("C_CloseSession", [S]),
    ("C_CloseAllSessions", [("CK_SLOT_ID", "slotID")]),
    ("C_GetSessionInfo", [S, ("CK_SESSION_INFO *", "pInfo")]),
    ("C_GetOperationState", [S, *_out("OperationState")]),
    (
        "C_SetOperationState",
        [
            S,
            *_data("OperationState"),
            ("CK_OBJECT_HANDLE", "hEncryptionKey"),
            ("CK_OBJECT_HANDLE", "hAuthenticationKey"),
        ],
    ),
    ("C_Login", [S, ("CK_USER_TYPE", "userType"), *_data("Pin")]),
    ("C_Logout", [S]),
    (
        "C_CreateObject",
        [S, ("CK_ATTRIBUTE *", "pTemplate"), ("CK_ULONG", "ulCount"), ("CK_OBJECT_HANDLE_PTR", "phObject")],
    ),
    (
        "C_CopyObject",
        [
            S,
            ("CK_OBJECT_HANDLE", "hObject"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulCount"),
            ("CK_OBJECT_HANDLE_PTR", "phNewObject"),
        ],
    ),
    ("C_DestroyObject", [S, ("CK_OBJECT_HANDLE", "hObject")]),
    ("C_GetObjectSize", [S, ("CK_OBJECT_HANDLE", "hObject"), ("CK_ULONG_PTR", "pulSize")]),
    (
        "C_GetAttributeValue",
        [S, ("CK_OBJECT_HANDLE", "hObject"), ("CK_ATTRIBUTE *", "pTemplate"), ("CK_ULONG", "ulCount")],
    ),
    (
        "C_SetAttributeValue",
        [S, ("CK_OBJECT_HANDLE", "hObject"), ("CK_ATTRIBUTE *", "pTemplate"), ("CK_ULONG", "ulCount")],
    ),
    ("C_FindObjectsInit", [S, ("CK_ATTRIBUTE *", "pTemplate"), ("CK_ULONG", "ulCount")]),
    (
        "C_FindObjects",
        [S, ("CK_OBJECT_HANDLE_PTR", "phObject"), ("CK_ULONG", "ulMaxObjectCount"), ("CK_ULONG_PTR", "pulObjectCount")],
    ),
    ("C_FindObjectsFinal", [S]),
    ("C_EncryptInit", [S, MECH, KEY]),
    ("C_Encrypt", [S, *_data("Data"), *_out("EncryptedData")]),
    ("C_EncryptUpdate", [S, *_data("Part"), *_out("EncryptedPart")]),
    ("C_EncryptFinal", [S, *_out("LastEncryptedPart")]),
    ("C_DecryptInit", [S, MECH, KEY]),
    ("C_Decrypt", [S, *_data("EncryptedData"), *_out("Data")]),
    ("C_DecryptUpdate", [S, *_data("EncryptedPart"), *_out("Part")]),
    ("C_DecryptFinal", [S, *_out("LastPart")]),
    ("C_DigestInit", [S, MECH]),
    ("C_Digest", [S, *_data("Data"), *_out("Digest")]),
    ("C_DigestUpdate", [S, *_data("Part")]),
    ("C_DigestKey", [S, KEY]),
    ("C_DigestFinal", [S, *_out("Digest")]),
    ("C_SignInit", [S, MECH, KEY]),
    ("C_Sign", [S, *_data("Data"), *_out("Signature")]),
    ("C_SignUpdate", [S, *_data("Part")]),
    ("C_SignFinal", [S, *_out("Signature")]),
    ("C_SignRecoverInit", [S, MECH, KEY]),
    ("C_SignRecover", [S, *_data("Data"), *_out("Signature")]),
    ("C_VerifyInit", [S, MECH, KEY]),
    ("C_Verify", [S, *_data("Data"), *_data("Signature")]),
    ("C_VerifyUpdate", [S, *_data("Part")]),
    ("C_VerifyFinal", [S, *_data("Signature")]),
    ("C_VerifyRecoverInit", [S, MECH, KEY]),
    ("C_VerifyRecover", [S, *_data("Signature"), *_out("Data")]),
    ("C_DigestEncryptUpdate", [S, *_data("Part"), *_out("EncryptedPart")]),
    ("C_DecryptDigestUpdate", [S, *_data("EncryptedPart"), *_out("Part")]),
    ("C_SignEncryptUpdate", [S, *_data("Part"), *_out("EncryptedPart")]),
    ("C_DecryptVerifyUpdate", [S, *_data("EncryptedPart"), *_out("Part")]),
    (
        "C_GenerateKey",
        [S, MECH, ("CK_ATTRIBUTE *", "pTemplate"), ("CK_ULONG", "ulCount"), ("CK_OBJECT_HANDLE_PTR", "phKey")],
    ),
    (
        "C_GenerateKeyPair",
        [
            S,
            MECH,
            ("CK_ATTRIBUTE *", "pPublicKeyTemplate"),
            ("CK_ULONG", "ulPublicKeyAttributeCount"),
            ("CK_ATTRIBUTE *", "pPrivateKeyTemplate"),
            ("CK_ULONG", "ulPrivateKeyAttributeCount"),
            ("CK_OBJECT_HANDLE_PTR", "phPublicKey"),
            ("CK_OBJECT_HANDLE_PTR", "phPrivateKey"),
        ],
    ),
    ("C_WrapKey", [S, MECH, ("CK_OBJECT_HANDLE", "hWrappingKey"), KEY, *_out("WrappedKey")]),
    (
        "C_UnwrapKey",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hUnwrappingKey"),
            *_data("WrappedKey"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulAttributeCount"),
            ("CK_OBJECT_HANDLE_PTR", "phKey"),
        ],
    ),
    (
        "C_DeriveKey",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hBaseKey"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulAttributeCount"),
            ("CK_OBJECT_HANDLE_PTR", "phKey"),
        ],
    ),
    ("C_SeedRandom", [S, *_data("Seed")]),
    ("C_GenerateRandom", [S, ("CK_BYTE_PTR", "RandomData"), ("CK_ULONG", "ulRandomLen")]),
    ("C_GetFunctionStatus", [S]),
    ("C_CancelFunction", [S]),
    ("C_WaitForSlotEvent", [("CK_FLAGS", "flags"), ("CK_SLOT_ID_PTR", "pSlot"), ("CK_VOID_PTR", "pReserved")]),
]

# 3.0 additions, in table order. Message-based functions are answered in C (not supported).
V3: list[tuple[str, list[Param]]] = [
    ("C_GetInterfaceList", [("void *", "pInterfacesList"), ("CK_ULONG_PTR", "pulCount")]),
    (
        "C_GetInterface",
        [
            ("CK_UTF8CHAR_PTR", "pInterfaceName"),
            ("CK_VERSION *", "pVersion"),
            ("void **", "ppInterface"),
            ("CK_FLAGS", "flags"),
        ],
    ),
    (
        "C_LoginUser",
        [
            S,
            ("CK_USER_TYPE", "userType"),
            *_data("Pin"),
            ("CK_UTF8CHAR_PTR", "pUsername"),
            ("CK_ULONG", "ulUsernameLen"),
        ],
    ),
    ("C_SessionCancel", [S, ("CK_FLAGS", "flags")]),
    ("C_MessageEncryptInit", [S, MECH, KEY]),
    (
        "C_EncryptMessage",
        [
            S,
            ("CK_VOID_PTR", "pParameter"),
            ("CK_ULONG", "ulParameterLen"),
            *_data("AssociatedData"),
            *_data("Plaintext"),
            *_out("Ciphertext"),
        ],
    ),
    (
        "C_EncryptMessageBegin",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("AssociatedData")],
    ),
    (
        "C_EncryptMessageNext",
        [
            S,
            ("CK_VOID_PTR", "pParameter"),
            ("CK_ULONG", "ulParameterLen"),
            *_data("PlaintextPart"),
            *_out("CiphertextPart"),
            ("CK_FLAGS", "flags"),
        ],
    ),
    ("C_MessageEncryptFinal", [S]),
    ("C_MessageDecryptInit", [S, MECH, KEY]),
    (
        "C_DecryptMessage",
        [
            S,
            ("CK_VOID_PTR", "pParameter"),
            ("CK_ULONG", "ulParameterLen"),
            *_data("AssociatedData"),
            *_data("Ciphertext"),
            *_out("Plaintext"),
        ],
    ),
    (
        "C_DecryptMessageBegin",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("AssociatedData")],
    ),
    (
        "C_DecryptMessageNext",
        [
            S,
            ("CK_VOID_PTR", "pParameter"),
            ("CK_ULONG", "ulParameterLen"),
            *_data("CiphertextPart"),
            *_out("PlaintextPart"),
            ("CK_FLAGS", "flags"),
        ],
    ),
    ("C_MessageDecryptFinal", [S]),
    ("C_MessageSignInit", [S, MECH, KEY]),
    (
        "C_SignMessage",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("Data"), *_out("Signature")],
    ),
    ("C_SignMessageBegin", [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen")]),
    (
        "C_SignMessageNext",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("Data"), *_out("Signature")],
    ),
    ("C_MessageSignFinal", [S]),
    ("C_MessageVerifyInit", [S, MECH, KEY]),
    (
        "C_VerifyMessage",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("Data"), *_data("Signature")],
    ),
    ("C_VerifyMessageBegin", [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen")]),
    (
        "C_VerifyMessageNext",
        [S, ("CK_VOID_PTR", "pParameter"), ("CK_ULONG", "ulParameterLen"), *_data("Data"), *_data("Signature")],
    ),
    ("C_MessageVerifyFinal", [S]),
]

# 3.2 additions, in the order of CK_FUNCTION_LIST_3_2 (pkcs11f.h of the 3.2 headers). Of these only the KEM
# functions are implemented; the others are answered CKR_FUNCTION_NOT_SUPPORTED in C.
V32: list[tuple[str, list[Param]]] = [
    (
        "C_EncapsulateKey",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hPublicKey"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulAttributeCount"),
            *_out("Ciphertext"),
            ("CK_OBJECT_HANDLE_PTR", "phKey"),
        ],
    ),
    (
        "C_DecapsulateKey",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hPrivateKey"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulAttributeCount"),
            *_data("Ciphertext"),
            ("CK_OBJECT_HANDLE_PTR", "phKey"),
        ],
    ),
    ("C_VerifySignatureInit", [S, MECH, KEY, *_data("Signature")]),
    ("C_VerifySignature", [S, *_data("Data")]),
    ("C_VerifySignatureUpdate", [S, *_data("Part")]),
    ("C_VerifySignatureFinal", [S]),
    ("C_GetSessionValidationFlags", [S, ("CK_ULONG", "type"), ("CK_FLAGS_PTR", "pFlags")]),
    ("C_AsyncComplete", [S, ("CK_UTF8CHAR_PTR", "pFunctionName"), ("CK_VOID_PTR", "pResult")]),
    ("C_AsyncGetID", [S, ("CK_UTF8CHAR_PTR", "pFunctionName"), ("CK_ULONG_PTR", "pulID")]),
    (
        "C_AsyncJoin",
        [
            S,
            ("CK_UTF8CHAR_PTR", "pFunctionName"),
            ("CK_ULONG", "ulID"),
            ("CK_BYTE_PTR", "pData"),
            ("CK_ULONG", "ulData"),
        ],
    ),
    (
        "C_WrapKeyAuthenticated",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hWrappingKey"),
            KEY,
            *_data("AssociatedData"),
            *_out("WrappedKey"),
        ],
    ),
    (
        "C_UnwrapKeyAuthenticated",
        [
            S,
            MECH,
            ("CK_OBJECT_HANDLE", "hUnwrappingKey"),
            *_data("WrappedKey"),
            ("CK_ATTRIBUTE *", "pTemplate"),
            ("CK_ULONG", "ulAttributeCount"),
            *_data("AssociatedData"),
            ("CK_OBJECT_HANDLE_PTR", "phKey"),
        ],
    ),
]
V32_IN_PYTHON = {"C_EncapsulateKey", "C_DecapsulateKey"}

# Answered in C without entering Python: they make no sense for a software token.
NOT_SUPPORTED = {
    "C_GetOperationState",
    "C_SetOperationState",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_SessionCancel",
    *(name for name, _ in V3[4:]),
    *(name for name, _ in V32 if name not in V32_IN_PYTHON),
}
# Legacy functions whose spec answer is CKR_FUNCTION_NOT_PARALLEL.
NOT_PARALLEL = {"C_GetFunctionStatus", "C_CancelFunction"}
# Implemented in the C shim itself.
IN_C = {"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface", "C_LoginUser", "C_GetInfo"}


def signature(params: list[Param]) -> str:
    """A C parameter list."""
    return ", ".join(f"{ctype} {name}" for ctype, name in params) or "void"


def function_list_struct() -> str:
    """The C type of the function tables the shim fills: a CK_VERSION, then one pointer per function in the order
    of CK_FUNCTION_LIST_3_2 (the 2.40 and 3.0 tables use its first entries)."""
    fields = "".join(f"    CK_RV (*{name})({signature(p)});\n" for name, p in [*V2, *V3, *V32])
    return f"typedef struct VSC_FUNCTION_LIST {{\n    CK_VERSION version;\n{fields}}} VSC_FUNCTION_LIST;\n"


def python_functions() -> list[tuple[str, list[Param]]]:
    """The entry points that call into Python."""
    skip = NOT_SUPPORTED | NOT_PARALLEL | IN_C
    return [(name, params) for name, params in [*V2, *V32] if name not in skip]
