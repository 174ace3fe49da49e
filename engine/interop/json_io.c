// json_io.c: JSON files through cJSON (see json_io.h).
#include "engine/interop/json_io.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"
#include "engine/base/file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cJSON *json_read_file(const char *path, size_t max_bytes, int want_object) {
    FILE *f = file_open_regular(path);  // a FIFO would block, a device never end
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        mo_errorf("%s: cannot stat: %s", path, strerror(errno));
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        mo_errorf("%s: %lld bytes, more than the %zu a file of this kind may have", path, (long long)st.st_size,
                  max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        mo_errorf("%s: cannot read %zu bytes", path, n);
        return NULL;
    }
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, n);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        mo_errorf("%s: not valid JSON (near byte %zu)", path, at && at >= buf && at <= buf + n ? (size_t)(at - buf) : 0);
    } else if (want_object && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
        mo_errorf("%s: not a JSON object", path);
    }
    free(buf);
    return j;
}

int json_write_file(const char *path, const cJSON *j) {
    char *s = cJSON_Print(j);
    if (!s) return mo_errorf("%s: out of memory formatting JSON", path);
    atomic_file a;
    FILE *f = atomic_open(&a, path, "wb");
    if (!f) {
        free(s);
        return -1;
    }
    size_t n = strlen(s);
    int bad = fwrite(s, 1, n, f) != n || fputc('\n', f) == EOF;
    free(s);
    return atomic_commit(&a, bad);
}

static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int json_get_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, const char *origin, int64_t *v) {
    const cJSON *j = item(obj, key);
    if (!j) return 0;
    double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return mo_errorf("%s: \"%s\" must be an integer in [%lld, %lld]", origin, key, (long long)lo, (long long)hi);
    *v = (int64_t)d;
    return 1;
}

int json_get_num(const cJSON *obj, const char *key, const char *origin, double *v) {
    const cJSON *j = item(obj, key);
    if (!j) return 0;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) return mo_errorf("%s: \"%s\" must be a number", origin, key);
    *v = j->valuedouble;
    return 1;
}

int json_get_str(const cJSON *obj, const char *key, const char *origin, const char **v) {
    const cJSON *j = item(obj, key);
    if (!j) return 0;
    if (!cJSON_IsString(j)) return mo_errorf("%s: \"%s\" must be a string", origin, key);
    *v = j->valuestring;
    return 1;
}

int json_get_bool(const cJSON *obj, const char *key, const char *origin, int *v) {
    const cJSON *j = item(obj, key);
    if (!j) return 0;
    if (!cJSON_IsBool(j)) return mo_errorf("%s: \"%s\" must be true or false", origin, key);
    *v = cJSON_IsTrue(j);
    return 1;
}
