#ifndef CPOSTGRESQL_SHIM_H
#define CPOSTGRESQL_SHIM_H
/* libpq from Debian's libpq-dev (pkg-config libpq: -I/usr/include/postgresql). No macros or
   variadics need wrapping: the header is imported as is. */
#include <libpq-fe.h>
#endif
