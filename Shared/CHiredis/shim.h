#ifndef TITANIUM_CHIREDIS_SHIM_H
#define TITANIUM_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
