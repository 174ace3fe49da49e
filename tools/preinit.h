// preinit.h: what tools/preinit.c decides before the libraries start.
#pragma once

// The OpenBLAS core (OPENBLAS_CORETYPE) the binary sets when the user set none, from this
// CPU's instructions; NULL when it leaves the choice to OpenBLAS.
const char *openblas_core(void);
