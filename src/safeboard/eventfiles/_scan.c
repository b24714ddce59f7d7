/* safeboard.eventfiles._scan: the event-file reader's two hot loops in C (records.py and
 * bulk.py hold the same logic in numpy, used where this module was not built).
 *
 *   scan(buffer, max_record) -> (starts, lengths, problem, problem_at)
 *       Walks the TFRecord framing from the start of ``buffer``, checking both masked
 *       CRC32C checksums of every record, and stops at the first damaged record or at a
 *       record cut short by the buffer's end. ``starts`` and ``lengths`` are the checked
 *       records' header offsets and data lengths (bytes of native int64; where the
 *       walk stopped follows from the last of them), ``problem`` 0 (none), 1 (the
 *       length's checksum), 2 (the data's checksum) or 3 (a length past ``max_record``),
 *       at ``problem_at``.
 *
 *   plain(buffer, starts, lengths, first, stop, max_tags)
 *       -> (found, index, tags, tag_of, steps, times, values)
 *       Finds and decodes the plain scalar events (tensorboardX's and torch's
 *       ``add_scalar``: an Event of wall_time, step and one simple_value) among records
 *       ``first`` to ``stop``: ``found`` one byte per record of the block (1: plain),
 *       ``index`` their record indexes, ``tags`` the distinct tag bytes in order of first
 *       appearance, ``tag_of`` an index into ``tags`` per point, then the steps (int64),
 *       wall times and values (float64). A record is plain only if every byte matches
 *       the layout below; anything else is left to the Python decoder. Past ``max_tags``
 *       distinct tags, new tags are left to it too.
 *
 *       09 <wall_time: 8> 10 <step: k> 2a <t+9> 0a <t+7> 0a <t> <tag: t> 15 <value: 4>
 *
 * Every read is bounds-checked against the buffer: event files are untrusted input.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SB_X86_CRC 1
#include <nmmintrin.h>
#endif

#ifndef SB_SOURCE_DIGEST
#define SB_SOURCE_DIGEST "unknown" /* hatch_build.py passes this file's SHA-256 */
#endif

#define HEADER 12
#define MASK_DELTA 0xA282EAD8u

/* ---- CRC32C: the SSE4.2 instruction where the processor has it, else slicing by 8 ---- */

static uint32_t table[8][256];

static void make_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int j = 0; j < 8; j++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        table[0][i] = crc;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++) table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xFF];
}

static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF]
            ^ table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#ifdef SB_X86_CRC
__attribute__((target("sse4.2"))) static uint32_t crc_hard(uint32_t crc, const uint8_t *p, size_t n) {
#if defined(__x86_64__)
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
#endif
    while (n--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

static uint32_t (*crc_update)(uint32_t, const uint8_t *, size_t) = crc_soft;

static uint32_t masked_crc(const uint8_t *p, size_t n) {
    uint32_t crc = ~crc_update(0xFFFFFFFFu, p, n);
    return ((crc >> 15) | (crc << 17)) + MASK_DELTA;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- growable int64 column, handed to Python as bytes ----
 * Its memory comes from PyMem_Raw*: scan() grows columns with the interpreter lock
 * released, where the other PyMem_* allocators must not be called. */

typedef struct {
    int64_t *data;
    Py_ssize_t size, capacity;
} Column;

static int column_push(Column *c, int64_t v) {
    if (c->size == c->capacity) {
        Py_ssize_t capacity = c->capacity ? 2 * c->capacity : 4096;
        int64_t *grown = PyMem_RawRealloc(c->data, (size_t)capacity * sizeof(int64_t));
        if (grown == NULL) return -1;
        c->data = grown;
        c->capacity = capacity;
    }
    c->data[c->size++] = v;
    return 0;
}

static PyObject *column_bytes(const Column *c) {
    return PyBytes_FromStringAndSize((const char *)c->data, c->size * (Py_ssize_t)sizeof(int64_t));
}

/* ---- scan ---- */

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    unsigned long long max_record;
    if (!PyArg_ParseTuple(args, "y*K", &view, &max_record)) return NULL;
    if (max_record > (1ull << 40)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: max_record past 2**40");
        return NULL;
    }
    const uint8_t *buf = view.buf;
    size_t end = (size_t)view.len, at = 0;
    Column starts = {0}, lengths = {0};
    int problem = 0, failed = 0;
    size_t problem_at = 0;

    Py_BEGIN_ALLOW_THREADS
    while (at + HEADER <= end) {
        uint64_t length = le64(buf + at);
        if (masked_crc(buf + at, 8) != le32(buf + at + 8)) {
            problem = 1;
            problem_at = at;
            break;
        }
        if (length > max_record) {
            problem = 3;
            problem_at = at;
            break;
        }
        size_t stop = at + HEADER + (size_t)length + 4;
        if (stop > end) break; /* cut short: read once it is complete */
        if (masked_crc(buf + at + HEADER, (size_t)length) != le32(buf + at + HEADER + length)) {
            problem = 2;
            problem_at = at;
            break;
        }
        if (column_push(&starts, (int64_t)at) || column_push(&lengths, (int64_t)length)) {
            failed = 1;
            break;
        }
        at = stop;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (failed) {
        PyErr_NoMemory();
    } else {
        PyObject *s = column_bytes(&starts), *l = column_bytes(&lengths);
        if (s && l) result = Py_BuildValue("(OOin)", s, l, problem, (Py_ssize_t)problem_at);
        Py_XDECREF(s);
        Py_XDECREF(l);
    }
    PyMem_RawFree(starts.data);
    PyMem_RawFree(lengths.data);
    return result;
}

/* ---- plain ---- */

typedef struct {
    const uint8_t *bytes;
    Py_ssize_t length;
} Tag;

typedef struct {
    Tag *tags;
    Py_ssize_t count, max;
    int32_t *slots; /* open addressing: index + 1 into tags, 0 empty */
    Py_ssize_t mask;
} TagTable;

static uint64_t fnv(const uint8_t *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The tag's index, or -1 when the table is full (the record is left to Python). */
static Py_ssize_t tag_index(TagTable *t, const uint8_t *p, Py_ssize_t n) {
    Py_ssize_t slot = (Py_ssize_t)(fnv(p, n) & (uint64_t)t->mask);
    while (t->slots[slot]) {
        Tag *tag = &t->tags[t->slots[slot] - 1];
        if (tag->length == n && memcmp(tag->bytes, p, (size_t)n) == 0) return t->slots[slot] - 1;
        slot = (slot + 1) & t->mask;
    }
    if (t->count == t->max) return -1;
    t->tags[t->count] = (Tag){p, n};
    t->slots[slot] = (int32_t)(++t->count);
    return t->count - 1;
}

/* The decoded points, written straight into the bytes objects handed to Python: made
 * before the loop for as many points as records (at most one each), cut to the count
 * after it. No copy, and no allocation in the loop. */
enum { INDEX, TAG_OF, STEPS, TIMES, VALUES, COLUMNS }; /* times and values: doubles, bit for bit */

typedef struct {
    int64_t *column[COLUMNS];
    Py_ssize_t count;
} Points;

/* Decode record data ``d`` of ``n`` bytes if it is a plain scalar event: 1 if so, 0 if not. */
static int decode_plain(const uint8_t *d, Py_ssize_t n, int64_t record, TagTable *tags, Points *out) {
    if (n < 22 || n > 150 || d[0] != 0x09 || d[9] != 0x10) return 0;
    Py_ssize_t k = 0;
    for (Py_ssize_t j = 0; j < 10; j++) {
        if (d[10 + j] < 0x80) {
            k = j + 1;
            break;
        }
    }
    if (k == 0) return 0;
    Py_ssize_t t = n - 21 - k;
    if (t < 1 || t > 118) return 0;
    if (d[10 + k] != 0x2A || d[11 + k] != t + 9 || d[12 + k] != 0x0A || d[13 + k] != t + 7
        || d[14 + k] != 0x0A || d[15 + k] != t || d[16 + k + t] != 0x15)
        return 0;
    if (k == 10 && d[19] > 1) return 0; /* a varint of 10 bytes carries one bit in its last */
    Py_ssize_t tag = tag_index(tags, d + 16 + k, t);
    if (tag < 0) return 0;
    uint64_t step = 0;
    for (Py_ssize_t j = 0; j < k; j++) step |= (uint64_t)(d[10 + j] & 0x7F) << (7 * j);
    double wall, value;
    float value32;
    memcpy(&wall, d + 1, 8);
    memcpy(&value32, d + 17 + k + t, 4);
    value = (double)value32;
    int64_t wall_bits, value_bits;
    memcpy(&wall_bits, &wall, 8);
    memcpy(&value_bits, &value, 8);
    Py_ssize_t at = out->count++;
    out->column[INDEX][at] = record;
    out->column[TAG_OF][at] = tag;
    out->column[STEPS][at] = (int64_t)step;
    out->column[TIMES][at] = wall_bits;
    out->column[VALUES][at] = value_bits;
    return 1;
}

static PyObject *plain(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view, starts_view, lengths_view;
    Py_ssize_t first, stop, max_tags;
    if (!PyArg_ParseTuple(args, "y*y*y*nnn", &view, &starts_view, &lengths_view, &first, &stop, &max_tags))
        return NULL;
    PyObject *result = NULL, *found = NULL, *tag_list = NULL;
    PyObject *columns[COLUMNS] = {NULL};
    Points out;
    memset(&out, 0, sizeof out);
    TagTable tags = {0};
    Py_ssize_t n = starts_view.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *starts = starts_view.buf, *lengths = lengths_view.buf;
    if (lengths_view.len != starts_view.len || first < 0 || stop > n || first > stop || max_tags < 1
        || max_tags > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "plain: starts and lengths differ, or first/stop/max_tags out of range");
        goto done;
    }
    Py_ssize_t slots = 1;
    while (slots < 2 * max_tags) slots <<= 1;
    tags.tags = PyMem_RawCalloc((size_t)max_tags, sizeof(Tag));
    tags.slots = PyMem_RawCalloc((size_t)slots, sizeof(int32_t));
    tags.max = max_tags;
    tags.mask = slots - 1;
    found = PyBytes_FromStringAndSize(NULL, n);
    for (int j = 0; j < COLUMNS; j++) {
        columns[j] = PyBytes_FromStringAndSize(NULL, (stop - first) * (Py_ssize_t)sizeof(int64_t));
        if (columns[j] == NULL) break;
        out.column[j] = (int64_t *)PyBytes_AS_STRING(columns[j]);
    }
    if (tags.tags == NULL || tags.slots == NULL || found == NULL || columns[COLUMNS - 1] == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    char *mark = PyBytes_AS_STRING(found);
    memset(mark, 0, (size_t)n);
    const uint8_t *buf = view.buf;
    int outside = 0;
    /* Raw memory only in the loop (the bytes objects are this call's own, not yet seen by
     * anyone): other threads run meanwhile (the import's posting threads, P7). */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = first; i < stop; i++) {
        int64_t s = starts[i], len = lengths[i];
        if (s < 0 || len < 0 || len > view.len || s > view.len - HEADER - 4 - len) {
            outside = 1;
            break;
        }
        mark[i] = (char)decode_plain(buf + s + HEADER, (Py_ssize_t)len, i, &tags, &out);
    }
    Py_END_ALLOW_THREADS
    if (outside) {
        PyErr_SetString(PyExc_ValueError, "plain: a record runs past the buffer");
        goto done;
    }
    for (int j = 0; j < COLUMNS; j++) {
        if (_PyBytes_Resize(&columns[j], out.count * (Py_ssize_t)sizeof(int64_t)) < 0) goto done;
    }
    tag_list = PyList_New(tags.count);
    if (tag_list == NULL) goto done;
    for (Py_ssize_t j = 0; j < tags.count; j++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)tags.tags[j].bytes, tags.tags[j].length);
        if (b == NULL) goto done;
        PyList_SET_ITEM(tag_list, j, b);
    }
    result = Py_BuildValue("(OOOOOOO)", found, columns[INDEX], tag_list, columns[TAG_OF], columns[STEPS],
                           columns[TIMES], columns[VALUES]);
done:
    Py_XDECREF(found);
    Py_XDECREF(tag_list);
    for (int j = 0; j < COLUMNS; j++) Py_XDECREF(columns[j]);
    PyMem_RawFree(tags.tags);
    PyMem_RawFree(tags.slots);
    PyBuffer_Release(&view);
    PyBuffer_Release(&starts_view);
    PyBuffer_Release(&lengths_view);
    return result;
}

static PyObject *masked_crc32c_py(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t crc = masked_crc(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "Walk and check the TFRecord framing of a buffer."},
    {"plain", plain, METH_VARARGS, "Find and decode the plain scalar events among records."},
    {"masked_crc32c", masked_crc32c_py, METH_VARARGS, "TFRecord's masked CRC32C of the bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void) {
    make_table();
#ifdef SB_X86_CRC
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) crc_update = crc_hard;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddStringConstant(m, "source_digest", SB_SOURCE_DIGEST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef SB_X86_CRC
    if (PyModule_AddStringConstant(m, "crc", crc_update == crc_hard ? "sse4.2" : "table") < 0) {
#else
    if (PyModule_AddStringConstant(m, "crc", "table") < 0) {
#endif
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
