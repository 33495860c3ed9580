#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
/* Pin the API level: 1.1-era deprecated calls (RSA_*, EVP_PKEY_get0_RSA) are not even declared. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "scep-fcgi needs OpenSSL 3"
#endif
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Every shim below exists because OpenSSL defines the name as a function-like macro,
   which Swift cannot import. */
static inline int COpenSSL_sk_X509_num(const STACK_OF(X509) *_Nullable sk) { return sk_X509_num(sk); }
static inline X509 *_Nullable COpenSSL_sk_X509_value(const STACK_OF(X509) *_Nonnull sk, int i) { return sk_X509_value(sk, i); }
static inline STACK_OF(X509) *_Nullable COpenSSL_sk_X509_new_null(void) { return sk_X509_new_null(); }
static inline int COpenSSL_sk_X509_push(STACK_OF(X509) *_Nonnull sk, X509 *_Nonnull x) { return sk_X509_push(sk, x); }
/* Frees the stack only; the certificates stay owned by whoever owned them. */
static inline void COpenSSL_sk_X509_free(STACK_OF(X509) *_Nullable sk) { sk_X509_free(sk); }
static inline void COpenSSL_sk_X509_pop_free(STACK_OF(X509) *_Nullable sk) { sk_X509_pop_free(sk, X509_free); }

static inline int COpenSSL_sk_X509_EXTENSION_num(const STACK_OF(X509_EXTENSION) *_Nullable sk) { return sk_X509_EXTENSION_num(sk); }
static inline X509_EXTENSION *_Nullable COpenSSL_sk_X509_EXTENSION_value(const STACK_OF(X509_EXTENSION) *_Nonnull sk, int i) { return sk_X509_EXTENSION_value(sk, i); }
static inline STACK_OF(X509_EXTENSION) *_Nullable COpenSSL_sk_X509_EXTENSION_new_null(void) { return sk_X509_EXTENSION_new_null(); }
static inline int COpenSSL_sk_X509_EXTENSION_push(STACK_OF(X509_EXTENSION) *_Nonnull sk, X509_EXTENSION *_Nonnull x) { return sk_X509_EXTENSION_push(sk, x); }
static inline void COpenSSL_sk_X509_EXTENSION_pop_free(STACK_OF(X509_EXTENSION) *_Nullable sk) { sk_X509_EXTENSION_pop_free(sk, X509_EXTENSION_free); }

static inline int COpenSSL_sk_GENERAL_NAME_num(const GENERAL_NAMES *_Nullable sk) { return sk_GENERAL_NAME_num(sk); }
static inline GENERAL_NAME *_Nullable COpenSSL_sk_GENERAL_NAME_value(const GENERAL_NAMES *_Nonnull sk, int i) { return sk_GENERAL_NAME_value(sk, i); }
static inline int COpenSSL_sk_GENERAL_NAME_push(GENERAL_NAMES *_Nonnull sk, GENERAL_NAME *_Nonnull gn) { return sk_GENERAL_NAME_push(sk, gn); }
/* Removes and returns entry i, so a filtered copy can be built without duplicating names. */
static inline GENERAL_NAME *_Nullable COpenSSL_sk_GENERAL_NAME_delete(GENERAL_NAMES *_Nonnull sk, int i) { return sk_GENERAL_NAME_delete(sk, i); }

static inline int COpenSSL_sk_CMS_SignerInfo_num(STACK_OF(CMS_SignerInfo) *_Nullable sk) { return sk_CMS_SignerInfo_num(sk); }
static inline CMS_SignerInfo *_Nullable COpenSSL_sk_CMS_SignerInfo_value(STACK_OF(CMS_SignerInfo) *_Nonnull sk, int i) { return sk_CMS_SignerInfo_value(sk, i); }
static inline int COpenSSL_sk_CMS_RecipientInfo_num(STACK_OF(CMS_RecipientInfo) *_Nullable sk) { return sk_CMS_RecipientInfo_num(sk); }
static inline CMS_RecipientInfo *_Nullable COpenSSL_sk_CMS_RecipientInfo_value(STACK_OF(CMS_RecipientInfo) *_Nonnull sk, int i) { return sk_CMS_RecipientInfo_value(sk, i); }

static inline int COpenSSL_sk_X509_REVOKED_num(const STACK_OF(X509_REVOKED) *_Nullable sk) { return sk_X509_REVOKED_num(sk); }
static inline X509_REVOKED *_Nullable COpenSSL_sk_X509_REVOKED_value(const STACK_OF(X509_REVOKED) *_Nonnull sk, int i) { return sk_X509_REVOKED_value(sk, i); }
static inline int COpenSSL_sk_X509_CRL_num(const STACK_OF(X509_CRL) *_Nullable sk) { return sk_X509_CRL_num(sk); }
static inline X509_CRL *_Nullable COpenSSL_sk_X509_CRL_value(const STACK_OF(X509_CRL) *_Nonnull sk, int i) { return sk_X509_CRL_value(sk, i); }
static inline void COpenSSL_sk_X509_CRL_pop_free(STACK_OF(X509_CRL) *_Nullable sk) { sk_X509_CRL_pop_free(sk, X509_CRL_free); }

static inline long COpenSSL_BIO_get_mem_data(BIO *_Nonnull b, char *_Nullable *_Nonnull pp) { return BIO_get_mem_data(b, pp); }
static inline void COpenSSL_OPENSSL_free(void *_Nullable p) { OPENSSL_free(p); }

/* XN_FLAG_RFC2253 is an OR of several macros: expose it as one constant. */
static inline unsigned long COpenSSL_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }
#endif
