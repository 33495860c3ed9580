#ifndef CENGINEPKCS11_SHIM_H
#define CENGINEPKCS11_SHIM_H
/*
 * The only user of OpenSSL's ENGINE API. It is deprecated in OpenSSL 3, but on Debian 12 it is the
 * one way to reach a PKCS#11 token (libengine-pkcs11-openssl, libp11; pkcs11-provider is not packaged
 * for bookworm). COpenSSL keeps OPENSSL_NO_DEPRECATED for everything else; this shim alone sees the
 * engine declarations, and wraps the few calls scep-fcgi makes so Swift never names a deprecated one.
 *
 * Two traps (../shared/docs/lifecycle-peers.md §7): the engine registers no OSSL_STORE loader, so keys
 * load with ENGINE_load_private_key; and ENGINE_set_default would route every RSA operation through
 * the engine, which breaks RSA-OAEP encryption to software certificates (Windows clients' replies).
 * The engine is therefore initialised but never made a default: only keys loaded from it use it.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>

/* A functional reference to the pkcs11 engine (found in OpenSSL's engines directory), with the
   PKCS#11 module to load when module_path is given (else libp11's default, p11-kit's proxy). */
static inline ENGINE *_Nullable CEnginePKCS11_open(const char *_Nullable module_path) {
    ENGINE *engine = ENGINE_by_id("pkcs11");
    if (engine == NULL) return NULL;
    if (module_path != NULL && !ENGINE_ctrl_cmd_string(engine, "MODULE_PATH", module_path, 0)) {
        ENGINE_free(engine);
        return NULL;
    }
    if (!ENGINE_init(engine)) {
        ENGINE_free(engine);
        return NULL;
    }
    ENGINE_free(engine); /* keep the functional reference ENGINE_init took, drop the structural one */
    return engine;
}

/* Sets the token PIN for the next logins (libp11 keeps a copy; the caller wipes its own). */
static inline int CEnginePKCS11_set_pin(ENGINE *_Nonnull engine, const char *_Nonnull pin) {
    return ENGINE_ctrl_cmd_string(engine, "PIN", pin, 0);
}

/* The private key the RFC 7512 URI names, as an EVP_PKEY whose operations run on the token. */
static inline EVP_PKEY *_Nullable CEnginePKCS11_load_private_key(ENGINE *_Nonnull engine, const char *_Nonnull uri) {
    return ENGINE_load_private_key(engine, uri, NULL, NULL);
}
#endif
