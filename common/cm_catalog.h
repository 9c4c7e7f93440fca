/* cm_catalog.h - facts about the internal wire (proto/catalog.proto) that
 * both sides need. */
#ifndef CM_CATALOG_H
#define CM_CATALOG_H

#include "catalog.pb-c.h"

/* Whether m changes the catalog (create, replace, patch, delete). */
static inline int
cm_method_is_write(Catalog__Method m)
{
	return m == CATALOG__METHOD__METHOD_CREATE_PRODUCT ||
	    m == CATALOG__METHOD__METHOD_REPLACE_PRODUCT ||
	    m == CATALOG__METHOD__METHOD_PATCH_PRODUCT ||
	    m == CATALOG__METHOD__METHOD_DELETE_PRODUCT;
}

#endif /* CM_CATALOG_H */
