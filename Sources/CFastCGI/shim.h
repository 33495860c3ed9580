#ifndef CFASTCGI_SHIM_H
#define CFASTCGI_SHIM_H
/* libfcgi imports directly; FCGX_FPrintF/FCGX_VFPrintF (variadic) are never used: FCGX_PutStr is. */
#include <fcgiapp.h>
#endif
