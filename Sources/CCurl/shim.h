#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt/curl_easy_getinfo are variadic (and macros via typecheck-gcc.h):
   Swift cannot call them, so one typed wrapper per argument kind. */
static inline CURLcode CCurl_easy_setopt_long(CURL *_Nonnull h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_ptr(CURL *_Nonnull h, CURLoption o, void *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_str(CURL *_Nonnull h, CURLoption o, const char *_Nullable v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*CCurl_write_callback)(char *_Nonnull, size_t, size_t, void *_Nullable);
static inline CURLcode CCurl_easy_setopt_write(CURL *_Nonnull h, CURLoption o, CCurl_write_callback _Nonnull f) { return curl_easy_setopt(h, o, f); }
static inline CURLcode CCurl_easy_getinfo_long(CURL *_Nonnull h, CURLINFO i, long *_Nonnull v) { return curl_easy_getinfo(h, i, v); }
#endif
