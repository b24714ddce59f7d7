/* The SDK's packing of logged points, in C: run.log() packs a slice of what it queued now
   and then in the training loop's own thread (sdk/sender.py, pack_inline), and each
   microsecond of that is the loop's (issue 13: the worst log() call, P3).

   take(queue, points): pops 3 * points items (or all the queue's whole points, when it
   holds fewer) from the queue, a deque, as run.log() queued them, step, time, values, ...
   and returns (flat, rows):
   flat, the items popped, as a list; rows, None, or the points as columns when every
   point is the usual kind, and then (keys, steps, times, values):

   - keys: the first point's keys, a list of str, which every point logs, in that order;
   - steps: bytes of int64, each an int from 0 to MAX_STEP (2**62);
   - times: bytes of float64;
   - values: bytes of float64, key-major: key 0's values of every point, then key 1's.

   The usual kind: a step that is an int (not a subclass: not bool), a time that is a
   float, and a dict (not a subclass) of at least one key, each a str, whose values are
   floats (subclasses too: numpy's float64) or ints (not bool) that a float can hold.
   Anything else gives rows None, and sdk/batches.py packs those points in Python
   (_columns), which says what it drops and why. The same points, packed either way, give
   the same arrays bit for bit (tests/unit/test_sdk_pack_native.py): a float's value is
   its C double as numpy reads it, an int's is Python's float(int).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#ifndef SB_SOURCE_DIGEST
#define SB_SOURCE_DIGEST "unknown" /* hatch_build.py passes this file's SHA-256 */
#endif

#define MAX_STEP (((int64_t)1) << 62)

/* The same key: the same object (the usual case: one dict literal's keys) or equal str. */
static int
same_key(PyObject *key, PyObject *expected)
{
    if (key == expected) {
        return 1;
    }
    if (!PyUnicode_CheckExact(key)) {
        return 0;
    }
    return PyUnicode_Compare(key, expected) == 0; /* str against str: never an error */
}

/* One value as a double; 0 when it is not the usual kind (no exception left set). */
static int
value_of(PyObject *value, double *out)
{
    if (PyFloat_Check(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    if (PyLong_CheckExact(value)) {
        double d = PyLong_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear(); /* too large for a float: Python's path drops it, saying so */
            return 0;
        }
        *out = d;
        return 1;
    }
    return 0;
}

/* The points of flat (n of them) as columns; NULL (no exception set) when they are not all
   the usual kind, or on any failure. */
static PyObject *
columns(PyObject *flat, Py_ssize_t n)
{
    PyObject **items = PySequence_Fast_ITEMS(flat);
    PyObject *first = items[2];
    if (!PyDict_CheckExact(first)) {
        return NULL;
    }
    Py_ssize_t width = PyDict_GET_SIZE(first);
    if (width == 0) {
        return NULL;
    }
    PyObject *keys = PyDict_Keys(first);
    if (keys == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject **names = PySequence_Fast_ITEMS(keys);
    for (Py_ssize_t k = 0; k < width; k++) {
        if (!PyUnicode_CheckExact(names[k])) {
            Py_DECREF(keys);
            return NULL;
        }
    }
    PyObject *steps = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    PyObject *times = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    PyObject *values = PyBytes_FromStringAndSize(NULL, n * width * (Py_ssize_t)sizeof(double));
    if (steps == NULL || times == NULL || values == NULL) {
        goto fail;
    }
    int64_t *step_at = (int64_t *)PyBytes_AS_STRING(steps);
    double *time_at = (double *)PyBytes_AS_STRING(times);
    double *value_at = (double *)PyBytes_AS_STRING(values);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *step = items[3 * i];
        PyObject *moment = items[3 * i + 1];
        PyObject *data = items[3 * i + 2];
        if (!PyLong_CheckExact(step) || !PyFloat_Check(moment) || !PyDict_CheckExact(data) ||
            PyDict_GET_SIZE(data) != width) {
            goto unusual;
        }
        int overflow = 0;
        long long s = PyLong_AsLongLongAndOverflow(step, &overflow);
        if (overflow || s < 0 || s > MAX_STEP) {
            goto unusual; /* also -1 with an error: not with an exact int */
        }
        step_at[i] = (int64_t)s;
        time_at[i] = PyFloat_AS_DOUBLE(moment);
        Py_ssize_t position = 0;
        Py_ssize_t k = 0;
        PyObject *key, *value;
        while (PyDict_Next(data, &position, &key, &value)) {
            if (!same_key(key, names[k]) || !value_of(value, &value_at[k * n + i])) {
                goto unusual;
            }
            k++;
        }
    }
    PyObject *rows = PyTuple_Pack(4, keys, steps, times, values);
    Py_DECREF(keys);
    Py_DECREF(steps);
    Py_DECREF(times);
    Py_DECREF(values);
    return rows;
unusual:
fail: /* out of memory too: Python's path packs them (or says so) */
    PyErr_Clear();
    Py_DECREF(keys);
    Py_XDECREF(steps);
    Py_XDECREF(times);
    Py_XDECREF(values);
    return NULL;
}

static PyObject *
take(PyObject *module, PyObject *args)
{
    PyObject *queue;
    Py_ssize_t points;
    if (!PyArg_ParseTuple(args, "On:take", &queue, &points)) {
        return NULL;
    }
    Py_ssize_t queued = PyObject_Size(queue);
    if (queued < 0) {
        return NULL;
    }
    if (points > queued / 3) {
        points = queued / 3;
    }
    if (points < 0) {
        points = 0;
    }
    PyObject *popleft = PyObject_GetAttrString(queue, "popleft");
    if (popleft == NULL) {
        return NULL;
    }
    PyObject *flat = PyList_New(3 * points);
    if (flat == NULL) {
        Py_DECREF(popleft);
        return NULL;
    }
    /* The caller is the queue's only consumer (sdk/sender.py, under its lock) and the queue
       holds these items: popleft cannot fail. */
    for (Py_ssize_t i = 0; i < 3 * points; i++) {
        PyObject *item = PyObject_CallNoArgs(popleft);
        if (item == NULL) {
            Py_DECREF(popleft);
            Py_DECREF(flat);
            return NULL;
        }
        PyList_SET_ITEM(flat, i, item);
    }
    Py_DECREF(popleft);
    PyObject *rows = points ? columns(flat, points) : NULL;
    return Py_BuildValue("(NN)", flat, rows != NULL ? rows : Py_NewRef(Py_None));
}

static PyMethodDef methods[] = {
    {"take", take, METH_VARARGS,
     "take(queue, points): the 3 * points items popped (at most), as a list, and the points as "
     "columns (keys, steps, times, values), or None when some point is not the usual "
     "kind."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_pack", "The SDK's packing of logged points, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__pack(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "source_digest", SB_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
